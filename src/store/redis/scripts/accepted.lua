-- Records that the Processor accepted a task: acknowledges and deletes its dispatch entry, and
-- either gives a final task its TTL (returning its status) or puts an unfinished one on the
-- watch list.
-- KEYS[1] task hash, KEYS[2] dispatch stream, KEYS[3] watch list, KEYS[4] entry index
-- ARGV[1] task id, ARGV[2] group, ARGV[3] entry id, ARGV[4] TTL seconds, ARGV[5] next check (ms)
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 'missing'
end
if status == 'COMPLETED' or status == 'FAILED' then
  if redis.call('TTL', KEYS[1]) == -1 then
    redis.call('EXPIRE', KEYS[1], ARGV[4])
  end
  redis.call('ZREM', KEYS[3], ARGV[1])
  return status
end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
return 'watching'
