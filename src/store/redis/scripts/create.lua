-- Creates a task and its dispatch entry in one atomic step.
-- KEYS[1] task hash, KEYS[2] dispatch stream
-- ARGV[1] n, the number of values that follow for the hash; ARGV[2 .. n+1] the hash's
-- field/value pairs; ARGV[n+2 ..] the dispatch entry's field/value pairs (task, file, trace context)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('TASKEXISTS a task with this id already exists')
end
local n = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2, n + 1))
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, n + 2, #ARGV))
