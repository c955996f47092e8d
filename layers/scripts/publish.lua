-- Canal: publish a message to a group with history (layers/redis_history.go and
-- django_canal/history.py run this same text).
--
-- KEYS[1] history meta (hash: s = last offset, e = epoch)
-- KEYS[2] history stream (entry ids "<offset>-0", fields d = message, t = unix ms)
-- KEYS[3] the group's sorted set, when ARGV[8] is "1"
-- KEYS[3 or 4 ...] process queue keys to deliver to, one per body below
--
-- ARGV[1] offset the caller expects to be the last, ARGV[2] epoch it expects
-- ARGV[3] epoch to start when the history is gone
-- ARGV[4] the history entry (the message, encoded)
-- ARGV[5] size (MAXLEN), ARGV[6] history ttl (s), ARGV[7] meta ttl (s)
-- ARGV[8] "1": check that the group's members are exactly those the caller read
-- ARGV[9] group member cutoff (members joined at or before it are pruned first)
-- ARGV[10] m, then ARGV[11 .. 10+m] the members the caller read (ZRANGE order)
-- then n queue bodies, n capacities, score, expiry, cutoff (channels_redis'
-- group_send for the keys of this host)
--
-- Returns {status, offset, epoch}: 1 published at offset; 0 the caller's expected
-- position is stale (re-encode with the returned one and retry); -1 the members
-- changed (read them again and retry).
local meta, stream = KEYS[1], KEYS[2]
local check = ARGV[8] == '1'
local s = redis.call('HGET', meta, 's')
local e = redis.call('HGET', meta, 'e')
if not e then
  e = ARGV[3]
  s = '0'
  redis.call('DEL', stream)
  redis.call('HSET', meta, 's', s, 'e', e)
  redis.call('EXPIRE', meta, ARGV[7])
end
if s ~= ARGV[1] or e ~= ARGV[2] then
  return {0, s, e}
end
local m = tonumber(ARGV[10])
if check then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], 0, ARGV[9])
  local now = redis.call('ZRANGE', KEYS[3], 0, -1)
  if #now ~= m then
    return {-1, s, e}
  end
  for i = 1, m do
    if now[i] ~= ARGV[10 + i] then
      return {-1, s, e}
    end
  end
end
local offset = redis.call('HINCRBY', meta, 's', 1)
redis.call('EXPIRE', meta, ARGV[7])
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', stream, 'MAXLEN', ARGV[5], offset .. '-0', 'd', ARGV[4], 't', ms)
redis.call('EXPIRE', stream, ARGV[6])
-- Age bound: drop (at most 32 per publish) entries older than the ttl.
local old = redis.call('XRANGE', stream, '-', '+', 'COUNT', 32)
local limit = ms - tonumber(ARGV[6]) * 1000
for _, entry in ipairs(old) do
  local f = entry[2]
  local at
  for j = 1, #f, 2 do
    if f[j] == 't' then at = tonumber(f[j + 1]) end
  end
  if at == nil or at >= limit then break end
  redis.call('XDEL', stream, entry[1])
end
-- Live delivery: channels_redis' group_send script.
local first = check and 4 or 3
local n = #KEYS - first + 1
local base = 10 + m
local score, expiry, cutoff = ARGV[base + 2 * n + 1], ARGV[base + 2 * n + 2], ARGV[base + 2 * n + 3]
local full = 0
for i = 1, n do
  local key = KEYS[first + i - 1]
  redis.call('ZREMRANGEBYSCORE', key, 0, cutoff)
  if redis.call('ZCOUNT', key, '-inf', '+inf') < tonumber(ARGV[base + n + i]) then
    redis.call('ZADD', key, score, ARGV[base + i])
    redis.call('EXPIRE', key, expiry)
  else
    full = full + 1
  end
end
return {1, tostring(offset), e, full}
