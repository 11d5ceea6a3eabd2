-- baseline.lua: wrk script for the baseline server (bench/baseline), the
-- ceiling the jeton runs are compared with. When KEYS_FILE and API_ID_FILE
-- are set it sends exactly the requests verify.lua sends (same headers, same
-- JSON bodies, same random choice per request), so that the client-side cost
-- is the same in every run; otherwise it sends one small JSON body. See
-- common.lua.
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

wrk.headers["Content-Type"] = "application/json"
bench.expect = '"valid"%s*:%s*true'

function init(args)
   bench.init_thread()
   if bench.env("KEYS_FILE", false) and bench.env("API_ID_FILE", false) then
      local api = bench.api_id()
      for _, key in ipairs(bench.keys()) do
         bench.add(wrk.format(nil, nil, nil, string.format(
            '{"token":"%s","api":"%s","scopes":["repos:read"]}', key, api)))
      end
   else
      bench.add(wrk.format(nil, nil, nil,
         '{"token":"jtp_0000000000000000000000000000000000000000000000000","scopes":["repos:read"]}'))
   end
end
