-- Moves a group, dropping its pending deliveries in the partitions moved (the group is
-- re-created there at the new position).
--
-- KEYS: groups, owners, holds, then per partition: stream, state
-- ARGV: group, then per partition: "-" (keep), "E" (earliest), "L" (latest) or an offset
local groups, owners, holds = KEYS[1], KEYS[2], KEYS[3]
local group = ARGV[1]
local exists = has_group(groups, group)
local moved = {}
for k = 4, #KEYS, 2 do
  local p = (k - 4) / 2
  local s, st = KEYS[k], KEYS[k + 1]
  local to = ARGV[2 + p]
  if to ~= '-' then
    local id = '0'
    if to == 'L' then
      id = '$'
    elseif to ~= 'E' then
      local e = tonumber(redis.call('HGET', st, 'end')) or 0
      -- The last delivered ID is that of the offset before the target.
      id = string.format('0-%d', math.min(tonumber(to), e))
    end
    redis.pcall('XGROUP', 'DESTROY', s, group)
    redis.call('XGROUP', 'CREATE', s, group, id, 'MKSTREAM')
    redis.call('HDEL', owners, p)
    moved[tostring(p)] = true
  elseif not exists then
    redis.call('XGROUP', 'CREATE', s, group, '0', 'MKSTREAM')
  end
end
if redis.call('HLEN', holds) > 0 then
  for _, f in ipairs(redis.call('HKEYS', holds)) do
    if moved[string.match(f, '^(%d+):')] then
      redis.call('HDEL', holds, f)
    end
  end
end
redis.call('SADD', groups, group)
return 1
