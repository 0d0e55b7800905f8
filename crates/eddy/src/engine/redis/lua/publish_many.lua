-- Fan out a batch of events (one or more) in one step: every key
-- is checked before the first write, so the batch is all or nothing. Every
-- target stream (and the log) must exist: a route whose queue was deleted
-- fails the batch instead of recreating the stream without its group.
-- KEYS: the route sets and logs of the batch, each once
-- ARGV: per event: target stream prefix, data, index of its log in KEYS
--       (0: none), number of route sets, then their indexes in KEYS
-- Returns per event the services (route members) it was appended for,
-- sorted.
local members_of, checked, missing = {}, {}, nil
local function members(k)
  local m = members_of[k]
  if not m then
    check_type(KEYS[k], 'set')
    m = redis.call('SMEMBERS', KEYS[k])
    members_of[k] = m
  end
  return m
end
local function stream(key)
  if not checked[key] then
    check_type(key, 'stream')
    if not missing and redis.call('EXISTS', key) == 0 then
      missing = key
    end
    checked[key] = true
  end
end

local events, i = {}, 1
while i <= #ARGV do
  local prefix, data = ARGV[i], ARGV[i + 1]
  local log, nroutes = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  i = i + 4
  local seen, targets = {}, {}
  for _ = 1, nroutes do
    for _, m in ipairs(members(tonumber(ARGV[i]))) do
      if not seen[m] then
        seen[m] = true
        targets[#targets + 1] = m
      end
    end
    i = i + 1
  end
  table.sort(targets)
  for _, m in ipairs(targets) do
    stream(prefix .. m)
  end
  if log > 0 then
    stream(KEYS[log])
  end
  events[#events + 1] = {prefix, data, log, targets}
end

if missing then
  return redis.error_reply(no_stream(missing))
end

local out = {}
for n, e in ipairs(events) do
  for _, m in ipairs(e[4]) do
    redis.call('XADD', e[1] .. m, '*', 'data', e[2])
  end
  if e[3] > 0 then
    redis.call('XADD', KEYS[e[3]], '*', 'data', e[2])
  end
  out[n] = e[4]
end
return out
