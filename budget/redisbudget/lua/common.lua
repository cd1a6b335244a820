-- The start of every script. KEYS[1] is the budget's state hash: the limits
-- applied (rps, rb, tps, tb; a rate of 0 is off), the levels of the request
-- and token buckets (rl, tl), when they were last refilled (at), the end of
-- a pause (pause) and the first expiry of a member at the last count of
-- the members (mexp). Times are in microseconds on the Redis server's clock,
-- the one clock every member agrees on. ARGV[1] is how long (ms) an idle
-- state is kept.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1e6 + tonumber(clock[2])
local s = redis.call('HMGET', KEYS[1], 'rps', 'rb', 'tps', 'tb', 'rl', 'tl', 'at', 'pause', 'mexp')
for i = 1, 9 do s[i] = tonumber(s[i]) or 0 end
local rps, rb, tps, tb, rl, tl, at, pause, mexp = unpack(s)
-- A new budget starts empty: no burst on top of what members just spent.
-- Refill at the limits in force since the last call; a clock that went back
-- (a failover to a server whose clock is behind) refills nothing until it
-- has caught up, rather than refill the same time twice.
local fresh = at == 0
if fresh then at = now end
local dt = math.max(0, now - at) / 1e6
if rps > 0 then rl = math.min(rb, rl + rps * dt) end
if tps > 0 then tl = math.min(tb, tl + tps * dt) end
at = math.max(at, now)

-- Redis writes a number argument in full (%.17g), but Lua's own tostring
-- and .. keep 14 digits, too few for a time in microseconds.
local function num(x) return string.format('%.17g', x) end
local function save()
  redis.call('HSET', KEYS[1], 'rps', rps, 'rb', rb, 'tps', tps, 'tb', tb,
    'rl', rl, 'tl', tl, 'at', at, 'pause', pause, 'mexp', mexp)
  redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[1]), math.ceil((pause - now) / 1000)))
end
