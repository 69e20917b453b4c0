-- paced.lua - wrk script: the small chat completion of chat.lua at a fixed
-- offered load instead of as fast as the target answers. Each connection
-- waits a random time before each request, exponential with a mean of
-- BENCH_PACE_MS milliseconds (wrk's delay(), whole ms), so the arrivals of
-- all connections together are close to Poisson at connections * 1000 /
-- BENCH_PACE_MS per second, not in lockstep. wrk times each request from
-- its send, so the latency is the target's alone. The headers, the key and
-- the BENCH_RESULT line come from chat.lua.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "chat.lua")
local mean = tonumber(os.getenv("BENCH_PACE_MS") or "")
if mean == nil or mean <= 0 then
  error("paced.lua: BENCH_PACE_MS must be a positive number of milliseconds")
end
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
delay = function()
  return math.floor(-math.log(1 - math.random()) * mean + 0.5)
end
