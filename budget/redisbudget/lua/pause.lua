-- Pause. KEYS: state. ARGV: state TTL (ms), duration (µs), member, channel.
-- Nothing is granted before now + duration. A pause ending no later than
-- the one in force changes nothing; one that extends it is published on
-- the key's channel as "<duration µs> <member>". Returns 1 if extended.
local d = tonumber(ARGV[2])
if now + d <= pause then return 0 end
pause = now + d
save()
redis.call('PUBLISH', ARGV[4], ARGV[2] .. ' ' .. ARGV[3])
return 1
