-- Looks at one watched task: a final task gets its TTL and leaves the watch list, a missing one
-- leaves it, an unfinished one is looked at again at ARGV[3]. Returns {status, updated_at}
-- ('missing' when the hash is gone) so the caller can judge whether it stalled.
-- KEYS[1] task hash, KEYS[2] watch list; ARGV[1] task id, ARGV[2] TTL seconds, ARGV[3] next check (ms)
local current = redis.call('HMGET', KEYS[1], 'status', 'updated_at', 'created_at')
if not current[1] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'missing', '', ''}
end
if current[1] == 'COMPLETED' or current[1] == 'FAILED' then
  if redis.call('TTL', KEYS[1]) == -1 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
  end
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {current[1], current[2] or '', current[3] or ''}
end
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[1])
return {current[1], current[2] or '', current[3] or ''}
