-- common.lua: shared by the wrk scripts of the Jeton load benchmark
-- (baseline.lua, verify.lua, introspect.lua, create.lua, cc_opaque.lua,
-- cc_jwt.lua, introspect_access.lua, refresh.lua). Each of them loads it
-- with dofile() from $BENCH_DIR (default "bench", i.e. run from the repo
-- root).
--
-- Environment:
--   JETON_TOKEN  admin bearer token, sent as "Authorization: Bearer ..."
--   KEYS_FILE    file with one API key per line (verify, introspect, baseline)
--   API_ID_FILE  file holding the benchmark API's id (verify, create, baseline)
--   (the OAuth scripts name the files they read themselves)
--
-- Every script prebuilds its requests in init() and hands out one of them at
-- random per request, so the per-request work on the wrk side is the same for
-- all four runs. response() counts non-2xx answers and 2xx answers whose body
-- does not match bench.expect; done() prints one machine-readable line:
--
--   BENCH requests=.. duration_us=.. rps=.. p50_us=.. p99_us=.. non2xx=..
--         unexpected=.. connect=.. read=.. write=.. timeout=..
--
-- (on one line) which bench/run.sh parses. A script may list more
-- per-thread counters (globals) in bench.extra; done() adds their sums to
-- the line as name=value.

bench = {}

function bench.env(name, required)
   local v = os.getenv(name)
   if (v == nil or v == "") and required then
      error(name .. " is not set")
   end
   return v
end

function bench.read_lines(path)
   local f, err = io.open(path, "r")
   if not f then
      error("cannot open " .. path .. ": " .. tostring(err))
   end
   local lines = {}
   for line in f:lines() do
      line = line:gsub("%s+$", "")
      if line ~= "" then
         lines[#lines + 1] = line
      end
   end
   f:close()
   if #lines == 0 then
      error(path .. " is empty")
   end
   return lines
end

function bench.keys()
   return bench.read_lines(bench.env("KEYS_FILE", true))
end

function bench.api_id()
   return bench.read_lines(bench.env("API_ID_FILE", true))[1]
end

function bench.url_encode(s)
   return (s:gsub("[^%w%-%._~]", function(c)
      return string.format("%%%02X", string.byte(c))
   end))
end

-- Every request is a POST carrying the admin bearer.
wrk.method = "POST"
local token = bench.env("JETON_TOKEN", false)
if token then
   wrk.headers["Authorization"] = "Bearer " .. token
end

-- Lua pattern that a 2xx body must contain; nil accepts any body.
bench.expect = nil

-- Names of extra per-thread counters to sum into the BENCH line.
bench.extra = {}

-- Prebuilt requests, filled by the script's init().
bench.requests = {}
bench.n = 0

function bench.add(req)
   bench.n = bench.n + 1
   bench.requests[bench.n] = req
end

-- Main state: remember the threads so done() can collect their counters.
local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_id", thread_count)
   threads[#threads + 1] = thread
end

-- Per-thread state.
thread_id = 0
non2xx = 0
unexpected = 0
local reported = 0

function bench.init_thread()
   math.randomseed(os.time() * 1000 + thread_id)
end

function request()
   return bench.requests[math.random(bench.n)]
end

-- report prints the first few failed answers of a thread to stderr.
function bench.report(what, status, body)
   if reported < 3 then
      reported = reported + 1
      io.stderr:write(string.format("wrk thread %d: %s: status %d: %s\n",
         thread_id, what, status, string.sub(body or "", 1, 300)))
   end
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      bench.report("non-2xx answer", status, body)
   elseif bench.expect and not string.find(body, bench.expect) then
      unexpected = unexpected + 1
      bench.report("unexpected answer", status, body)
   end
end

function done(summary, latency, requests)
   local bad, odd = 0, 0
   for _, t in ipairs(threads) do
      bad = bad + (t:get("non2xx") or 0)
      odd = odd + (t:get("unexpected") or 0)
   end
   local extra = ""
   for _, name in ipairs(bench.extra) do
      local sum = 0
      for _, t in ipairs(threads) do
         sum = sum + (t:get(name) or 0)
      end
      extra = extra .. string.format(" %s=%.0f", name, sum)
   end
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%.0f duration_us=%.0f rps=%.2f p50_us=%.0f p99_us=%.0f non2xx=%.0f unexpected=%.0f connect=%.0f read=%.0f write=%.0f timeout=%.0f%s\n",
      summary.requests, summary.duration, summary.requests / secs,
      latency:percentile(50), latency:percentile(99), bad, odd,
      e.connect, e.read, e.write, e.timeout, extra))
end
