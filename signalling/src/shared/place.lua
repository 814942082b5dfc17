-- Place a participant's room: the room's media node while anyone is in it (counted
-- per signalling node; a count of a signalling node that stopped heartbeating is
-- nobody), else the least-loaded candidate with capacity left, this node recording
-- the meeting (`rec`). One atomic step, so that two signalling nodes admitting the
-- room's first two participants at once place it on one node.
--
-- KEYS[1]: the room's hash (field `node`, and `c:<instance>` counts).
-- KEYS[2]: the live signalling nodes (sorted set: instance -> heartbeat deadline).
-- ARGV[1]: this instance; ARGV[2]: now (Unix seconds); ARGV[3]: the hash's lifetime;
-- ARGV[4]: the keys' prefix; then per candidate: its name, capacity and load.
local me, now, ttl, prefix = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local node = redis.call('HGET', KEYS[1], 'node')
local live = false
if node then
  local fields = redis.call('HGETALL', KEYS[1])
  for i = 1, #fields, 2 do
    local f, n = fields[i], tonumber(fields[i + 1])
    if string.sub(f, 1, 2) == 'c:' and n and n > 0 then
      local k = string.sub(f, 3)
      local until_ = tonumber(redis.call('ZSCORE', KEYS[2], k))
      if k == me or (until_ and until_ > now) then
        live = true
      end
    end
  end
end
local best, best_score = nil, nil
for i = 5, #ARGV, 3 do
  local name, cap, load = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if live and name == node then
    redis.call('HINCRBY', KEYS[1], 'c:' .. me, 1)
    redis.call('EXPIRE', KEYS[1], ttl)
    return { node, 0 }
  end
  if load < cap then
    local score = load * 1000 / math.max(cap, 1)
    if best == nil or score < best_score then
      best, best_score = name, score
    end
  end
end
if live then
  -- Its node is not one this signalling node reaches (not registered here yet, or
  -- its link down): never a second node for a live room, while any live signalling
  -- node has the node (a node nobody has is gone: the room is placed anew).
  local alive = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
  for _, k in ipairs(alive) do
    if redis.call('HEXISTS', prefix .. 'nodes:' .. k, node) == 1 then
      return { node, 2 }
    end
  end
end
if best == nil then
  return {}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'node', best, 'c:' .. me, 1, 'rec', me)
redis.call('EXPIRE', KEYS[1], ttl)
return { best, 1 }
