-- Move entries between queues (dead-letter, requeue): the destination gets
-- a new entry with every field of the source entry, in its order (`data`
-- replaced when a new one is given, the given fields set), and the source
-- entry is acknowledged, deleted and un-indexed. One script, so the entry is
-- in exactly one of the two queues at any time, and no field is ever lost.
-- KEYS: from stream, from expiry, to stream, to meta
-- ARGV: from group, then per move: source id, '1' and the new data (or '0'
-- and '' to keep the source's), the number n of fields to set, n pairs of
-- (field, value).
-- Returns per move the new id, or '' if the source entry no longer exists.
local fstream, fexpiry, tstream, tmeta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local fgroup = ARGV[1]
if redis.call('EXISTS', tmeta) == 0 then
  return redis.error_reply('EDDY_NOQUEUE ' .. tstream)
end
check_type(fstream, 'stream')
check_type(fexpiry, 'zset')
check_type(tstream, 'stream')
local out = {}
local i = 2
while i <= #ARGV do
  local id, replace, data, n = ARGV[i], ARGV[i + 1] == '1', ARGV[i + 2], tonumber(ARGV[i + 3])
  local set, order = {}, {}
  for j = 0, n - 1 do
    local k, v = ARGV[i + 4 + 2 * j], ARGV[i + 5 + 2 * j]
    if set[k] == nil then
      order[#order + 1] = k
    end
    set[k] = v
  end
  i = i + 4 + 2 * n
  local src = redis.call('XRANGE', fstream, id, id)
  if #src == 1 then
    local fields, args, done, last = src[1][2], {}, {}, {}
    -- A field given twice keeps its other copies: only the last, the one a
    -- reader takes, is set.
    for f = 1, #fields, 2 do
      last[fields[f]] = f
    end
    local has_data = false
    for f = 1, #fields, 2 do
      local k, v = fields[f], fields[f + 1]
      if k == 'data' and not has_data then
        has_data = true
        if replace then
          v = data
        end
      elseif set[k] ~= nil and last[k] == f then
        v = set[k]
        done[k] = true
      end
      args[#args + 1] = k
      args[#args + 1] = v
    end
    if replace and not has_data then
      table.insert(args, 1, data)
      table.insert(args, 1, 'data')
    end
    for _, k in ipairs(order) do
      if not done[k] and k ~= 'data' then
        args[#args + 1] = k
        args[#args + 1] = set[k]
      end
    end
    out[#out + 1] = redis.call('XADD', tstream, '*', unpack(args))
    remove_entry(fstream, fgroup, fexpiry, id)
  else
    out[#out + 1] = ''
  end
end
return out
