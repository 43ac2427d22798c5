-- Deletes consumers that hold no entries and have been idle longer than ARGV[2] ms (instances
-- that are gone), so the group's consumer list stays bounded. Returns how many were deleted (none
-- when the stream is gone: Redis lost its data, and the next read recreates it).
-- KEYS[1] dispatch stream; ARGV[1] group, ARGV[2] idle ms
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local deleted = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do
    info[consumer[i]] = consumer[i + 1]
  end
  if info['pending'] == 0 and info['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    deleted = deleted + 1
  end
end
return deleted
