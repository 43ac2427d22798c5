-- Ends a task FAILED, fenced: a final task is never changed, a missing one is never recreated,
-- and with an expected updated_at the write happens only if nobody wrote since it was read.
-- Optionally acknowledges and deletes the task's dispatch entry in the same step.
-- KEYS[1] task hash, KEYS[2] dispatch stream, KEYS[3] watch list, KEYS[4] entry index
-- ARGV[1] task id, ARGV[2] error message, ARGV[3] now, ARGV[4] TTL seconds, ARGV[5] group,
-- ARGV[6] entry id or '', ARGV[7] expected updated_at or ''
local current = redis.call('HMGET', KEYS[1], 'status', 'updated_at')
local outcome
if not current[1] then
  outcome = 'missing'
elseif current[1] == 'COMPLETED' or current[1] == 'FAILED' then
  if redis.call('TTL', KEYS[1]) == -1 then
    redis.call('EXPIRE', KEYS[1], ARGV[4])
  end
  outcome = 'final'
elseif ARGV[7] ~= '' and current[2] ~= ARGV[7] then
  outcome = 'changed'
else
  redis.call('HSET', KEYS[1], 'status', 'FAILED', 'error_message', ARGV[2], 'result_file_key', '',
    'updated_at', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  outcome = 'failed'
end
if ARGV[6] ~= '' then
  redis.call('XACK', KEYS[2], ARGV[5], ARGV[6])
  redis.call('XDEL', KEYS[2], ARGV[6])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
if outcome ~= 'changed' then
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return outcome
