-- This signalling node has `n` participants in the room, on media node `node`: its
-- count is set (a room placed by nobody takes the node), and the hash goes when no
-- count is left.
--
-- KEYS[1]: the room's hash. ARGV[1]: this instance; ARGV[2]: n; ARGV[3]: the node;
-- ARGV[4]: the hash's lifetime.
local field = 'c:' .. ARGV[1]
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], field, ARGV[2])
  redis.call('HSETNX', KEYS[1], 'node', ARGV[3])
  redis.call('HSETNX', KEYS[1], 'rec', ARGV[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  return 1
end
redis.call('HDEL', KEYS[1], field)
local fields = redis.call('HKEYS', KEYS[1])
for _, f in ipairs(fields) do
  if string.sub(f, 1, 2) == 'c:' then
    return 0
  end
end
redis.call('DEL', KEYS[1])
return 0
