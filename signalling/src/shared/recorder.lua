-- The signalling node that records the room's meeting (exactly one writes its
-- record): the one that placed the room, while it is alive; else the asking node
-- takes it over. A room nobody has placed (its hash gone) is the asker's, unnoted.
--
-- KEYS[1]: the room's hash. KEYS[2]: the live signalling nodes (sorted set).
-- ARGV[1]: this instance; ARGV[2]: now (Unix seconds).
local me, now = ARGV[1], tonumber(ARGV[2])
local rec = redis.call('HGET', KEYS[1], 'rec')
if rec then
  if rec == me then
    return rec
  end
  local until_ = tonumber(redis.call('ZSCORE', KEYS[2], rec))
  if until_ and until_ > now then
    return rec
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'rec', me)
end
return me
