-- Reclaim entries whose consumer went quiet (crashed or hung) for at least
-- min_idle ms, for another consumer. Loops XAUTOCLAIM's cursor (each call
-- scans a bounded part of the pending list), returns delivery counts in the
-- same round trip, drops entries whose TTL passed, and reports pending ids
-- whose entries were deleted (XAUTOCLAIM already removed them from the PEL).
-- KEYS: stream, expiry; ARGV: group, consumer, min idle ms, count
-- Returns {{id, fields, delivery count}...}, {deleted ids...}
local stream, expiry = KEYS[1], KEYS[2]
local group, consumer, min_idle, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
check_type(stream, 'stream')
check_type(expiry, 'zset')
-- Register the claimer even if it takes nothing, as a read does.
pcall(redis.call, 'XGROUP', 'CREATECONSUMER', stream, group, consumer)
local now = now_ms()
local has_expiry = redis.call('EXISTS', expiry) == 1
local out, deleted = {}, {}
local cursor = '0-0'
for _ = 1, 16 do
  local res = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, cursor, 'COUNT', count - #out)
  cursor = res[1]
  for _, e in ipairs(res[2]) do
    if has_expiry and is_expired(expiry, e[1], now) then
      remove_entry(stream, group, expiry, e[1])
    else
      local p = redis.call('XPENDING', stream, group, e[1], e[1], 1)
      out[#out + 1] = {e[1], e[2], p[1][4]}
    end
  end
  for _, id in ipairs(res[3] or {}) do
    deleted[#deleted + 1] = id
  end
  if cursor == '0-0' or #out >= count then
    break
  end
end
return {out, deleted}
