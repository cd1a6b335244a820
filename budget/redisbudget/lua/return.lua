-- Return. KEYS: state, the lease's record. ARGV: state TTL (ms), requests,
-- tokens. Credits what a lease did not use, at most what it granted, once:
-- the record goes with the first return, and a lease past its record's
-- expiry has none. Returns 1 if the lease was on record.
local rec = redis.call('GET', KEYS[2])
if not rec then return 0 end
redis.call('DEL', KEYS[2])
local gr, gt = string.match(rec, '(%S+) (%S+)')
local r = math.min(math.max(tonumber(ARGV[2]), 0), tonumber(gr))
local t = math.min(math.max(tonumber(ARGV[3]), 0), tonumber(gt))
-- A bucket holds no more than its burst, refunds included.
if rps > 0 then rl = math.min(rb, rl + r) end
if tps > 0 then tl = math.min(tb, tl + t) end
save()
return 1
