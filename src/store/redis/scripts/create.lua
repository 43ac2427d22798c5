-- Creates a task and its dispatch entry in one atomic step; with a request id, a retry of the
-- same request answers the first one's task instead, and a request id reused for another file
-- answers the task it belongs to as a conflict.
-- KEYS[1] task hash, KEYS[2] dispatch stream, KEYS[3] entry index (hash), KEYS[4] task index
-- (sorted set), KEYS[5] the request id's record (only with a request id)
-- ARGV[1] n, the number of values that follow for the hash; ARGV[2 .. n+1] the hash's
-- field/value pairs; then: the task id, the task's index member, the request record's value
-- ('<task id> <original_file_key>', or ''), its lifetime in seconds; then the dispatch entry's
-- field/value pairs (task, file, trace context)
local n = tonumber(ARGV[1])
local task_id = ARGV[n + 2]
local member = ARGV[n + 3]
local record = ARGV[n + 4]
local window = ARGV[n + 5]
if #KEYS == 5 then
  local existing = redis.call('GET', KEYS[5])
  if existing then
    local existing_task = string.sub(existing, 1, 36)
    if string.sub(existing, 38) == string.sub(record, 38) then
      return {'existing', existing_task}
    end
    return {'conflict', existing_task}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('TASKEXISTS a task with this id already exists')
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2, n + 1))
local entry = redis.call('XADD', KEYS[2], '*', unpack(ARGV, n + 6, #ARGV))
redis.call('HSET', KEYS[3], task_id, entry)
redis.call('ZADD', KEYS[4], 0, member)
if #KEYS == 5 then
  redis.call('SET', KEYS[5], record, 'EX', window)
end
return {'created', entry}
