-- refresh.lua: wrk script for POST /oauth2/token with
-- grant_type=refresh_token (RFC 6749 §6) and HTTP Basic client
-- authentication, for the seeded opaque-token client. Every request rotates
-- a refresh token: the server marks it used and answers a new access token
-- and a new refresh token, in one transaction.
--
-- Refresh tokens are single-use, and presenting one twice revokes its whole
-- grant, so this script never sends a token twice:
--
--   * each thread owns a disjoint share of REFRESH_TOKENS_FILE (token i goes
--     to thread ((i - 1) % BENCH_THREADS) + 1), kept in a FIFO queue;
--   * request() pops a token from the queue (each popped token is sent at
--     most once, and never goes back in the queue);
--   * response() takes the new refresh_token out of a 200 answer and pushes
--     it, so the next request() can use it.
--
-- wrk calls request() when a connection starts a new request (one request
-- in flight per connection: scripts with request() are not pipelined) and
-- response() when its answer is complete, before the connection's next
-- request(); a connection's token is therefore back in the queue before
-- that connection asks for one again, and a thread needs at least as many
-- tokens as it has connections. A token can be lost, never reused: when
-- wrk checks the script it calls request() once on the first thread
-- without sending the result; when a connection breaks or the run ends
-- with a request in flight; and when a write finds the socket full before
-- its first byte (wrk then calls request() again). bench/run.sh seeds
-- several times the connections to absorb that.
--
-- If a thread's queue is ever empty, the request goes out without a
-- refresh_token (counted in "starved"; the server answers 400
-- invalid_request, a failure). An invalid_grant answer would mean a reused
-- or unknown token; they are counted in "invalid_grant" (and as non-2xx).
--
-- Environment: OAUTH_OPAQUE_BASIC_FILE, REFRESH_TOKENS_FILE (written by
-- bench/seed -oauth), BENCH_THREADS (wrk -t). See common.lua.
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
bench.extra = { "invalid_grant", "starved", "seeded" }

-- Per-thread state.
invalid_grant = 0
starved = 0
seeded = 0
local queue, head, tail = {}, 1, 0
local starved_request

local function push(tok)
   tail = tail + 1
   queue[tail] = tok
end

local function pop()
   if head > tail then
      return nil
   end
   local tok = queue[head]
   queue[head] = nil
   head = head + 1
   return tok
end

function init(args)
   bench.init_thread()
   local basic = bench.read_lines(bench.env("OAUTH_OPAQUE_BASIC_FILE", true))[1]
   wrk.headers["Authorization"] = "Basic " .. basic
   local threads = tonumber(bench.env("BENCH_THREADS", true))
   if not threads or threads < 1 or thread_id < 1 or thread_id > threads then
      error("BENCH_THREADS must be wrk's -t (thread " .. thread_id .. ")")
   end
   local all = bench.read_lines(bench.env("REFRESH_TOKENS_FILE", true))
   for i = thread_id, #all, threads do
      push(all[i])
   end
   seeded = tail
   if seeded == 0 then
      error("no refresh token for thread " .. thread_id)
   end
   starved_request = wrk.format(nil, nil, nil, "grant_type=refresh_token")
end

function request()
   local tok = pop()
   if not tok then
      starved = starved + 1
      return starved_request
   end
   return wrk.format(nil, nil, nil,
      "grant_type=refresh_token&refresh_token=" .. bench.url_encode(tok))
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if string.find(body, '"invalid_grant"', 1, true) then
         invalid_grant = invalid_grant + 1
      end
      bench.report("non-2xx answer", status, body)
      return
   end
   local tok = string.match(body, '"refresh_token"%s*:%s*"(jtr_[^"]+)"')
   if tok and string.find(body, '"access_token"%s*:%s*"jta_') then
      push(tok)
   else
      unexpected = unexpected + 1
      bench.report("answer without a new refresh token", status, body)
   end
end
