-- Canal: read a group's history after a position (layers/redis_history.go and
-- django_canal/history.py run this same text).
--
-- KEYS[1] history meta (hash: s = last offset, e = epoch), KEYS[2] history stream
-- ARGV[1] since offset, ARGV[2] since epoch ("" : position only)
-- ARGV[3] epoch to start when the history is gone, ARGV[4] limit (entries)
-- ARGV[5] history ttl (s), ARGV[6] meta ttl (s)
--
-- Returns {status, offset, epoch, id1, d1, id2, d2, ...}: status 1 recovered (the
-- entries follow since without a gap), 0 not recoverable; offset and epoch are the
-- group's current position.
local meta, stream = KEYS[1], KEYS[2]
local s = redis.call('HGET', meta, 's')
local e = redis.call('HGET', meta, 'e')
if not e then
  e = ARGV[3]
  s = '0'
  redis.call('DEL', stream)
  redis.call('HSET', meta, 's', s, 'e', e)
  redis.call('EXPIRE', meta, ARGV[6])
end
if ARGV[2] == '' then
  return {1, s, e}
end
local since, last = tonumber(ARGV[1]), tonumber(s)
if ARGV[2] ~= e or since > last then
  return {0, s, e}
end
if since == last then
  return {1, s, e}
end
local entries = redis.call('XRANGE', stream, (since + 1) .. '-0', '+', 'COUNT', ARGV[4])
if #entries == 0 or entries[1][1] ~= (since + 1) .. '-0' then
  return {0, s, e}
end
local t = redis.call('TIME')
local limit = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[5]) * 1000
local out = {1, s, e}
for i, entry in ipairs(entries) do
  local f = entry[2]
  local d, at
  for j = 1, #f, 2 do
    if f[j] == 'd' then d = f[j + 1] elseif f[j] == 't' then at = tonumber(f[j + 1]) end
  end
  if i == 1 and (at == nil or at < limit) then
    return {0, s, e}
  end
  out[#out + 1] = entry[1]
  out[#out + 1] = d
end
return out
