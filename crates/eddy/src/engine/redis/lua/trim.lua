-- Trim acknowledged history: remove entries that the group has both
-- delivered and acknowledged and that are older than the retention window,
-- or that have more than the kept length of such entries after them. An
-- entry at or after the oldest pending one, or not yet delivered, is never
-- trimmed.
-- KEYS: stream; ARGV: group, retention ms, length kept ('' for no limit)
-- Returns how many entries were removed.
local stream, group = KEYS[1], ARGV[1]
local retention, length = tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('EXISTS', stream) == 0 then
  return 0
end
check_type(stream, 'stream')
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  return ams < bms or (ams == bms and aseq < bseq)
end
local last
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local name, id
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then id = g[i + 1] end
  end
  if name == group then last = id end
end
if not last then
  return 0
end
-- Everything up to and including `last` was delivered: the first id after it.
local ms, seq = parse(last)
local limit = string.format('%d-%d', ms, seq + 1)
local oldest = redis.call('XPENDING', stream, group, '-', '+', 1)
if oldest[1] and less(oldest[1][1], limit) then
  limit = oldest[1][1]
end
-- Entries below `limit` may go: those below the larger of the two bounds.
local target
if retention then
  target = string.format('%d-0', math.max(now_ms() - retention, 0))
end
if length then
  local by_length = limit
  if length > 0 then
    if redis.call('XLEN', stream) <= length then
      -- Fewer entries than the bound in all: nothing goes by length, and
      -- the range below (which reads `length` entries) is not needed.
      by_length = '0-0'
    else
      -- The `length`-th newest acknowledged entry is the oldest one kept.
      local kept = redis.call('XREVRANGE', stream, '(' .. limit, '-', 'COUNT', length)
      by_length = #kept == length and kept[length][1] or '0-0'
    end
  end
  if not target or less(target, by_length) then
    target = by_length
  end
end
if not target then
  return 0
end
if less(target, limit) then
  limit = target
end
return redis.call('XTRIM', stream, 'MINID', limit)
