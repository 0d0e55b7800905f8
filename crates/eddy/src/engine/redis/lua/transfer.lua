-- Move entries between queues (dead-letter, requeue): the destination gets
-- a new entry, the source entry is acknowledged, deleted and un-indexed.
-- One script, so the entry is in exactly one of the two queues at any time.
-- KEYS: from stream, from expiry, to stream, to meta
-- ARGV: from group, then pairs of (source id, new data)
-- Returns per pair the new id, or '' if the source entry no longer exists.
local fstream, fexpiry, tstream, tmeta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local fgroup = ARGV[1]
if redis.call('EXISTS', tmeta) == 0 then
  return redis.error_reply('EDDY_NOQUEUE ' .. tstream)
end
check_type(fstream, 'stream')
check_type(fexpiry, 'zset')
check_type(tstream, 'stream')
local out = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if #redis.call('XRANGE', fstream, id, id) == 1 then
    out[#out + 1] = redis.call('XADD', tstream, '*', 'data', ARGV[i + 1])
    remove_entry(fstream, fgroup, fexpiry, id)
  else
    out[#out + 1] = ''
  end
end
return out
