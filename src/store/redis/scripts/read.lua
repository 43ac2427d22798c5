-- Reads a task; a final task that has no expiry yet (the Processor wrote the final state with a
-- plain HSET) gets the TTL here.
-- KEYS[1] task hash; ARGV[1] TTL in seconds
local hash = redis.call('HGETALL', KEYS[1])
for i = 1, #hash, 2 do
  if hash[i] == 'status' then
    local status = hash[i + 1]
    if (status == 'COMPLETED' or status == 'FAILED') and redis.call('TTL', KEYS[1]) == -1 then
      redis.call('EXPIRE', KEYS[1], ARGV[1])
    end
    break
  end
end
return hash
