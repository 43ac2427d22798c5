-- Creates a task and its dispatch entry in one atomic step.
-- KEYS[1] task hash, KEYS[2] dispatch stream
-- ARGV[1] task id, ARGV[2] original_file_key, ARGV[3] now, ARGV[4..] trace-context field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('TASKEXISTS a task with this id already exists')
end
redis.call('HSET', KEYS[1],
  'task_id', ARGV[1],
  'status', 'PENDING',
  'original_file_key', ARGV[2],
  'result_file_key', '',
  'error_message', '',
  'created_at', ARGV[3],
  'updated_at', ARGV[3])
local entry = {'task_id', ARGV[1], 'original_file_key', ARGV[2]}
for i = 4, #ARGV do
  entry[#entry + 1] = ARGV[i]
end
return redis.call('XADD', KEYS[2], '*', unpack(entry))
