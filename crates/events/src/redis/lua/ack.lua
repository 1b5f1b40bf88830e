-- Acknowledges deliveries.
--
-- KEYS: groups, holds, then one stream per partition acknowledged
-- ARGV: group, then per stream: partition, n, n entry IDs
-- Returns how many were pending, or -1 if the group does not exist.
local group = ARGV[1]
if not has_group(KEYS[1], group) then
  return -1
end
local held = redis.call('HLEN', KEYS[2]) > 0
local total = 0
local a = 2
for k = 3, #KEYS do
  local p, n = ARGV[a], tonumber(ARGV[a + 1])
  local first = a + 2
  a = first + n
  for i = first, first + n - 1, 1000 do
    local last = math.min(i + 999, first + n - 1)
    total = total + redis.call('XACK', KEYS[k], group, unpack(ARGV, i, last))
    if held then
      local f = {}
      for j = i, last do
        f[#f + 1] = hold_key(p, off(ARGV[j]))
      end
      redis.call('HDEL', KEYS[2], unpack(f))
    end
  end
end
return total
