-- Lease. KEYS: state, members, the new lease's record. ARGV: state TTL (ms),
-- member, its limits (rps, rb, tps, tb), member TTL (ms), requests, tokens,
-- min tokens, record TTL (ms). Returns {requests, tokens, wait (µs)}.

-- Note the member's limits until its expiry. The limits applied are the
-- lowest of the live members', field by field (0, off, is no limit). They
-- change only when a member joins or changes its limits, or one lapses
-- (not before mexp): count the members then, not at every lease. Refills so
-- far were at the old limits; the new bursts cap.
local mine = table.concat({ARGV[3], ARGV[4], ARGV[5], ARGV[6]}, ' ')
local before = redis.call('HGET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], mine .. ' ' .. num(now + tonumber(ARGV[7]) * 1000))
redis.call('PEXPIRE', KEYS[2], ARGV[7])
if not before or string.sub(before, 1, #mine + 1) ~= mine .. ' ' or now >= mexp then
  local low, members = {0, 0, 0, 0}, redis.call('HGETALL', KEYS[2])
  mexp = math.huge -- this member's entry brings it down
  for i = 1, #members, 2 do
    local f = {}
    for x in string.gmatch(members[i + 1], '%S+') do f[#f + 1] = tonumber(x) end
    if #f ~= 5 or f[5] <= now then -- lapsed, or not ours
      redis.call('HDEL', KEYS[2], members[i])
    else
      for j = 1, 4 do
        if f[j] > 0 and (low[j] == 0 or f[j] < low[j]) then low[j] = f[j] end
      end
      mexp = math.min(mexp, f[5])
    end
  end
  rps, rb, tps, tb = unpack(low)
  if rps > 0 then rl = math.min(rl, rb) end
  if tps > 0 then tl = math.min(tl, tb) end
end

-- Grant what the buckets hold, up to what was asked, once one request and
-- the head request's tokens (never more than the burst) are there.
local want, wantT, minT = math.max(tonumber(ARGV[8]), 1), tonumber(ARGV[9]), tonumber(ARGV[10])
if tps > 0 then
  minT = math.min(math.max(minT, 0), tb)
  wantT = math.max(wantT, minT)
else
  minT, wantT = 0, 0
end
local haveR, haveT = math.huge, math.huge
if rps > 0 then haveR = rl end
if tps > 0 then haveT = tl end
local wait = 0
if now < pause then
  wait = pause - now
else
  if haveR < 1 then wait = (1 - haveR) / rps * 1e6 end
  if haveT < minT then wait = math.max(wait, (minT - haveT) / tps * 1e6) end
  -- Round up, so that the retry finds the permit there, not a hair short.
  if wait > 0 then wait = math.ceil(wait) + 1000 end
end
if wait > 0 then
  save()
  return {0, 0, wait}
end
local r, t = math.min(want, math.floor(haveR)), math.min(wantT, math.floor(haveT))
if r < want then
  -- Tokens in proportion to the requests granted: a partial lease holds no
  -- tokens it has no requests to spend.
  t = math.min(t, math.max(math.ceil(wantT * r / want), minT))
end
if rps > 0 then rl = rl - r end
if tps > 0 then tl = tl - t end
save()
redis.call('SET', KEYS[3], r .. ' ' .. t, 'PX', ARGV[11])
return {r, t, 0}
