-- Appends a batch: dedup (one window for the whole topic), offsets, the batch index
-- and retention, per partition.
--
-- KEYS: the topic's dedup state, dedup0, dedup1; then for each partition of the
--       batch: stream, index, state
-- ARGV: max_events, max_bytes, max_age_ms (per partition, 0 for none), dedup_ids,
--       dedup_age_ms (the topic's window, 0 ids for none), size_delta, then per
--       partition: its number p, n and n encoded events (an encoded event starts with
--       its 16-byte id; with dedup, no id twice in the batch)
-- Returns per partition: {base, position, "p:offset", position, "p:offset", ...}: the
-- first offset given to a new event, then the duplicates (position in the partition's
-- share of the batch, and where the id was stored, in whichever partition).
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

-- The partitions of the batch.
local parts = {}
local a = 7
for k = 4, #KEYS, 3 do
  local p, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  parts[#parts + 1] = {
    stream = KEYS[k], index = KEYS[k + 1], state = KEYS[k + 2],
    p = p, first = a + 2, n = n, keep = {}, res = {},
  }
  a = a + 2 + n
end

-- Dedup decides which events are new; the ids are stored once the entries exist and
-- their offsets are known. gens[g] lists, per new id of generation g: the id, its
-- partition (index into parts) and its position among that partition's new events.
local gens, prevgen, curgen, dg, ds = {}, 0, 1, 0, now
local dstate, d0, d1 = KEYS[1], KEYS[2], KEYS[3]
local curk, prevk = d0, d1
if dedup_ids > 0 then
  -- Two generations of ids, like the in-process window: ids go into the current
  -- one; when it holds half the window or is half the window's age old, it becomes
  -- the previous one and the old previous one is dropped whole.
  local st = redis.call('HMGET', dstate, 'dg', 'ds')
  dg = tonumber(st[1]) or 0
  ds = tonumber(st[2]) or now
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
  local ids, owner = {}, {}
  for pi, part in ipairs(parts) do
    for i = 1, part.n do
      ids[#ids + 1] = string.sub(ARGV[part.first + i - 1], 1, 16)
      owner[#ids] = pi
    end
  end
  local pv, cv = {}, {}
  if prevgen == 0 then
    pv = hmget_many(prevk, ids)
  end
  if prevgen == 0 or prevgen == 1 then
    cv = hmget_many(curk, ids)
  end
  -- The caller sends each id once per batch, so an id is either in a stored
  -- generation or new.
  local pos = 0
  for x = 1, #ids do
    local part = parts[owner[x]]
    if x > 1 and owner[x] ~= owner[x - 1] then
      pos = 0
    end
    pos = pos + 1
    if curlen >= half then
      prevgen, curgen, curlen, ds = curgen, curgen + 1, 0, now
    end
    local hit = false
    if prevgen == 0 and pv[x] then
      hit = pv[x]
    elseif (prevgen == 0 or prevgen == 1) and cv[x] then
      hit = cv[x]
    end
    if hit then
      part.res[#part.res + 1] = pos - 1
      part.res[#part.res + 1] = hit
    else
      local g = gens[curgen]
      if not g then
        g = {}
        gens[curgen] = g
      end
      g[#g + 1] = ids[x]
      g[#g + 1] = owner[x]
      g[#g + 1] = #part.keep
      part.keep[#part.keep + 1] = ARGV[part.first + pos - 1]
      curlen = curlen + 1
    end
  end
end

-- The entries: "0-*" makes the server take the next ID, so offsets follow the
-- stream's own last ID; the first entry's ID gives the batch's base offset.
local out = {}
for _, part in ipairs(parts) do
  local stream, index, state = part.stream, part.index, part.state
  local base = tonumber(redis.call('HGET', state, 'end')) or 0
  local stored, bytes = 0, 0
  local blobs, from, to = part.keep, 1, #part.keep
  if dedup_ids == 0 then
    blobs, from, to = ARGV, part.first, part.first + part.n - 1
  end
  if to >= from then
    stored = to - from + 1
    base = off(redis.call('XADD', stream, '0-*', 'e', blobs[from]))
    bytes = #blobs[from]
    for j = from + 1, to do
      local blob = blobs[j]
      redis.call('XADD', stream, '0-*', 'e', blob)
      bytes = bytes + #blob
    end
  end
  part.base = base
  if stored > 0 then
    bytes = bytes + stored * delta
    redis.call('ZADD', index, base, string.format('%d:%d:%d', base, now, bytes))
    redis.call('HSET', state, 'end', base + stored)
    redis.call('HINCRBY', state, 'bytes', bytes)
    trim(stream, index, state, now, max_events, max_bytes, max_age)
  end
  local res = { base }
  for _, v in ipairs(part.res) do
    res[#res + 1] = v
  end
  out[#out + 1] = res
end

if dedup_ids > 0 then
  -- Each new id with where it was stored: `id, "p:offset"` pairs per generation.
  local pairs_of = {}
  for _, part in ipairs(parts) do
    part.prefix = part.p .. ':'
  end
  for g, list in pairs(gens) do
    local flat = {}
    for j = 1, #list, 3 do
      local part = parts[list[j + 1]]
      flat[#flat + 1] = list[j]
      flat[#flat + 1] = part.prefix .. (part.base + list[j + 2])
    end
    pairs_of[g] = flat
  end
  -- Store the live generations.
  if curgen == 1 then
    if pairs_of[1] then
      hset_many(curk, pairs_of[1])
    end
  elseif prevgen == 1 then
    if pairs_of[1] then
      hset_many(curk, pairs_of[1])
    end
    redis.call('DEL', prevk)
    if pairs_of[curgen] then
      hset_many(prevk, pairs_of[curgen])
    end
    dg = 1 - dg
  else
    redis.call('DEL', d0, d1)
    if prevgen >= 2 and pairs_of[prevgen] then
      hset_many(d0, pairs_of[prevgen])
    end
    if pairs_of[curgen] then
      hset_many(d1, pairs_of[curgen])
    end
    dg = 1
  end
  redis.call('HSET', dstate, 'dg', dg, 'ds', ds)
  redis.call('PEXPIRE', dstate, math.max(dedup_age, 1))
end
return out
