-- The second half of a plain append (no TTL, no delay). The client sends
--   MULTI, XADD <stream> NOMKSTREAM * data <entry> (per entry), EVAL this, EXEC
-- so the entries go in without a Lua call each (the costliest part of an
-- append done in a script), and this script, still inside the transaction,
-- checks what append.lua checks before writing. If any check fails it removes
-- every entry the transaction added (they are the newest of their streams:
-- nobody else ran in between) and returns the error, so nobody ever sees
-- them: all or none, as with append.lua. NOMKSTREAM: an XADD never creates
-- a stream that was deleted under its queue. It is sent with EVAL, not
-- EVALSHA: a NOSCRIPT here would let the entries in unchecked.
-- KEYS: per queue: meta, stream, expiry, delayed
-- ARGV: per queue: entries added
local q = #KEYS / 4
local failure = nil
local function wrong(key, t, want)
  return 'WRONGTYPE key ' .. key .. ' holds a ' .. t .. ', eddy expects a ' .. want
end
-- In append.lua's order: every queue's existence and types, then the bounds.
for i = 0, q - 1 do
  local meta, stream = KEYS[i * 4 + 1], KEYS[i * 4 + 2]
  local expiry, delayed = KEYS[i * 4 + 3], KEYS[i * 4 + 4]
  local mt = redis.call('TYPE', meta)['ok']
  local t = redis.call('TYPE', stream)['ok']
  local et = redis.call('TYPE', expiry)['ok']
  local dt = redis.call('TYPE', delayed)['ok']
  if mt == 'none' then
    failure = 'EDDY_NOQUEUE ' .. stream
  elseif mt ~= 'hash' then
    failure = wrong(meta, mt, 'hash')
  elseif t == 'none' then
    failure = 'EDDY_NOSTREAM ' .. stream
  elseif t ~= 'stream' then
    failure = wrong(stream, t, 'stream')
  elseif et ~= 'none' and et ~= 'zset' then
    failure = wrong(expiry, et, 'zset')
  elseif dt ~= 'none' and dt ~= 'zset' then
    failure = wrong(delayed, dt, 'zset')
  end
  if failure then
    break
  end
end
for i = 0, q - 1 do
  if failure then
    break
  end
  local meta, stream = KEYS[i * 4 + 1], KEYS[i * 4 + 2]
  local max = redis.call('HGET', meta, 'max_length')
  if max and redis.call('XLEN', stream) > tonumber(max) then
    failure = 'EDDY_QUEUE_FULL ' .. stream .. ' holds its maximum of ' .. max .. ' entries'
  end
end
if not failure then
  return 1
end
for i = 0, q - 1 do
  local stream = KEYS[i * 4 + 2]
  if redis.call('TYPE', stream)['ok'] == 'stream' then
    local added = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', ARGV[i + 1])
    for _, entry in ipairs(added) do
      redis.call('XDEL', stream, entry[1])
    end
  end
end
return redis.error_reply(failure)
