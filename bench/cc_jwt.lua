-- cc_jwt.lua: wrk script for POST /oauth2/token with
-- grant_type=client_credentials and HTTP Basic client authentication, for
-- the seeded confidential client whose access tokens are JWTs signed with
-- ES256 (RFC 9068): nothing is stored per request. A 200 answer must carry
-- an "access_token" that is a JWS (three dot-separated parts). See
-- common.lua; it needs OAUTH_JWT_BASIC_FILE (written by bench/seed -oauth).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
bench.expect = '"access_token"%s*:%s*"eyJ[%w_-]*%.[%w_-]+%.[%w_-]+"'

function init(args)
   bench.init_thread()
   local basic = bench.read_lines(bench.env("OAUTH_JWT_BASIC_FILE", true))[1]
   wrk.headers["Authorization"] = "Basic " .. basic
   bench.add(wrk.format(nil, nil, nil, "grant_type=client_credentials"))
end
