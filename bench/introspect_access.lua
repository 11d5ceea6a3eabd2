-- introspect_access.lua: wrk script for POST /oauth2/introspect (RFC 7662,
-- form body token=...) over random opaque OAuth access tokens, obtained by
-- client_credentials while seeding. A 200 answer must say "active": true.
-- See common.lua for the environment it needs (JETON_TOKEN, and
-- ACCESS_TOKENS_FILE written by bench/seed -oauth).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
bench.expect = '"active"%s*:%s*true'

function init(args)
   bench.init_thread()
   for _, tok in ipairs(bench.read_lines(bench.env("ACCESS_TOKENS_FILE", true))) do
      bench.add(wrk.format(nil, nil, nil, "token=" .. bench.url_encode(tok)))
   end
end
