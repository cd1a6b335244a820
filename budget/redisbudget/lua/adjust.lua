-- Adjust. KEYS: state. ARGV: state TTL (ms), delta (tokens). A negative
-- delta refunds tokens estimated but not used (capped at the burst); a
-- positive one charges tokens used beyond an estimate, pushing later grants
-- back, at most 16 bursts: one call's overrun is never more, and a larger
-- delta is nonsense that must not stall the budget. Returns 1 if applied.
local d = tonumber(ARGV[2])
if fresh or tps == 0 or d == 0 then return 0 end
if d < 0 then tl = math.min(tb, tl - d) else tl = tl - math.min(d, 16 * tb) end
save()
return 1
