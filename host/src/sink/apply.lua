#!lua name=redis_spanner
-- Versioned apply for Redis Spanner.
--
-- Every cached key K has a companion key (same hash slot) holding the
-- version of the change that last wrote or deleted K:
--   "<commit micros, 19 digits>:<transaction id>:<record sequence, 10 digits>"
-- An effect is applied only if its version is newer than the stored one, so
-- replays, duplicates and late or out-of-order batches never move K back.
-- A delete leaves the version behind as a tombstone for a bounded time.
--
-- FCALL rs_apply 2 K VK op version tombstone_ms [value ttl_ms | ttl_ms]
--   op = "set": SET K value (PX ttl_ms when ttl_ms > 0)
--   op = "del": DEL K
--   op = "expire": PEXPIRE K ttl_ms (also at an equal version, so that a
--                  change may set and expire the same key)
-- Returns 1 when applied, 2 when the key already holds this very version
-- (written by an earlier attempt whose reply was lost, or by a replay), 0
-- when refused as stale (or expire of a missing key).
--
-- FCALL rs_apply_many 2N K1 VK1 ... KN VKN tombstone_ms c1 op1 version1 ...
--   rs_apply for N effects in one atomic step (a function runs whole, so no
--   reader sees part of it). Effect i gives ci (how many arguments follow
--   for it), its op and version, then its value and ttl_ms ("set"), its
--   ttl_ms ("expire") or nothing ("del"). Returns an array holding, per
--   effect, what rs_apply returns or the error it raised (the effects
--   before and after it are still applied: functions do not roll back).
--
-- FCALL rs_fill 2 K VK read_micros value [ttl_ms]
-- FCALL rs_fill 3 K VK REFUSALS read_micros value [ttl_ms]
--   For applications that read a row from Spanner at timestamp read_micros
--   (microseconds since the Unix epoch) and cache it: SET K value only if no
--   change newer than the read was applied (or deleted K, while its
--   tombstone lasts). A slow reader therefore never puts back a value that a
--   later change replaced or deleted. Its version is read_micros with an
--   empty transaction id, so a change committed at read_micros itself wins.
--   With a third key, a refused fill is recorded in that stream (fields key,
--   version, stored), which the host copies into its audit trail.
--   Returns 1 when written, 0 when refused as stale.
--
-- FCALL rs_audit_append 2 STREAM HEAD expected new n1 f1 v1 ... n2 ...
--   Appends audit records to STREAM only if HEAD holds `expected` (a missing
--   HEAD counts as `expected` = "" or the genesis hash), then sets HEAD to
--   `new`. Each record is its field count followed by its fields and
--   values. Several writers (the service, a backfill, a replay) share one
--   chain this way: a writer whose head is stale appends nothing.
--   Returns 1 when appended; otherwise an error "CHAINMOVED <head>" naming the
--   head HEAD holds.

local function parse(version)
  local micros, tx, seq = string.match(version, '^(%d+):(.*):(%d+)$')
  if not micros then
    error('malformed version ' .. version)
  end
  return tonumber(micros), tx, tonumber(seq)
end

-- -1, 0 or 1 as version a is older than, equal to or newer than b.
local function compare(a, b)
  local am, at, as = parse(a)
  local bm, bt, bs = parse(b)
  if am ~= bm then return am < bm and -1 or 1 end
  if at ~= bt then return at < bt and -1 or 1 end
  if as ~= bs then return as < bs and -1 or 1 end
  return 0
end

local function keep_version(vkey, version, ttl_ms)
  if ttl_ms > 0 then
    redis.call('SET', vkey, version, 'PX', ttl_ms)
  else
    redis.call('SET', vkey, version)
  end
end

-- SET K value (PX ttl_ms when ttl_ms > 0) and record its version; the
-- version of a key with a TTL outlives it by grace_ms.
local function write_value(key, vkey, value, version, ttl_ms, grace_ms)
  if ttl_ms > 0 then
    redis.call('SET', key, value, 'PX', ttl_ms)
    keep_version(vkey, version, ttl_ms + grace_ms)
  else
    redis.call('SET', key, value)
    keep_version(vkey, version, 0)
  end
end

local function rs_apply(keys, args)
  local key, vkey = keys[1], keys[2]
  local op, version, tombstone_ms = args[1], args[2], tonumber(args[3])
  local stored = redis.call('GET', vkey)
  if stored then
    local order = compare(version, stored)
    if order < 0 then
      return 0
    end
    if order == 0 and op ~= 'expire' then
      return 2
    end
  end
  if op == 'set' then
    write_value(key, vkey, args[4], version, tonumber(args[5]), tombstone_ms)
  elseif op == 'del' then
    redis.call('DEL', key)
    keep_version(vkey, version, tombstone_ms)
  elseif op == 'expire' then
    local ttl_ms = tonumber(args[4])
    if redis.call('PEXPIRE', key, ttl_ms) == 0 then
      return 0
    end
    keep_version(vkey, version, ttl_ms + tombstone_ms)
  else
    error('unknown op ' .. tostring(op))
  end
  return 1
end

local function rs_apply_many(keys, args)
  if #keys % 2 ~= 0 then
    error('rs_apply_many: keys must come in pairs (key, version key)')
  end
  local tombstone_ms = args[1]
  local results = {}
  local at = 2
  for i = 1, #keys / 2 do
    local count = tonumber(args[at])
    if not count or count < 2 or at + count > #args then
      error('rs_apply_many: malformed arguments of effect ' .. i)
    end
    local effect_args = { args[at + 1], args[at + 2], tombstone_ms }
    for j = 3, count do
      effect_args[#effect_args + 1] = args[at + j]
    end
    at = at + count + 1
    local ok, result = pcall(rs_apply, { keys[2 * i - 1], keys[2 * i] }, effect_args)
    if ok then
      results[i] = result
    elseif type(result) == 'table' and result.err then
      results[i] = result
    else
      results[i] = redis.error_reply(tostring(result))
    end
  end
  if at ~= #args + 1 then
    error('rs_apply_many: ' .. (#args + 1 - at) .. ' arguments left over')
  end
  return results
end

-- How long a filled key's version outlives a filled key with a TTL.
local FILL_VERSION_GRACE_MS = 86400000
-- About how many refused fills a refusal stream keeps.
local FILL_REFUSALS_KEPT = '100000'

local function rs_fill(keys, args)
  local key, vkey = keys[1], keys[2]
  local read_micros, value = args[1], args[2]
  local ttl_ms = tonumber(args[3] or '0')
  if not read_micros or not string.match(read_micros, '^%d+$') or #read_micros > 19 then
    error('rs_fill: read_micros must be the read timestamp in microseconds, got ' .. tostring(read_micros))
  end
  if not value then
    error('rs_fill: missing value')
  end
  if not ttl_ms or ttl_ms < 0 then
    error('rs_fill: ttl_ms must be a non-negative number of milliseconds')
  end
  local version = string.rep('0', 19 - #read_micros) .. read_micros .. '::0000000000'
  local stored = redis.call('GET', vkey)
  if stored and compare(version, stored) <= 0 then
    if keys[3] then
      redis.call('XADD', keys[3], 'MAXLEN', '~', FILL_REFUSALS_KEPT, '*',
        'key', key, 'version', version, 'stored', stored)
    end
    return 0
  end
  write_value(key, vkey, value, version, ttl_ms, FILL_VERSION_GRACE_MS)
  return 1
end

local GENESIS = '0000000000000000000000000000000000000000000000000000000000000000'

local function rs_audit_append(keys, args)
  local stream, head_key = keys[1], keys[2]
  local expected, new_head = args[1], args[2]
  local current = redis.call('GET', head_key)
  if not current then
    current = GENESIS
  end
  if expected == '' then
    expected = GENESIS
  end
  if current ~= expected then
    return redis.error_reply('CHAINMOVED ' .. current)
  end
  local i = 3
  while i <= #args do
    local fields = tonumber(args[i])
    if not fields or fields < 1 then
      return redis.error_reply('rs_audit_append: bad field count at argument ' .. i)
    end
    local xadd = {'XADD', stream, '*'}
    for j = 1, fields * 2 do
      xadd[#xadd + 1] = args[i + j]
    end
    redis.call(unpack(xadd))
    i = i + 1 + fields * 2
  end
  redis.call('SET', head_key, new_head)
  return 1
end

redis.register_function('rs_apply', rs_apply)
redis.register_function('rs_apply_many', rs_apply_many)
redis.register_function('rs_audit_append', rs_audit_append)
redis.register_function('rs_fill', rs_fill)
