-- Remove from a group the consumers that hold no pending entry and have
-- been idle at least the given time (a process that ended leaves its name
-- behind; one that holds entries keeps it until they are claimed).
-- KEYS: stream; ARGV: group, idle ms
-- Returns the names removed.
local stream, group, idle = KEYS[1], ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', stream) == 0 then
  return {}
end
check_type(stream, 'stream')
local found = false
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  for i = 1, #g, 2 do
    if g[i] == 'name' and g[i + 1] == group then found = true end
  end
end
if not found then
  return {}
end
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
  local name, pending, since
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = c[i + 1]
    elseif c[i] == 'idle' then since = c[i + 1]
    end
  end
  if pending == 0 and since >= idle then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
    removed[#removed + 1] = name
  end
end
return removed
