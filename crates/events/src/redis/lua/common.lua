-- Helpers shared by every script (placed in front of each one).
--
-- A Baton offset o is the stream entry ID "0-(o+1)": IDs grow with offsets, and
-- "0-0", which XADD refuses, is never needed.
local function oid(o)
  return string.format('0-%d', o + 1)
end

-- The field of a nack's hold in a group's holds hash: "partition:offset".
local function hold_key(p, o)
  return string.format('%d:%d', p, o)
end

-- The offset of a stream entry ID.
local function off(id)
  return tonumber(string.sub(id, 3)) - 1
end

-- The server's clock in ms since the Unix epoch: every timeout and age is measured on
-- it, so that the processes sharing a log agree.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A member of a partition's batch index: "base:appended_ms:bytes".
local function batch(m)
  local b, ms, by = string.match(m, '^(%d+):(%d+):(%d+)$')
  return tonumber(b), tonumber(ms), tonumber(by)
end

-- Applies retention to one partition, like the in-process backends: the events over
-- the count bound go first, then whole batches while the partition is over its byte
-- bound (its newest batch is always kept) or older than the age bound. Returns the
-- first retained offset, the end and the retained bytes.
local function trim(stream, index, state, now, max_events, max_bytes, max_age)
  local st = redis.call('HMGET', state, 'end', 'bytes')
  local e = tonumber(st[1]) or 0
  local bytes = tonumber(st[2]) or 0
  local len = redis.call('XLEN', stream)
  local start = e - len
  local keep = start
  if max_events > 0 and len > max_events then
    keep = e - max_events
  end
  local cutoff = -1
  if max_age > 0 then
    cutoff = now - max_age
  end
  local dropped = false
  while true do
    local front = redis.call('ZRANGE', index, 0, 1)
    if #front == 0 then
      break
    end
    local _, ms0, by0 = batch(front[1])
    local nxt = e
    if #front > 1 then
      nxt = batch(front[2])
    end
    local drop = nxt <= keep
    if not drop and ((#front > 1 and max_bytes > 0 and bytes > max_bytes) or ms0 < cutoff) then
      drop = true
      keep = nxt
    end
    if not drop then
      break
    end
    redis.call('ZREM', index, front[1])
    bytes = bytes - by0
    dropped = true
  end
  if keep > start then
    redis.call('XTRIM', stream, 'MINID', oid(keep))
    start = keep
  end
  if dropped then
    redis.call('HSET', state, 'bytes', bytes)
  end
  return start, e, bytes
end

-- Whether `group` exists on the topic.
local function has_group(groups, group)
  return redis.call('SISMEMBER', groups, group) == 1
end
