-- One page of ListTasks: index members after the cursor, newest first, whose task matches the
-- status filter; members whose task is gone (expired, lost) are removed on the way. At most
-- ARGV[3] members are looked at, so a call costs no more than that whatever is stored.
-- KEYS[1] task index; ARGV[1] where to start ('-', or '(' .. the last member seen), ARGV[2] page
-- size, ARGV[3] members looked at at most, ARGV[4] status filter ('' for any)
-- Returns {tasks (each the hash's field/value array), the last member looked at, 'more'|'done'}
local start = ARGV[1]
local page = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local found = {}
local last = ''
while #found < page and budget > 0 do
  local batch = redis.call('ZRANGE', KEYS[1], start, '+', 'BYLEX', 'LIMIT', 0, math.min(budget, page * 2))
  if #batch == 0 then
    return {found, last, 'done'}
  end
  for _, member in ipairs(batch) do
    budget = budget - 1
    last = member
    local hash = redis.call('HGETALL', 'task:' .. string.sub(member, 15))
    if #hash == 0 then
      redis.call('ZREM', KEYS[1], member)
    else
      local matches = ARGV[4] == ''
      if not matches then
        for i = 1, #hash, 2 do
          if hash[i] == 'status' then
            matches = hash[i + 1] == ARGV[4]
            break
          end
        end
      end
      if matches then
        found[#found + 1] = hash
        if #found == page then
          break
        end
      end
    end
  end
  start = '(' .. last
end
local rest = redis.call('ZRANGE', KEYS[1], '(' .. last, '+', 'BYLEX', 'LIMIT', 0, 1)
if #rest == 0 then
  return {found, last, 'done'}
end
return {found, last, 'more'}
