-- Removes from the task index the members whose task is gone (expired or lost), looking at
-- ARGV[2] members after ARGV[1] ('-' from the start). Returns {members removed, the last member
-- looked at ('' once the end is reached)}.
-- KEYS[1] task index
local batch = redis.call('ZRANGE', KEYS[1], ARGV[1], '+', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[2]))
local removed = 0
for _, member in ipairs(batch) do
  if redis.call('EXISTS', 'task:' .. string.sub(member, 15)) == 0 then
    redis.call('ZREM', KEYS[1], member)
    removed = removed + 1
  end
end
if #batch < tonumber(ARGV[2]) then
  return {removed, ''}
end
return {removed, batch[#batch]}
