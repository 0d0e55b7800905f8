-- The second half of a plain append (no TTL, no delay). The client sends
--   MULTI, XADD <stream> * data <entry> (per entry), EVAL this, EXEC
-- so the entries go in without a Lua call each (the costliest part of an
-- append done in a script), and this script, still inside the transaction,
-- checks what append.lua checks before writing. If any check fails it removes
-- every entry the transaction added (they are the newest of their streams:
-- nobody else ran in between) and returns the error, so nobody ever sees
-- them: all or none, as with append.lua. It is sent with EVAL, not EVALSHA:
-- a NOSCRIPT here would let the entries in unchecked.
-- KEYS: per queue: meta, stream
-- ARGV: per queue: entries added
local q = #KEYS / 2
local failure = nil
-- In append.lua's order: every queue's existence and type, then the bounds.
for i = 0, q - 1 do
  local meta, stream = KEYS[i * 2 + 1], KEYS[i * 2 + 2]
  local t = redis.call('TYPE', stream)['ok']
  if redis.call('EXISTS', meta) == 0 then
    failure = 'EDDY_NOQUEUE ' .. stream
  elseif t ~= 'stream' then
    failure = 'WRONGTYPE key ' .. stream .. ' holds a ' .. t .. ', eddy expects a stream'
  end
  if failure then
    break
  end
end
for i = 0, q - 1 do
  if failure then
    break
  end
  local meta, stream = KEYS[i * 2 + 1], KEYS[i * 2 + 2]
  local max = redis.call('HGET', meta, 'max_length')
  if max and redis.call('XLEN', stream) > tonumber(max) then
    failure = 'EDDY_QUEUE_FULL ' .. stream .. ' holds its maximum of ' .. max .. ' entries'
  end
end
if not failure then
  return 1
end
for i = 0, q - 1 do
  local stream = KEYS[i * 2 + 2]
  if redis.call('TYPE', stream)['ok'] == 'stream' then
    local added = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', ARGV[i + 1])
    for _, entry in ipairs(added) do
      redis.call('XDEL', stream, entry[1])
    end
    -- A stream the XADDs created (no queue there): gone again.
    if redis.call('XLEN', stream) == 0 and #redis.call('XINFO', 'GROUPS', stream) == 0 then
      redis.call('DEL', stream)
    end
  end
end
return redis.error_reply(failure)
