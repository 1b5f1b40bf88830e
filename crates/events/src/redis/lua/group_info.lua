-- Reports one consumer group.
--
-- KEYS: members, then per partition: stream, state
-- ARGV: group
-- Returns {parts, held, members}: parts is flat {committed, pending, lag, ...} per
-- partition, held is flat {member, pending, ...}, members is flat {member, last_seen_ms,
-- ...}.
local group = ARGV[1]
local parts, held = {}, {}
for k = 2, #KEYS, 2 do
  local s, st = KEYS[k], KEYS[k + 1]
  local e = tonumber(redis.call('HGET', st, 'end')) or 0
  local start = e - redis.call('XLEN', s)
  local nxt = start
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then
        name = g[i + 1]
      elseif g[i] == 'last-delivered-id' then
        last = g[i + 1]
      end
    end
    if name == group and last then
      nxt = off(last) + 1
    end
  end
  if nxt < start then
    nxt = start
  end
  local summary = redis.call('XPENDING', s, group)
  local pending = summary[1]
  local committed = nxt
  if pending > 0 then
    committed = off(summary[2])
    for _, c in ipairs(summary[4]) do
      held[#held + 1] = c[1]
      held[#held + 1] = c[2]
    end
  end
  parts[#parts + 1] = committed
  parts[#parts + 1] = pending
  parts[#parts + 1] = e - nxt
end
return { parts, held, redis.call('HGETALL', KEYS[1]) }
