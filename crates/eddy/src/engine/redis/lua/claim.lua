-- Reclaim entries whose consumer went quiet (crashed or hung) for at least
-- min_idle ms, for another consumer, in one batch. The pending list is read
-- in bounded pages (as XAUTOCLAIM scans a bounded part per call), which
-- also gives each entry's delivery count before it is claimed: an entry
-- whose count, once claimed, reaches alone_from was redelivered before (it
-- may be one that kills its process) and is claimed alone: first in line it
-- is the whole batch, later in line the batch stops before it. Entries
-- whose TTL passed are dropped; pending ids whose entries were deleted are
-- reported (XCLAIM removes them from the PEL).
-- KEYS: stream, expiry; ARGV: group, consumer, min idle ms, count, alone_from
-- Returns {{id, fields, delivery count}...}, {deleted ids...}
local stream, expiry = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local min_idle, count, alone_from = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
check_type(stream, 'stream')
check_type(expiry, 'zset')
-- Register the claimer even if it takes nothing, as a read does.
pcall(redis.call, 'XGROUP', 'CREATECONSUMER', stream, group, consumer)

local picked, counts = {}, {}
local page_size = math.max(count, 100)
local start, full = '-', false
for _ = 1, 16 do
  local page = redis.call('XPENDING', stream, group, start, '+', page_size)
  for _, p in ipairs(page) do
    -- p = {id, consumer, idle ms, deliveries}
    if p[3] >= min_idle then
      local after = p[4] + 1
      local alone = after >= alone_from
      if alone and #picked > 0 then
        full = true
        break
      end
      picked[#picked + 1] = p[1]
      counts[p[1]] = after
      if alone or #picked >= count then
        full = true
        break
      end
    end
  end
  if full or #page < page_size then
    break
  end
  start = '(' .. page[#page][1]
end

local now = now_ms()
local has_expiry = redis.call('EXISTS', expiry) == 1
local out, deleted, seen = {}, {}, {}
-- XCLAIM in chunks: Lua's unpack has a small stack.
for i = 1, #picked, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #picked) do
    chunk[#chunk + 1] = picked[j]
  end
  local got = redis.call('XCLAIM', stream, group, consumer, min_idle, unpack(chunk))
  for _, e in ipairs(got) do
    seen[e[1]] = true
    if has_expiry and is_expired(expiry, e[1], now) then
      remove_entry(stream, group, expiry, e[1])
    else
      out[#out + 1] = {e[1], e[2], counts[e[1]]}
    end
  end
end
for _, id in ipairs(picked) do
  if not seen[id] then
    deleted[#deleted + 1] = id
  end
end
return {out, deleted}
