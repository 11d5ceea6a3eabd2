-- introspect.lua: wrk script for POST /oauth2/introspect (RFC 7662, form
-- body token=...) over random valid keys of the benchmark API. A 200 answer
-- must say "active": true. See common.lua for the environment it needs
-- (JETON_TOKEN, KEYS_FILE).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
bench.expect = '"active"%s*:%s*true'

function init(args)
   bench.init_thread()
   for _, key in ipairs(bench.keys()) do
      bench.add(wrk.format(nil, nil, nil, "token=" .. bench.url_encode(key)))
   end
end
