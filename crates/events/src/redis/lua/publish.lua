-- Appends a batch: dedup, offsets, the batch index and retention, per partition.
--
-- KEYS: for each partition of the batch: stream, index, state, dedup0, dedup1
-- ARGV: max_events, max_bytes, max_age_ms, dedup_ids, dedup_age_ms (all per partition,
--       0 for none), size_delta, then per partition: n and n encoded events (an
--       encoded event starts with its 16-byte id; with dedup, no id twice)
-- Returns per partition: {base, position, offset, position, offset, ...}: the first
-- offset given to a new event, then the duplicates (position in the partition's share
-- of the batch, and the offset it was stored at).
local max_events, max_bytes, max_age = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local dedup_ids, dedup_age, delta = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local half = math.ceil(dedup_ids / 2)
local now = now_ms()
local CHUNK = 1000

-- Every dedup hash holds this field with a value longer than any server's
-- hash-max-listpack-value (64 by default): a hash that holds it is always a hash
-- table. As a listpack (up to hash-max-listpack-entries, 128 to 512 fields) each
-- lookup and insert would scan the whole hash, which made dedup several times slower.
local SENTINEL = '~'
local SENTINEL_VALUE = string.rep('-', 1024)

-- Ids in a generation: its field count without the sentinel.
local function ids_in(key)
  local n = redis.call('HLEN', key)
  if n > 0 then
    n = n - 1
  end
  return n
end

local function hset_many(key, list)
  redis.call('HSET', key, SENTINEL, SENTINEL_VALUE)
  for i = 1, #list, 2 * CHUNK do
    redis.call('HSET', key, unpack(list, i, math.min(i + 2 * CHUNK - 1, #list)))
  end
  redis.call('PEXPIRE', key, math.max(dedup_age, 1))
end

local function hmget_many(key, ids)
  local out = {}
  for i = 1, #ids, CHUNK do
    local got = redis.call('HMGET', key, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
    for j = 1, #got do
      out[i + j - 1] = got[j]
    end
  end
  return out
end

local out = {}
local a = 7
for k = 1, #KEYS, 5 do
  local stream, index, state, d0, d1 = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local n = tonumber(ARGV[a])
  local first = a + 1
  a = first + n
  local st = redis.call('HMGET', state, 'end', 'dg', 'ds')
  local base = tonumber(st[1]) or 0
  local res = { base }
  local keep = {}
  -- Dedup decides which events are new; the ids are stored once the entries exist
  -- and their offsets are known.
  local gens, prevgen, curgen, dg, ds = {}, 0, 1, 0, now
  local curk, prevk = d0, d1
  if dedup_ids > 0 then
    -- Two generations of ids, like the in-process window: ids go into the current
    -- one; when it holds half the window or is half the window's age old, it becomes
    -- the previous one and the old previous one is dropped whole.
    dg = tonumber(st[2]) or 0
    ds = tonumber(st[3]) or now
    if dg == 1 then
      curk, prevk = d1, d0
    end
    local curlen = ids_in(curk)
    -- Generation 0 is the stored previous one, 1 the stored current one, higher ones
    -- are started by this batch; only prevgen and curgen are live.
    local age = now - ds
    if age >= dedup_age then
      prevgen, curgen, curlen, ds = -1, 2, 0, now
    elseif curlen >= half or age >= dedup_age / 2 then
      prevgen, curgen, curlen, ds = 1, 2, 0, now
    end
    local ids = {}
    for i = 1, n do
      ids[i] = string.sub(ARGV[first + i - 1], 1, 16)
    end
    local pv, cv = {}, {}
    if prevgen == 0 then
      pv = hmget_many(prevk, ids)
    end
    if prevgen == 0 or prevgen == 1 then
      cv = hmget_many(curk, ids)
    end
    -- The caller sends each id of a partition once per batch, so an id is either
    -- in a stored generation or new. New ids are kept with their position among
    -- the new events.
    for i = 1, n do
      if curlen >= half then
        prevgen, curgen, curlen, ds = curgen, curgen + 1, 0, now
      end
      local hit = false
      if prevgen == 0 and pv[i] then
        hit = pv[i]
      elseif (prevgen == 0 or prevgen == 1) and cv[i] then
        hit = cv[i]
      end
      if hit then
        res[#res + 1] = i - 1
        res[#res + 1] = tonumber(hit)
      else
        local g = gens[curgen]
        if not g then
          g = {}
          gens[curgen] = g
        end
        g[#g + 1] = ids[i]
        g[#g + 1] = #keep
        keep[#keep + 1] = ARGV[first + i - 1]
        curlen = curlen + 1
      end
    end
  end
  -- The entries: "0-*" makes the server take the next ID, so offsets follow the
  -- stream's own last ID; the first entry's ID gives the batch's base offset.
  local stored, bytes = 0, 0
  if dedup_ids > 0 then
    stored = #keep
    if stored > 0 then
      base = off(redis.call('XADD', stream, '0-*', 'e', keep[1]))
      bytes = #keep[1]
      for j = 2, stored do
        local blob = keep[j]
        redis.call('XADD', stream, '0-*', 'e', blob)
        bytes = bytes + #blob
      end
    end
  else
    stored = n
    base = off(redis.call('XADD', stream, '0-*', 'e', ARGV[first]))
    bytes = #ARGV[first]
    for i = first + 1, first + n - 1 do
      local blob = ARGV[i]
      redis.call('XADD', stream, '0-*', 'e', blob)
      bytes = bytes + #blob
    end
  end
  res[1] = base
  if dedup_ids > 0 then
    for _, g in pairs(gens) do
      for j = 2, #g, 2 do
        g[j] = base + g[j]
      end
    end
    -- Store the live generations.
    if curgen == 1 then
      if gens[1] then
        hset_many(curk, gens[1])
      end
    elseif prevgen == 1 then
      if gens[1] then
        hset_many(curk, gens[1])
      end
      redis.call('DEL', prevk)
      if gens[curgen] then
        hset_many(prevk, gens[curgen])
      end
      dg = 1 - dg
    else
      redis.call('DEL', d0, d1)
      if prevgen >= 2 and gens[prevgen] then
        hset_many(d0, gens[prevgen])
      end
      if gens[curgen] then
        hset_many(d1, gens[curgen])
      end
      dg = 1
    end
    redis.call('HSET', state, 'dg', dg, 'ds', ds)
  end
  if stored > 0 then
    bytes = bytes + stored * delta
    redis.call('ZADD', index, base, string.format('%d:%d:%d', base, now, bytes))
    redis.call('HSET', state, 'end', base + stored)
    redis.call('HINCRBY', state, 'bytes', bytes)
    trim(stream, index, state, now, max_events, max_bytes, max_age)
  end
  out[#out + 1] = res
end
return out
