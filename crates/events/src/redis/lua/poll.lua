-- One pass of a poll: creates the group if needed, claims expired deliveries (and
-- hands those out of deliveries to the caller for the dead-letter topic), then
-- delivers new events of the partitions the member may read.
--
-- KEYS: groups, owners, holds, members, then the stream of every partition in order
-- ARGV: group, member, max, visibility_ms, max_deliveries, first partition,
--       scan ("1": if nothing is delivered, report when to look again)
-- Returns {delivered, dead, wake_ms, blocked, waits}: delivered is a list of
-- {partition, deliveries, entries}, with entries as XREADGROUP returns them (handed
-- back untouched: re-packing them cost more than the read); dead is flat
-- {partition, offset, deliveries, encoded event, ...}; wake_ms is the time until the
-- first held delivery becomes claimable (-1: none); blocked is 1 if a partition with
-- unacknowledged events of another member was skipped; waits is flat {stream, last
-- ID, ...} for a blocking XREAD.
local groups, owners, holds, members = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, member = ARGV[1], ARGV[2]
local room, vis, maxd = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local first, scan = tonumber(ARGV[6]), ARGV[7] == '1'
local n = #KEYS - 4
local now = now_ms()
local CHUNK = 1000

if not has_group(groups, group) then
  for p = 0, n - 1 do
    -- At the oldest retained event; BUSYGROUP (a concurrent creation) is harmless.
    redis.pcall('XGROUP', 'CREATE', KEYS[5 + p], group, '0', 'MKSTREAM')
  end
  redis.call('SADD', groups, group)
end
redis.call('HSET', members, member, now)
local held = redis.call('HLEN', holds)
local out, dead = {}, {}
local readable = {}
local blocked = 0

for k = 0, n - 1 do
  local p = (first + k) % n
  local s = KEYS[5 + p]
  if room > 0 then
    -- Redelivery first: entries idle for the visibility timeout, oldest ID first.
    local pend = redis.call('XPENDING', s, group, 'IDLE', vis, '-', '+', room + held)
    local ids, counts = {}, {}
    for _, e in ipairs(pend) do
      local id, count = e[1], e[4]
      local hkey = hold_key(p, off(id))
      local hold = false
      if held > 0 then
        hold = redis.call('HGET', holds, hkey)
      end
      if hold and tonumber(hold) > now then
        -- A nack's delay is still running.
      elseif maxd > 0 and count >= maxd then
        -- Out of deliveries: the caller moves it to the dead-letter topic, then
        -- acknowledges it. Claimed with its count unchanged, so that if the caller
        -- dies first, the next poll after the timeout does it again.
        local r = redis.call('XCLAIM', s, group, member, vis, id, 'RETRYCOUNT', count)
        if hold then
          redis.call('HDEL', holds, hkey)
        end
        if r[1] and r[1][2] then
          dead[#dead + 1] = p
          dead[#dead + 1] = off(id)
          dead[#dead + 1] = count
          dead[#dead + 1] = r[1][2][2]
        else
          redis.call('XACK', s, group, id)
        end
      elseif #ids < room then
        ids[#ids + 1] = id
        counts[id] = count + 1
        if hold then
          redis.call('HDEL', holds, hkey)
        end
      end
    end
    if #ids > 0 then
      local got = {}
      for i = 1, #ids, CHUNK do
        local r = redis.call('XCLAIM', s, group, member, vis, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
        for _, e in ipairs(r) do
          if e and e[2] then
            got[e[1]] = true
            out[#out + 1] = { p, counts[e[1]], { e } }
            room = room - 1
          end
        end
      end
      -- Entries that retention dropped cannot be delivered: they count as done.
      for _, id in ipairs(ids) do
        if not got[id] then
          redis.call('XACK', s, group, id)
        end
      end
      redis.call('HSET', owners, p, member)
    end
  end
  if room > 0 then
    -- New events, unless another member holds unacknowledged events of the
    -- partition (one key is not processed by two members at once).
    local owner = redis.call('HGET', owners, p)
    if (not owner) or owner == member or redis.call('XPENDING', s, group)[1] == 0 then
      readable[#readable + 1] = p
      local r = redis.call('XREADGROUP', 'GROUP', group, member, 'COUNT', room, 'STREAMS', s, '>')
      if r and r[1] then
        local entries = r[1][2]
        room = room - #entries
        if #entries > 0 then
          out[#out + 1] = { p, 1, entries }
          redis.call('HSET', owners, p, member)
        end
      end
    else
      blocked = 1
    end
  end
end

local wake, waits = -1, {}
if scan and #out == 0 and #dead == 0 then
  for p = 0, n - 1 do
    local s = KEYS[5 + p]
    -- Up to 1000 deliveries per partition are looked at; the caller looks again
    -- within a second anyway.
    for _, e in ipairs(redis.call('XPENDING', s, group, '-', '+', 1000)) do
      local due = vis - e[3]
      if held > 0 then
        local h = redis.call('HGET', holds, hold_key(p, off(e[1])))
        if h and tonumber(h) - now > due then
          due = tonumber(h) - now
        end
      end
      if due < 0 then
        due = 0
      end
      if wake < 0 or due < wake then
        wake = due
      end
    end
  end
  for _, p in ipairs(readable) do
    local s = KEYS[5 + p]
    local last = redis.call('XREVRANGE', s, '+', '-', 'COUNT', 1)
    waits[#waits + 1] = s
    if last[1] then
      waits[#waits + 1] = last[1][1]
    else
      waits[#waits + 1] = '0-0'
    end
  end
end
return { out, dead, wake, blocked, waits }
