-- create.lua: wrk script for POST /v1/tokens: durable creates of keys for
-- the benchmark API. A 2xx answer must carry the new "token". See common.lua
-- for the environment it needs (JETON_TOKEN, API_ID_FILE).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

wrk.headers["Content-Type"] = "application/json"
bench.expect = '"token"%s*:%s*"'

function init(args)
   bench.init_thread()
   local api = bench.api_id()
   bench.add(wrk.format(nil, nil, nil, string.format(
      '{"api":"%s","name":"bench-wrk-%d","scopes":["repos:read"]}', api, thread_id)))
end
