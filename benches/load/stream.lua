-- wrk script: replays a per-thread file once, one line per request. Thread k reads
-- PREFIX.k (see mint.py's SHARDS) and, at end of file, creates PREFIX.done.k and
-- keeps repeating its last line; load.sh waits for every done file, lets the
-- requests in flight finish, then stops wrk with SIGINT (wrk then prints its stats;
-- stopping a thread from Lua would not end wrk before -d).
--   wrk ... URL -- PREFIX bearer    lines are JWTs: GET with Authorization: Bearer
--   wrk ... URL -- PREFIX webhook   lines are "<Stripe-Signature>\t<body>": POST
local counter = 0
function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
end

local prefix, file, mode, last, peeked
local headers = {}

function init(args)
   prefix = args[1]
   file = assert(io.open(prefix .. "." .. (id or 0), "r"))
   mode = args[2] or "bearer"
   if mode == "webhook" then
      headers["Content-Type"] = "application/json"
   end
   -- wrk calls thread 0's request() once before starting, to check the script, and
   -- throws that request away: its line must be sent again by the first real call.
   peeked = (id or 0) == 0
end

local function next_line()
   if peeked == true then
      peeked = file:read("*l")
      return peeked
   elseif peeked then
      local line = peeked
      peeked = nil
      return line
   end
   local line = file and file:read("*l")
   if not line then
      if file then
         file:close()
         file = false
         io.open(prefix .. ".done." .. (id or 0), "w"):close()
      end
      return last
   end
   return line
end

function request()
   local line = next_line()
   last = line
   if mode == "webhook" then
      local tab = string.find(line, "\t", 1, true)
      headers["Stripe-Signature"] = string.sub(line, 1, tab - 1)
      return wrk.format("POST", nil, headers, string.sub(line, tab + 1))
   end
   headers["Authorization"] = "Bearer " .. line
   return wrk.format(nil, nil, headers)
end
