-- The first half of a reclaim: the oldest pending ids idle for at least
-- min_idle ms, in id order, with their delivery counts. The XCLAIM that
-- takes them follows from the client, so claimed entries never pass
-- through Lua (converting an entry's fields to Lua and back cost more than
-- the claim itself). A parked retry (park.lua) is passed over until it is
-- due: idle since it was parked, it is not abandoned. Checks types before
-- anything is written and registers the claimer even if it takes nothing,
-- as a read does.
-- KEYS: stream, expiry, delayed; ARGV: group, consumer, min idle ms, count
-- Returns {1 if the TTL index exists (claimed entries must then be
-- checked) else 0, id, delivery count, id, delivery count, ...}.
local stream, expiry, delayed = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local min_idle, count = ARGV[3], tonumber(ARGV[4])
check_type(stream, 'stream')
check_type(expiry, 'zset')
check_type(delayed, 'zset')
pcall(redis.call, 'XGROUP', 'CREATECONSUMER', stream, group, consumer)
local out = {redis.call('EXISTS', expiry)}
local parked = redis.call('EXISTS', delayed) == 1
local now = now_ms()
local start, taken = '-', 0
while taken < count do
  local rows = redis.call('XPENDING', stream, group, 'IDLE', min_idle, start, '+', ARGV[4])
  for _, row in ipairs(rows) do
    local due = parked and redis.call('ZSCORE', delayed, retry_marker(row[1], row[4]))
    if not (due and tonumber(due) > now) and taken < count then
      table.insert(out, row[1])
      table.insert(out, row[4])
      taken = taken + 1
    end
  end
  -- Fewer rows than asked for: there are no more. Otherwise look past the
  -- last one, as parked retries took places.
  if #rows < count then
    break
  end
  start = '(' .. rows[#rows][1]
end
return out
