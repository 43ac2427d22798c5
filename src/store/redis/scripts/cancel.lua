-- Cancels a task: FAILED with the reason, its dispatch entry (if any) out of the queue, and the
-- instances delivering it told (PUBLISH), in one step. With 'unaccepted', only a task the
-- Processor has not accepted (PENDING, with its entry) is cancelled; one it accepted (no entry
-- any more, or PROCESSING) is answered as such: the caller asks the Processor first, then
-- cancels with 'agreed'.
-- KEYS[1] task hash, KEYS[2] dispatch stream, KEYS[3] entry index, KEYS[4] watch list
-- ARGV[1] task id, ARGV[2] error message, ARGV[3] now, ARGV[4] TTL seconds, ARGV[5] group,
-- ARGV[6] the cancellations channel, ARGV[7] 'unaccepted' or 'agreed'
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {'missing', ''}
end
if status == 'COMPLETED' or status == 'FAILED' then
  return {'final', status}
end
local entry = redis.call('HGET', KEYS[3], ARGV[1])
if ARGV[7] ~= 'agreed' and (not entry or status ~= 'PENDING') then
  return {'accepted', status}
end
redis.call('HSET', KEYS[1], 'status', 'FAILED', 'error_message', ARGV[2], 'result_file_key', '',
  'updated_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if entry then
  redis.call('XACK', KEYS[2], ARGV[5], entry)
  redis.call('XDEL', KEYS[2], entry)
  redis.call('HDEL', KEYS[3], ARGV[1])
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('PUBLISH', ARGV[6], ARGV[1])
return {'cancelled', ''}
