-- Finishes an append made of plain XADDs in the same MULTI/EXEC transaction (topics
-- without dedup): indexes the batch, updates the partition's state and applies
-- retention. Sent with EVAL, not EVALSHA: inside a transaction a missing script
-- would fail after the entries were added.
--
-- KEYS: stream, index, state
-- ARGV: n (entries just added), their encoded bytes, size_delta, max_events,
--       max_bytes, max_age_ms (per partition, 0 for none)
-- Returns the offset of the first entry added.
local n, bytes, delta = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1][1]
local base = off(last) - n + 1
bytes = bytes + n * delta
redis.call('ZADD', KEYS[2], base, string.format('%d:%d:%d', base, now, bytes))
redis.call('HSET', KEYS[3], 'end', base + n)
redis.call('HINCRBY', KEYS[3], 'bytes', bytes)
trim(KEYS[1], KEYS[2], KEYS[3], now, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
return base
