-- cc_opaque.lua: wrk script for POST /oauth2/token with
-- grant_type=client_credentials and HTTP Basic client authentication, for
-- the seeded confidential client whose access tokens are opaque: every
-- request issues one access token, committed to the store before the
-- answer. A 200 answer must carry an opaque "access_token" (jta_...). See
-- common.lua; it needs OAUTH_OPAQUE_BASIC_FILE (the base64 Basic
-- credentials written by bench/seed -oauth).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
bench.expect = '"access_token"%s*:%s*"jta_'

function init(args)
   bench.init_thread()
   local basic = bench.read_lines(bench.env("OAUTH_OPAQUE_BASIC_FILE", true))[1]
   wrk.headers["Authorization"] = "Basic " .. basic
   bench.add(wrk.format(nil, nil, nil, "grant_type=client_credentials"))
end
