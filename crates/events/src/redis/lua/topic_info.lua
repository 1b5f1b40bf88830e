-- Reports a topic, applying retention by age first.
--
-- KEYS: groups, then per partition: stream, index, state
-- ARGV: max_events, max_bytes, max_age_ms (per partition, 0 for none)
-- Returns {parts, groups}: parts is flat {start, end, bytes, ...} per partition.
local max_events, max_bytes, max_age = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local parts = {}
for k = 2, #KEYS, 3 do
  local start, e, bytes = trim(KEYS[k], KEYS[k + 1], KEYS[k + 2], now, max_events, max_bytes, max_age)
  parts[#parts + 1] = start
  parts[#parts + 1] = e
  parts[#parts + 1] = bytes
end
return { parts, redis.call('SMEMBERS', KEYS[1]) }
