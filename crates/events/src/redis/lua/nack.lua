-- Gives deliveries back, to be claimable after a delay.
--
-- A pending entry becomes claimable once idle for the visibility timeout, so a delay
-- shorter than the timeout sets the entry's idle time to (timeout - delay). A longer
-- delay resets the idle time and records a hold (partition:offset -> time) that the
-- poll script respects.
--
-- KEYS: groups, holds, then one stream per partition
-- ARGV: group, visibility_ms, delay_ms, then per stream: partition, n, n entry IDs
-- Returns how many were pending, or -1 if the group does not exist.
local group = ARGV[1]
if not has_group(KEYS[1], group) then
  return -1
end
local vis, delay = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local count = 0
local a = 4
for k = 3, #KEYS do
  local s = KEYS[k]
  local p, n = ARGV[a], tonumber(ARGV[a + 1])
  local first = a + 2
  a = first + n
  for i = first, first + n - 1 do
    local id = ARGV[i]
    local e = redis.call('XPENDING', s, group, id, id, 1)
    if e[1] then
      local owner = e[1][2]
      local hkey = hold_key(p, off(id))
      -- JUSTID leaves the delivery count alone: the redelivery counts, not the nack.
      if delay < vis then
        redis.call('XCLAIM', s, group, owner, 0, id, 'IDLE', vis - delay, 'JUSTID')
        redis.call('HDEL', KEYS[2], hkey)
      else
        redis.call('XCLAIM', s, group, owner, 0, id, 'IDLE', 0, 'JUSTID')
        redis.call('HSET', KEYS[2], hkey, now + delay)
      end
      count = count + 1
    end
  end
end
return count
