-- wrk script: each request carries the next pre-minted bearer token from a file,
-- rotating forever. Each run starts at a random place (so consecutive runs do not
-- replay the same tokens), threads at evenly spaced offsets from it.
--   wrk ... URL -- TOKENS_FILE THREADS
local counter, run_start = 0, nil
function setup(thread)
   -- setup runs in wrk's main Lua state: one random start for the whole run.
   if not run_start then
      math.randomseed(os.time())
      run_start = math.random()
   end
   thread:set("id", counter)
   thread:set("start", run_start)
   counter = counter + 1
end

local tokens, n, i = {}, 0, 0
local headers = {}

function init(args)
   for line in io.lines(args[1]) do
      n = n + 1
      tokens[n] = "Bearer " .. line
   end
   if n == 0 then error("no tokens in " .. args[1]) end
   local threads = tonumber(args[2]) or 1
   local base = math.floor((start or 0) * n)
   i = (base + math.floor((id or 0) * n / threads)) % n
end

function request()
   i = i + 1
   if i > n then i = 1 end
   headers["Authorization"] = tokens[i]
   return wrk.format(nil, nil, headers)
end
