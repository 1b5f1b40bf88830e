-- Per partition, the first offset appended at or after a time: a binary search over
-- the batch index (appended times grow with offsets).
--
-- KEYS: per partition: stream, index, state
-- ARGV: time_ms
local t = tonumber(ARGV[1])
local out = {}
for k = 1, #KEYS, 3 do
  local e = tonumber(redis.call('HGET', KEYS[k + 2], 'end')) or 0
  local start = e - redis.call('XLEN', KEYS[k])
  local n = redis.call('ZCARD', KEYS[k + 1])
  local lo, hi = 0, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local _, ms = batch(redis.call('ZRANGE', KEYS[k + 1], mid, mid)[1])
    if ms < t then
      lo = mid + 1
    else
      hi = mid
    end
  end
  local r = e
  if lo < n then
    r = math.min(math.max(batch(redis.call('ZRANGE', KEYS[k + 1], lo, lo)[1]), start), e)
  end
  out[#out + 1] = r
end
return out
