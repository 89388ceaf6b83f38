package ledger

import "github.com/redis/go-redis/v9"

// luaCommon is prepended to every script: helpers that loop over the jobs a
// transfer belongs to and keep keys alive for the retention.
const luaCommon = `
-- tag_of is a key's hash tag and colon, "{s3fleet}:" or "{s3fleet.N}:": the
-- shard whose keys a script may touch (see tag in ledger.go).
local function tag_of(k) return string.match(k, '^({[^}]*}:)') end
-- A transfer's first job is its record's field "job"; any others are in
-- its set of jobs (KEY:jobs): one set less for each of a million queued
-- objects that belong to one job. A job is in one place, never both.
local function xfer_of(xfer_jobs) return string.sub(xfer_jobs, 1, -6) end
-- job_ids lists them; first is the record's field "job" if read already.
local function job_ids(xfer_jobs, first)
  local ids = {}
  if first == nil then first = redis.call('HGET', xfer_of(xfer_jobs), 'job') end
  if first and first ~= '' then ids[1] = first end
  for _, j in ipairs(redis.call('SMEMBERS', xfer_jobs)) do ids[#ids + 1] = j end
  return ids
end
-- each_job calls fn with the key of each job's counters in the transfer's
-- shard.
local function each_job(xfer_jobs, fn)
  local JOB = tag_of(xfer_jobs) .. 'job:'
  for _, j in ipairs(job_ids(xfer_jobs)) do fn(JOB .. j) end
end
-- add_job adds a job to a transfer's; 1 if it was not among them.
local function add_job(xfer_jobs, job)
  local xfer = xfer_of(xfer_jobs)
  local first = redis.call('HGET', xfer, 'job')
  if first == job then return 0 end
  if (not first or first == '') and redis.call('SISMEMBER', xfer_jobs, job) == 0 then
    redis.call('HSET', xfer, 'job', job)
    return 1
  end
  return redis.call('SADD', xfer_jobs, job)
end
-- remove_job takes a job from a transfer's; 1 if it was among them.
local function remove_job(xfer_jobs, job)
  local xfer = xfer_of(xfer_jobs)
  if redis.call('HGET', xfer, 'job') == job then
    redis.call('HDEL', xfer, 'job')
    return 1
  end
  return redis.call('SREM', xfer_jobs, job)
end
local function bump_jobs(xfer_jobs, field, n)
  if n ~= 0 then each_job(xfer_jobs, function(k) redis.call('HINCRBY', k, field, n) end) end
end
local function touch(ttl, ...)
  for _, k in ipairs({...}) do redis.call('EXPIRE', k, ttl) end
end
-- Records of work still to do never expire; retention counts from the end.
local function keep(...)
  for _, k in ipairs({...}) do redis.call('PERSIST', k) end
end
local function num(v) return tonumber(v) or 0 end
-- The job counter of a finalized transfer's check (check_crc64nvme, …).
local function check_field(xfer)
  local c = redis.call('HGET', xfer, 'check') or ''
  if c == '' then c = 'none' end
  return 'check_' .. c
end
local COUNTER = {success = 'succeeded', failed = 'failed', cancelled = 'cancelled'}
-- The bytes of a transfer's chunks still streaming (ChunkProgress) are in
-- its field moving and its jobs' (the sum), each chunk's in KEY:moving.
local function moving_key(xfer) return xfer .. ':moving' end
-- landed_at counts n bytes landed at now (Unix ms) in each job's
-- throughput (KEY:tp): a ring of TP_SLOTS buckets of TP_WIDTH ms, each
-- "bucket bytes", so that a job keeps its last hour and no more.
local TP_WIDTH, TP_SLOTS = 10000, 360
-- tp_add counts them in one job (its key k).
local function tp_add(k, now, n)
  if not now or n == 0 then return end
  local b = math.floor(tonumber(now) / TP_WIDTH)
  local f = tostring(b % TP_SLOTS)
  local key = k .. ':tp'
  local v = redis.call('HGET', key, f)
  local vb, vn = nil, 0
  if v then vb, vn = string.match(v, '^(%d+) (%d+)$') end
  if tonumber(vb) == b then vn = tonumber(vn) + n else vn = n end
  redis.call('HSET', key, f, string.format('%d %d', b, vn))
end
local function landed_at(xfer_jobs, now, n)
  each_job(xfer_jobs, function(k) tp_add(k, now, n) end)
end
-- unmove takes back what chunk c (nil: every chunk) reported streaming.
local function unmove(xfer, xfer_jobs, c)
  local n
  if c then
    n = num(redis.call('HGET', moving_key(xfer), c))
    if n ~= 0 then redis.call('HDEL', moving_key(xfer), c) end
  else
    n = num(redis.call('HGET', xfer, 'moving'))
    redis.call('DEL', moving_key(xfer))
  end
  if n ~= 0 then
    redis.call('HINCRBY', xfer, 'moving', -n)
    each_job(xfer_jobs, function(k) redis.call('HINCRBY', k, 'moving', -n) end)
  end
end
-- The transfer's landed data is dropped: its part file is no longer the
-- one to write (its token stays as stale_part, for its maker to remove).
local function drop_part(xfer)
  local tok = redis.call('HGET', xfer, 'part_token') or ''
  if tok ~= '' then redis.call('HSET', xfer, 'stale_part', tok) end
  redis.call('HSET', xfer, 'bytes_done', 0, 'part_ready', 0, 'part_token', '', 'part_host', '', 'source_etag', '')
end
`

// createJobScript: KEYS job, jobs index; ARGV id, source, dest, now, ttl.
var createJobScript = redis.NewScript(luaCommon + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'source', ARGV[2], 'dest', ARGV[3], 'created', ARGV[4],
    'listed', 0, 'objects', 0, 'bytes_total', 0, 'bytes_done', 0, 'bytes_skipped', 0,
    'succeeded', 0, 'skipped', 0, 'failed', 0, 'cancelled', 0, 'seq', 0)
else
  redis.call('HSET', KEYS[1], 'listed', 0, 'list_error', '')
  redis.call('HDEL', KEYS[1], 'cancel') -- enqueued again: run it again
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
-- jobs whose records expired leave the index too
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[4]) - 1000 * tonumber(ARGV[5]))
keep(KEYS[1])
return 1
`)

// luaAttach defines attach(KEYS, ARGV), which adds a transfer to a job,
// creating or restarting it first.
// KEYS xfer, xfer chunks, xfer jobs, job, job xfers, job skipped, the
// destination's claim.
// ARGV mode (create|present|attach|skip|restart), expected state (” = absent),
// expected gen (” = any), job id, xfer id, now, ttl, cause, clear chunks
// (1/0), then field/value pairs written on create and restart.
// Returns {status, state, gen}: status is ok or conflict.
const luaAttach = `
local kept_job = {} -- the jobs whose keys this call of the script persisted
-- attach's optional third argument b batches the job's side of many calls
-- in one script (materialize): b.f is the record's {state, gen} read
-- already, b.seq the last of a block of seqs drawn from the job, and b.d
-- the job's counters to add at the end (field -> n) rather than with a
-- command each.
local function job_incr(b, k, field, n)
  if n == 0 then return end -- HINCRBY takes no "-0"
  if b then b.d[field] = (b.d[field] or 0) + n else redis.call('HINCRBY', k, field, n) end
end
local function attach(KEYS, ARGV, b)
  local mode, job_id, xfer_id, now, ttl = ARGV[1], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
  local f = (b and b.f) or redis.call('HMGET', KEYS[1], 'state', 'gen')
  local st, gen = f[1] or '', num(f[2])
  if st ~= ARGV[2] or (ARGV[3] ~= '' and tonumber(ARGV[3]) ~= gen) then
    return {'conflict', st, gen}
  end
  local fields = {}
  for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end

  -- One destination, one owner: a transfer that is to run (created or
  -- restarted) while another one to the same destination is in flight
  -- fails, naming it (two keys that map to one path, two jobs writing one
  -- file); otherwise it takes the destination's claim. Returns the cause, or
  -- '' with the claim taken.
  local function claim()
    local holder = redis.call('GET', KEYS[7])
    local hk = tag_of(KEYS[1]) .. 'xfer:' .. (holder or '')
    local hs = holder and holder ~= xfer_id and redis.call('HGET', hk, 'state')
    if hs == 'queued' or hs == 'running' then
      local f = redis.call('HMGET', hk, 'remote', 'bucket', 'key', 'source_path', 'dest')
      local src = f[4]
      if not src or src == '' then
        local remote = f[1]
        if not remote or remote == '' then remote = 's3' end
        src = remote .. '://' .. (f[2] or '') .. '/' .. (f[3] or '')
      end
      return 'destination ' .. (f[5] or '') .. ' is also that of ' .. src .. ' (transfer ' .. holder ..
        '), still in flight: two objects cannot land at one destination; the later one fails'
    end
    redis.call('SET', KEYS[7], xfer_id, 'EX', ttl)
    return ''
  end

  local cause = ARGV[8]
  if mode == 'create' and cause == '' then cause = claim() end

  local cur -- the record's size, bytes_done, moving and state, once written below
  if mode == 'create' or mode == 'present' then
    local state = 'queued'
    if cause ~= '' then state = 'failed' end
    if mode == 'present' then state = 'success' end
    -- A record made here has no job yet, and its jobs set is gone with the
    -- record it may have had (they expire together): the job is its first.
    local rec = {'id', xfer_id, 'state', state, 'error', cause, 'gen', 1,
      'created', now, 'bytes_done', 0, 'part_ready', 0, 'attempts', 0}
    if mode == 'create' then rec[#rec + 1] = 'job'; rec[#rec + 1] = job_id end
    for _, v in ipairs(fields) do rec[#rec + 1] = v end
    redis.call('HSET', KEYS[1], unpack(rec))
    if state ~= 'queued' then redis.call('HSET', KEYS[1], 'finished', now) end
    if mode == 'create' then
      local size = 0
      for i = 1, #fields - 1, 2 do if fields[i] == 'size' then size = num(fields[i + 1]) end end
      cur = {size, 0, 0, state}
    end
    if mode == 'present' then
      redis.call('HSET', KEYS[1], 'check', 'present', 'bytes_done', num(redis.call('HGET', KEYS[1], 'size')))
      mode = 'skip'
    end
    gen = 1
  elseif mode == 'restart' then
    local counter = COUNTER[st]
    if counter then bump_jobs(KEYS[3], counter, -1) end
    if st == 'success' then bump_jobs(KEYS[3], check_field(KEYS[1]), -1) end
    if ARGV[9] == '1' or st == 'success' then
      bump_jobs(KEYS[3], 'bytes_done', -num(redis.call('HGET', KEYS[1], 'bytes_done')))
      redis.call('DEL', KEYS[2])
      drop_part(KEYS[1])
    end
    gen = gen + 1
    redis.call('HDEL', KEYS[1], 'retry_since')
    redis.call('HSET', KEYS[1], 'state', 'queued', 'error', '', 'gen', gen, 'started', 0,
      'finished', 0, 'computed', '', 'computed_algorithm', '', 'check', '', 'check_reason', '')
    if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
    cause = claim()
    if cause ~= '' then
      -- Restarted, then failed at once: the jobs it is in count it failed
      -- (one that attaches below counts it then).
      redis.call('HSET', KEYS[1], 'state', 'failed', 'error', cause, 'finished', now)
      bump_jobs(KEYS[3], 'failed', 1)
    end
  end

  -- The record's fields below are not written again in this call (add_job
  -- writes only its job): read once, unless just made.
  cur = cur or redis.call('HMGET', KEYS[1], 'size', 'bytes_done', 'moving', 'state')
  local size = num(cur[1])
  local seq
  if b then
    b.seq = b.seq + 1
    seq = b.seq
  else
    seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
  end
  -- A member's score is the seq of its last attach, so a run tells the
  -- transfers it attached from those of earlier runs (see Supersede).
  local added = redis.call('ZADD', KEYS[5], seq, xfer_id)
  job_incr(b, KEYS[4], 'objects', added)
  job_incr(b, KEYS[4], 'bytes_total', added * size)
  if mode == 'skip' then
    if added == 1 then
      redis.call('SADD', KEYS[6], xfer_id)
      job_incr(b, KEYS[4], 'skipped', 1)
      job_incr(b, KEYS[4], 'bytes_done', size)
      job_incr(b, KEYS[4], 'bytes_skipped', size)
    end
  else
    if added == 0 and redis.call('SREM', KEYS[6], xfer_id) == 1 then
      -- counted as skipped by an earlier run of this job; now it runs again
      job_incr(b, KEYS[4], 'skipped', -1)
      job_incr(b, KEYS[4], 'bytes_done', -size)
      job_incr(b, KEYS[4], 'bytes_skipped', -size)
      added = 1
    end
    if mode == 'create' or add_job(KEYS[3], job_id) == 1 then
      job_incr(b, KEYS[4], 'bytes_done', num(cur[2]))
      -- what its chunks have streamed so far is the joining job's too (unmove takes it back)
      job_incr(b, KEYS[4], 'moving', num(cur[3]))
      local counter = COUNTER[cur[4]]
      if counter then job_incr(b, KEYS[4], counter, 1) end
    end
  end
  local final = cur[4]
  if final == 'queued' or final == 'running' then
    -- a record just created has no expiry (nor its chunks and jobs keys,
    -- which expire with an earlier record)
    if ARGV[2] ~= '' then keep(KEYS[1], KEYS[2], KEYS[3]) end
  else
    touch(ttl, KEYS[1], KEYS[2], KEYS[3])
  end
  -- the job is being enqueued: SetListed decides its expiry (once a call
  -- of the script: materialize attaches many objects to one job)
  if not kept_job[KEYS[4]] then
    keep(KEYS[4], KEYS[5], KEYS[6])
    kept_job[KEYS[4]] = true
  end
  return {'ok', final, gen}
end
`

// attachScript runs attach (see luaAttach).
var attachScript = redis.NewScript(luaCommon + luaAttach + `return attach(KEYS, ARGV)`)

// startChunkScript: KEYS xfer, xfer chunks; ARGV gen, now, index. Moves a
// queued transfer to running and counts the attempt. Returns {state,
// part_ready, part_token, part_host, source_etag}; state is 'stale' for
// another generation, 'gone' for a missing record and 'landed' when this
// chunk is recorded already.
var startChunkScript = redis.NewScript(luaCommon + `
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'gone', '0', '', '', ''} end
local function out(state)
  local f = redis.call('HMGET', KEYS[1], 'part_ready', 'part_token', 'part_host', 'source_etag')
  return {state, f[1] or '0', f[2] or '', f[3] or '', f[4] or ''}
end
if num(redis.call('HGET', KEYS[1], 'gen')) ~= tonumber(ARGV[1]) then return {'stale', '0', '', '', ''} end
if st == 'running' and redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then return out('landed') end
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'started', ARGV[2])
  st = 'running'
end
if st == 'running' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
return out(st)
`)

// partReadyScript: KEYS xfer; ARGV gen, token, host. Records the part file
// a worker created, unless one is recorded already. Returns {state, token,
// host} of the recorded one; state is 'stale' for another generation.
var partReadyScript = redis.NewScript(luaCommon + `
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'gone', '', ''} end
if num(redis.call('HGET', KEYS[1], 'gen')) ~= tonumber(ARGV[1]) then return {'stale', '', ''} end
if (st == 'running' or st == 'queued') and (redis.call('HGET', KEYS[1], 'part_token') or '') == '' then
  redis.call('HSET', KEYS[1], 'part_ready', 1, 'part_token', ARGV[2], 'part_host', ARGV[3])
end
local f = redis.call('HMGET', KEYS[1], 'part_token', 'part_host')
return {st, f[1] or '', f[2] or ''}
`)

// chunkDoneScript: KEYS xfer, xfer chunks, xfer jobs, xfer chunk times;
// ARGV gen, index, crc (hex), length, part token, etag, took (ms), now
// (Unix ms). Records a landed chunk once.
// Returns {landed, total}; landed is -1 when the transfer is no longer
// running this gen, -2 when the chunk was written to another part file
// than the recorded one, -3 when its ETag differs from the object's.
var chunkDoneScript = redis.NewScript(luaCommon + `
if redis.call('HGET', KEYS[1], 'state') ~= 'running' or
   num(redis.call('HGET', KEYS[1], 'gen')) ~= tonumber(ARGV[1]) then
  return {-1, 0}
end
if (redis.call('HGET', KEYS[1], 'part_token') or '') ~= ARGV[5] then return {-2, 0} end
if ARGV[6] ~= '' and (redis.call('HGET', KEYS[1], 'etag') or '') == '' then
  -- enqueued without an ETag: every chunk must see the first one's
  local seen = redis.call('HGET', KEYS[1], 'source_etag') or ''
  if seen == '' then
    redis.call('HSET', KEYS[1], 'source_etag', ARGV[6])
  elseif seen ~= ARGV[6] then
    return {-3, 0}
  end
end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 1 then
  unmove(KEYS[1], KEYS[3], ARGV[2])
  local n = tonumber(ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'bytes_done', n)
  bump_jobs(KEYS[3], 'bytes_done', n)
  landed_at(KEYS[3], ARGV[8], n)
  redis.call('HDEL', KEYS[1], 'retry_since') -- progress: the retry budget starts afresh
  if KEYS[4] and ARGV[7] then
    redis.call('ZADD', KEYS[4], tonumber(ARGV[7]), ARGV[2])
    redis.call('EXPIRE', KEYS[4], 86400)
  end
end
return {redis.call('HLEN', KEYS[2]), num(redis.call('HGET', KEYS[1], 'chunks'))}
`)

// luaEnd defines end_xfer(KEYS, ARGV), which moves a queued or running
// transfer to a final state.
// KEYS xfer, xfer chunks, xfer jobs; ARGV gen, state, now, cause, chunk
// records ('0' keep, '1' clear with their bytes, 'drop' delete once
// finalized), ttl, then field/value pairs. Returns the previous state, or
// 'stale' for another generation; nothing changes unless it was queued or
// running.
const luaEnd = `
local function end_xfer(KEYS, ARGV)
  local st = redis.call('HGET', KEYS[1], 'state')
  if not st then return 'gone' end
  if num(redis.call('HGET', KEYS[1], 'gen')) ~= tonumber(ARGV[1]) then return 'stale' end
  if st ~= 'queued' and st ~= 'running' then return st end
  local fields = {}
  for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], 'state', ARGV[2], 'finished', ARGV[3], 'error', ARGV[4])
  if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
  unmove(KEYS[1], KEYS[3], nil)
  -- the chunks' times serve only while it runs (stragglers)
  redis.call('DEL', (string.gsub(KEYS[2], ':chunks$', ':times')))
  if ARGV[5] == 'drop' then
    redis.call('DEL', KEYS[2])
  elseif ARGV[5] == '1' then
    bump_jobs(KEYS[3], 'bytes_done', -num(redis.call('HGET', KEYS[1], 'bytes_done')))
    drop_part(KEYS[1])
    redis.call('DEL', KEYS[2])
  end
  bump_jobs(KEYS[3], COUNTER[ARGV[2]], 1)
  if ARGV[2] == 'success' then bump_jobs(KEYS[3], check_field(KEYS[1]), 1) end
  local ttl = tonumber(ARGV[6])
  touch(ttl, KEYS[1], KEYS[2], KEYS[3])
  each_job(KEYS[3], function(k) touch(ttl, k, k .. ':xfers', k .. ':skipped', k .. ':tp') end)
  return st
end
`

// endScript runs end_xfer (see luaEnd) and returns the previous state and
// the IDs of the transfer's jobs (whose home records a sharded ledger then
// keeps as long as their counters, see touchJobs).
var endScript = redis.NewScript(luaCommon + luaEnd + `
local st = end_xfer(KEYS, ARGV)
return {st, job_ids(KEYS[3])}
`)

// startBatchScript starts the transfers of a batch task: KEYS one xfer key
// per object; ARGV now, the batch's task ID, then one gen per object.
// Queued ones become running and each running one counts an attempt.
// Returns each one's state ('stale' for another generation, 'gone' for a
// missing record, 'elsewhere' for one whose record names another batch:
// two jobs' pending batches of one object, or a batch enqueued again).
var startBatchScript = redis.NewScript(luaCommon + `
local out = {}
for i, k in ipairs(KEYS) do
  local f = redis.call('HMGET', k, 'state', 'batch', 'gen', 'attempts')
  local st, batch = f[1], f[2] or ''
  if not st then
    out[i] = 'gone'
  elseif num(f[3]) ~= tonumber(ARGV[i + 2]) then
    out[i] = 'stale'
  elseif batch ~= '' and batch ~= ARGV[2] then
    out[i] = 'elsewhere'
  else
    if st == 'queued' then
      redis.call('HSET', k, 'state', 'running', 'started', ARGV[1], 'attempts', num(f[4]) + 1)
      st = 'running'
    elseif st == 'running' then
      redis.call('HINCRBY', k, 'attempts', 1)
    end
    out[i] = st
  end
end
return out
`)

// succeedBatchScript records the objects of a batch task finalized: KEYS
// three a object (xfer, xfer chunks, xfer jobs); ARGV now, ttl, then four
// an object (gen, bytes, computed checksum, check, reason, its algorithm). Each running object of that
// generation counts its bytes and its success once. Returns {1 or 0 each,
// the IDs of the jobs whose counters moved}.
var succeedBatchScript = redis.NewScript(luaCommon + `
local now, ttl = ARGV[1], tonumber(ARGV[2])
local out, ids = {}, {}
-- The jobs' counters move once a batch, not once an object: a batch's
-- objects mostly share one job. delta: job key -> field -> n.
local delta = {}
local function add(jobs, field, n)
  for _, k in ipairs(jobs) do
    local d = delta[k] or {}
    delta[k] = d
    d[field] = (d[field] or 0) + n
  end
end
for i = 1, #KEYS / 3 do
  local x, c, js = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local a = 2 + 6 * (i - 1)
  local f = redis.call('HMGET', x, 'state', 'gen', 'bytes_done', 'job')
  local st = f[1]
  out[i] = 0
  if (st == 'running' or st == 'queued') and num(f[2]) == tonumber(ARGV[a + 1]) then
    local n = tonumber(ARGV[a + 2]) - num(f[3])
    redis.call('HSET', x, 'state', 'success', 'finished', now, 'error', '', 'computed', ARGV[a + 3], 'check', ARGV[a + 4],
      'check_reason', ARGV[a + 5], 'computed_algorithm', ARGV[a + 6], 'bytes_done', ARGV[a + 2])
    redis.call('DEL', c)
    local jobs, JOB = {}, tag_of(js) .. 'job:'
    for _, j in ipairs(job_ids(js, f[4])) do
      ids[j] = true
      jobs[#jobs + 1] = JOB .. j
    end
    add(jobs, 'bytes_done', n)
    add(jobs, 'succeeded', 1)
    add(jobs, 'tp', tonumber(ARGV[a + 2])) -- the batch's bytes, into each job's throughput once
    local check = ARGV[a + 4] -- as check_field(x) reads it back
    if check == '' then check = 'none' end
    add(jobs, 'check_' .. check, 1)
    touch(ttl, x, js)
    out[i] = 1
  end
end
for k, d in pairs(delta) do
  for f, n in pairs(d) do
    if f == 'tp' then
      tp_add(k, now, n)
    elseif n ~= 0 then
      redis.call('HINCRBY', k, f, n)
    end
  end
  touch(ttl, k, k .. ':xfers', k .. ':skipped', k .. ':tp')
end
local jobs = {}
for j in pairs(ids) do jobs[#jobs + 1] = j end
return {out, jobs}
`)

// setListedScript marks a job's enqueueing finished: KEYS job, then the
// job's other keys (jobKeys); ARGV list error, ttl. A job with nothing left to do starts
// its retention now; otherwise the end of its last object will.
var setListedScript = redis.NewScript(luaCommon + `
redis.call('HSET', KEYS[1], 'listed', 1, 'list_error', ARGV[1])
local j = redis.call('HMGET', KEYS[1], 'objects', 'succeeded', 'skipped', 'failed', 'cancelled')
if num(j[2]) + num(j[3]) + num(j[4]) + num(j[5]) >= num(j[1]) then
  touch(tonumber(ARGV[2]), unpack(KEYS))
end
return 1
`)

// claimPartScript: KEYS claim, xfer; ARGV who, ttl ms, now ms, gen. Takes
// the claim if free, and when it does, records its time in the transfer
// (part_claimed, with the generation it is of). Returns {held, the time of
// the claim before it of this generation (0: none)}.
var claimPartScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) == false then return {0, 0} end
local prev = 0
if redis.call('HGET', KEYS[2], 'part_claimed_gen') == ARGV[4] then
  prev = tonumber(redis.call('HGET', KEYS[2], 'part_claimed') or '0') or 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'part_claimed', ARGV[3], 'part_claimed_gen', ARGV[4])
end
return {1, prev}
`)

// releaseClaimScript: KEYS claim; ARGV who. Deletes the claim if who holds it.
var releaseClaimScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// detachScript takes a failed or cancelled transfer out of a job, undoing
// what it counted there: KEYS xfer, xfer jobs, job, job xfers; ARGV job
// id, xfer id, the score it must not pass. Returns 1 if it did.
var detachScript = redis.NewScript(luaCommon + `
-- HINCRBY takes no "-0": subtract only what is not nothing.
local function sub(k, f, n) if n ~= 0 then redis.call('HINCRBY', k, f, -n) end end
-- Only what Supersede chose, still so: failed or cancelled, attached to
-- the job last before ARGV[3] (not restarted since), and counted by it.
local st = redis.call('HGET', KEYS[1], 'state') or ''
if st ~= 'failed' and st ~= 'cancelled' then return 0 end
local score = redis.call('ZSCORE', KEYS[4], ARGV[2])
if not score or tonumber(score) > tonumber(ARGV[3]) then return 0 end
if remove_job(KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[4], ARGV[2])
sub(KEYS[3], 'objects', 1)
sub(KEYS[3], 'bytes_total', num(redis.call('HGET', KEYS[1], 'size')))
sub(KEYS[3], 'bytes_done', num(redis.call('HGET', KEYS[1], 'bytes_done')))
sub(KEYS[3], COUNTER[st], 1)
return 1
`)

// failingScript: KEYS xfer; ARGV gen, now (ms). Notes when the transfer's
// tasks began failing without progress (kept until a chunk lands) and
// returns that time; 0 for a record of another generation or not running.
var failingScript = redis.NewScript(luaCommon + `
if num(redis.call('HGET', KEYS[1], 'gen')) ~= tonumber(ARGV[1]) then return 0 end
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'running' and st ~= 'queued' then return 0 end
redis.call('HSETNX', KEYS[1], 'retry_since', ARGV[2])
return tonumber(redis.call('HGET', KEYS[1], 'retry_since'))
`)

// dropPartScript: KEYS xfer, xfer chunks; ARGV gen, token. Forgets the
// part file if it is still the transfer's, in that generation, running,
// and no chunk has landed. Returns 1 if it did.
var dropPartScript = redis.NewScript(luaCommon + `
local f = redis.call('HMGET', KEYS[1], 'gen', 'state', 'part_token')
if num(f[1]) ~= tonumber(ARGV[1]) or (f[2] ~= 'running' and f[2] ~= 'queued') or f[3] ~= ARGV[2] then return 0 end
if redis.call('HLEN', KEYS[2]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'part_ready', 0, 'part_token', '', 'part_host', '')
return 1
`)

// pendScript counts a pending batch's objects in its job, once: KEYS job,
// job pending; ARGV batch id, its entry ("objects bytes queue"), objects,
// bytes. Returns 1 if it was not counted yet.
var pendScript = redis.NewScript(luaCommon + `
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'objects', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'bytes_total', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'pending', ARGV[3])
return 1
`)

// materializeScript creates the records of a pending batch's objects,
// once: KEYS job, job xfers, job skipped, job pending, then four an object
// (xfer, xfer chunks, xfer jobs, the destination's claim); ARGV batch id,
// job id, now, ttl, cancel (1/0), forget (the word, or empty), then per
// object its ID, the number of field and value strings that follow, and
// those. The count Pend made is undone and each object attached as the
// enqueuer would have (created, or joined to the record another job made
// meanwhile), so the job counts each object once; in a cancelled job (ARGV
// cancel, or the job's cancel field) a created record is cancelled at
// once. A batch forgotten (its task is gone) makes no record: its objects
// count as cancelled. Returns 0 when the batch was not pending
// (materialized already, or forgotten), 2 when it cancelled records, else 1.
var materializeScript = redis.NewScript(luaCommon + luaAttach + luaEnd + `
local entry = redis.call('HGET', KEYS[4], ARGV[1])
if not entry then return 0 end
redis.call('HDEL', KEYS[4], ARGV[1])
local n, bytes = string.match(entry, '^(%d+) (%d+)')
n, bytes = tonumber(n) or 0, tonumber(bytes) or 0
if ARGV[6] == 'forget' then
  -- its task is gone: the job counts its objects cancelled, unrecorded
  if n ~= 0 then redis.call('HINCRBY', KEYS[1], 'pending', -n) end
  redis.call('HINCRBY', KEYS[1], 'cancelled', n)
  return 1
end
local job, now, ttl = ARGV[2], ARGV[3], ARGV[4]
local ended = 1
local cancel = ARGV[5] == '1' or (redis.call('HGET', KEYS[1], 'cancel') or '') ~= ''
local count = (#KEYS - 4) / 4
-- The job's counters move once, at the end (the Pend count undone and
-- each object's attach added), and its seqs are drawn as one block.
local b = {d = {pending = -n, objects = -n, bytes_total = -bytes}}
b.seq = redis.call('HINCRBY', KEYS[1], 'seq', count) - count
local a = 7
for i = 1, count do
  local k = 4 + 4 * (i - 1)
  local x, c, js, claim = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local id, nf = ARGV[a], tonumber(ARGV[a + 1])
  b.f = redis.call('HMGET', x, 'state', 'gen')
  local st = b.f[1] or ''
  local args = {'attach', st, '', job, id, now, ttl, '', '1'}
  if st == '' then
    args[1] = 'create'
    for f = a + 2, a + 1 + nf do args[#args + 1] = ARGV[f] end
  end
  a = a + 2 + nf
  local r = attach({x, c, js, KEYS[1], KEYS[2], KEYS[3], claim}, args, b)
  if cancel and st == '' and r[2] == 'queued' then
    end_xfer({x, c, js}, {r[3], 'cancelled', now, 'cancelled by the user', '1', ttl})
    kept_job[KEYS[1]] = nil -- end_xfer may have set its keys' expiry: the next attach keeps them again
    ended = 2
  end
end
for f, v in pairs(b.d) do
  if v ~= 0 then redis.call('HINCRBY', KEYS[1], f, v) end
end
return ended
`)

// markScript: KEYS hash; ARGV field, value, ttl. Sets the field of a hash
// (a job's record in a shard); one it makes expires after ttl (a job with
// nothing in that shard), one that was there keeps its expiry.
var markScript = redis.NewScript(`
local made = redis.call('EXISTS', KEYS[1]) == 0
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if made then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return 1
`)

// leaveScript takes a job out of a queued or running transfer that other
// jobs still wait for, undoing what it counted there: KEYS xfer, xfer
// jobs, job, job xfers; ARGV job id, xfer id. Returns 1 if it did, 0 when
// the transfer is final or this job is its only one (cancel it instead).
var leaveScript = redis.NewScript(luaCommon + `
local function sub(k, f, n) if n ~= 0 then redis.call('HINCRBY', k, f, -n) end end
local st = redis.call('HGET', KEYS[1], 'state') or ''
if st ~= 'queued' and st ~= 'running' then return 0 end
local mine, others = false, 0
for _, j in ipairs(job_ids(KEYS[2])) do
  if j == ARGV[1] then mine = true else others = others + 1 end
end
if not mine or others == 0 then return 0 end
remove_job(KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[2])
sub(KEYS[3], 'objects', 1)
sub(KEYS[3], 'bytes_total', num(redis.call('HGET', KEYS[1], 'size')))
sub(KEYS[3], 'bytes_done', num(redis.call('HGET', KEYS[1], 'bytes_done')))
sub(KEYS[3], 'moving', num(redis.call('HGET', KEYS[1], 'moving')))
return 1
`)

// chunkProgressScript records how many bytes of a running chunk have
// streamed: KEYS xfer, xfer chunks, xfer jobs; ARGV gen, index, bytes.
// The chunk's figure replaces its last one (a run again, or a copy,
// overwrites rather than adds), and the transfer's and its jobs' moving
// counters follow. Returns 1 when the chunk has landed already (a copy
// of it won), else 0.
var chunkProgressScript = redis.NewScript(luaCommon + `
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 1 end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' or
   num(redis.call('HGET', KEYS[1], 'gen')) ~= tonumber(ARGV[1]) then
  return 0
end
local mk = moving_key(KEYS[1])
local d = tonumber(ARGV[3]) - num(redis.call('HGET', mk, ARGV[2]))
if d ~= 0 then
  redis.call('HSET', mk, ARGV[2], ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'moving', d)
  each_job(KEYS[3], function(k) redis.call('HINCRBY', k, 'moving', d) end)
end
return 0
`)
