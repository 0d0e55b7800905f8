-- Fan an event out: append it to the queue of every service subscribed to
-- its type (or to all types), and to the bus's `all` log, in one step.
-- KEYS: route sets..., then the log stream if ARGV[3] == '1'
-- ARGV: target stream prefix, data, has log
-- Returns the services (route members) it was appended for, sorted.
local prefix, data, has_log = ARGV[1], ARGV[2], ARGV[3] == '1'
local nroutes = #KEYS
if has_log then
  nroutes = nroutes - 1
end
local seen, members = {}, {}
for i = 1, nroutes do
  check_type(KEYS[i], 'set')
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    if not seen[m] then
      seen[m] = true
      members[#members + 1] = m
    end
  end
end
table.sort(members)
for _, m in ipairs(members) do
  check_type(prefix .. m, 'stream')
end
if has_log then
  check_type(KEYS[#KEYS], 'stream')
end
for _, m in ipairs(members) do
  redis.call('XADD', prefix .. m, '*', 'data', data)
end
if has_log then
  redis.call('XADD', KEYS[#KEYS], '*', 'data', data)
end
return members
