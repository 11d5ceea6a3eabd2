-- verify.lua: wrk script for POST /v1/verify over random valid keys of the
-- benchmark API, asking for the scope they were created with. A 200 answer
-- must say "valid": true. See common.lua for the environment it needs
-- (JETON_TOKEN, KEYS_FILE, API_ID_FILE).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

wrk.headers["Content-Type"] = "application/json"
bench.expect = '"valid"%s*:%s*true'

function init(args)
   bench.init_thread()
   local api = bench.api_id()
   for _, key in ipairs(bench.keys()) do
      bench.add(wrk.format(nil, nil, nil, string.format(
         '{"token":"%s","api":"%s","scopes":["repos:read"]}', key, api)))
   end
end
