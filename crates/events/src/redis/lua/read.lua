-- Reads a partition from an offset, applying retention by age first.
--
-- KEYS: stream, index, state
-- ARGV: from, max, max_events, max_bytes, max_age_ms (per partition, 0 for none)
-- Returns {entries, batches}: entries is flat {offset, encoded event, ...}, batches
-- the index members ("base:appended_ms:bytes") of the batches the entries are in.
local from, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
trim(KEYS[1], KEYS[2], KEYS[3], now, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
local r = redis.call('XRANGE', KEYS[1], oid(from), '+', 'COUNT', max)
local entries = {}
for _, e in ipairs(r) do
  entries[#entries + 1] = off(e[1])
  entries[#entries + 1] = e[2][2]
end
if #r == 0 then
  return { entries, {} }
end
local lo, hi = off(r[1][1]), off(r[#r][1])
local batches = redis.call('ZREVRANGEBYSCORE', KEYS[2], lo, '-inf', 'LIMIT', 0, 1)
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], string.format('(%d', lo), hi)) do
  batches[#batches + 1] = m
end
return { entries, batches }
