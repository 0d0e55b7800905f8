-- Whether this connection's user may run every command eddy sends, on keys
-- under the prefix (KEYS[1] is one such key, never written). Returns '' or
-- the first command refused, as `COMMAND key...`. The user needs EVALSHA
-- (and EVAL, SCRIPT LOAD) to run this at all; a refusal of those comes
-- back as NOPERM naming them.
local k = KEYS[1]
local checks = {
  {'XADD', k, '*', 'f', 'v'},
  {'XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', k, '>'},
  {'XACK', k, 'g', '0-1'},
  {'XCLAIM', k, 'g', 'c', '0', '0-1'},
  {'XPENDING', k, 'g'},
  {'XINFO', 'STREAM', k},
  {'XINFO', 'GROUPS', k},
  {'XINFO', 'CONSUMERS', k, 'g'},
  {'XRANGE', k, '-', '+'},
  {'XREVRANGE', k, '+', '-'},
  {'XLEN', k},
  {'XTRIM', k, 'MINID', '0'},
  {'XDEL', k, '0-1'},
  {'XGROUP', 'CREATE', k, 'g', '$', 'MKSTREAM'},
  {'XGROUP', 'DELCONSUMER', k, 'g', 'c'},
  {'HSET', k, 'f', 'v'},
  {'HSETNX', k, 'f', 'v'},
  {'HGET', k, 'f'},
  {'HGETALL', k},
  {'HDEL', k, 'f'},
  {'SADD', k, 'm'},
  {'SREM', k, 'm'},
  {'SMEMBERS', k},
  {'ZADD', k, '1', 'm'},
  {'ZREM', k, 'm'},
  {'ZSCORE', k, 'm'},
  {'ZRANGE', k, '0', '1'},
  {'ZRANGEBYSCORE', k, '0', '1'},
  {'ZCARD', k},
  {'ZSCAN', k, '0'},
  {'EXISTS', k},
  {'TYPE', k},
  {'DEL', k},
  {'TIME'},
  {'INFO', 'server'},
  {'PING'},
  {'MULTI'},
  {'EXEC'},
  {'EVAL', 'return 1', '1', k},
  {'EVALSHA', 'e0e1f9fabfc9d4800c877a703b823ac0578ff8db', '1', k},
  {'SCRIPT', 'LOAD', 'return 1'},
}
for _, c in ipairs(checks) do
  if not redis.acl_check_cmd(unpack(c)) then
    local shown = c[1]
    if c[1] == 'XINFO' or c[1] == 'XGROUP' or c[1] == 'SCRIPT' then
      shown = shown .. ' ' .. c[2]
    end
    return shown .. ' on ' .. k
  end
end
return ''
