-- Renews (or, at shutdown, gives back) this consumer's leases: for each entry it still owns,
-- sets the idle time to ARGV[3] without counting a delivery. Returns the entries it no longer owns.
-- KEYS[1] dispatch stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] idle ms, ARGV[4..] entry ids
local lost = {}
for i = 4, #ARGV do
  local owned = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #owned == 0 then
    lost[#lost + 1] = ARGV[i]
  else
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
  end
end
return lost
