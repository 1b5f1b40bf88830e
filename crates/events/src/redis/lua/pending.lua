-- Lists a group's deliveries that are not acknowledged yet.
--
-- KEYS: groups, holds, then the stream of every partition in order
-- ARGV: group, limit, visibility_ms
-- Returns flat {partition, offset, member, since_ms, deliveries, claimable_at_ms, ...},
-- or -1 if the group does not exist.
local group = ARGV[1]
if not has_group(KEYS[1], group) then
  return -1
end
local limit, vis = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local held = redis.call('HLEN', KEYS[2]) > 0
local out, count = {}, 0
for k = 3, #KEYS do
  if count >= limit then
    break
  end
  local p = k - 3
  for _, e in ipairs(redis.call('XPENDING', KEYS[k], group, '-', '+', limit - count)) do
    local since = now - e[3]
    local at = since + vis
    if held then
      local h = redis.call('HGET', KEYS[2], hold_key(p, off(e[1])))
      if h and tonumber(h) > at then
        at = tonumber(h)
      end
    end
    out[#out + 1] = p
    out[#out + 1] = off(e[1])
    out[#out + 1] = e[2]
    out[#out + 1] = since
    out[#out + 1] = e[4]
    out[#out + 1] = at
    count = count + 1
  end
end
return out
