-- wrk script for benchmarks/serve_peers.py: POST one request body, check every answer.
--
--   wrk -t1 -c32 -d20s --latency -s post.lua URL -- BODY_FILE CONTENT_TYPE EXPECTED_LABEL LABEL_PATTERN
--
-- Every request sends BODY_FILE's bytes with CONTENT_TYPE. Every response is wrong unless its status
-- is 200 and the first capture of the Lua pattern LABEL_PATTERN in its body equals EXPECTED_LABEL.
-- done() prints one line for serve_peers.py: "answers checked N wrong M".

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local file = assert(io.open(args[1], "rb"))
   wrk.method = "POST"
   wrk.body = file:read("*a")
   file:close()
   wrk.headers["Content-Type"] = args[2]
   expected, pattern = args[3], args[4]
   checked, wrong = 0, 0
end

function response(status, headers, body)
   checked = checked + 1
   if status ~= 200 or string.match(body, pattern) ~= expected then
      wrong = wrong + 1
   end
end

function done(summary, latency, requests)
   local total_checked, total_wrong = 0, 0
   for _, thread in ipairs(threads) do
      total_checked = total_checked + thread:get("checked")
      total_wrong = total_wrong + thread:get("wrong")
   end
   io.write(string.format("answers checked %d wrong %d\n", total_checked, total_wrong))
end
