package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua below runs inside Redis, atomically: no other command runs
// between its first and last step, so two nodes appending to one topic can
// never both take the same seq, and a reader never sees half an append.
//
// A topic T has three keys, all with the hash tag {T} so that they share a
// Redis Cluster slot:
//
//	<prefix>{T}:m  hash: e epoch (decimal uint64, kept as text), h head seq,
//	               f first retained seq (h+1 when none), b retained bytes,
//	               t time of the newest message (µs), x entries of the id
//	               index, d retained data bytes as "<bytes>,<f>,<h>" (the f
//	               and h it was counted at), k token and r receipts of the
//	               last append call (so that a retried call is not appended
//	               twice)
//	<prefix>{T}:l  list: the retained messages, oldest first; message seq
//	               f+i is element i: "<time µs>,<len(id)>,<id><data>"
//	<prefix>{T}:i  hash: id -> seq of each retained message that has an id
//	<prefix>{T}:d  string: the epoch of the topic's deleted log, so that the
//	               next log's differs (expires like a log, MaxAge + 1 s)
//
// Wake-ups go to the channel <prefix>{T}:w (PUBLISH, or SPUBLISH in
// Cluster, whose shard channels stay within the topic's shard).
//
// The topic index is a sorted set of topic names, all scored 0 so that
// ZRANGEBYLEX pages it in byte order: <prefix>topics on a single Redis; in
// Cluster one per hash slot, <prefix>{<tag>}:topics, where <tag> is the
// slot's own short hash tag (slotTag), so that the append script, which
// adds its topics to it, stays within one slot. So that a listing need
// not read 16384 indexes, Cluster keeps a slot map too:
//
//	<prefix>{topics}:slots  bitmap: bit s (SETBIT's numbering) is set once
//	                        slot s has had a topic index; never cleared
//
// An append never creates a slot's index before its call has set the
// slot's bit (the script answers "mark" instead, having written nothing),
// so the map covers every index.
//
// The store's own records, beside the topics (a topic's keys end in one
// letter, these in a word, so none can take another's name):
//
//	<prefix>{revocations}:subjects  hash: subject -> "<before µs>,<expires µs>"
//	<prefix>{revocations}:announce  channel: "<before µs>,<expires µs>,<subject>"
//	                                of each Revoke
//	<prefix>{nodes}:expiry          sorted set: node -> expiry of its last
//	                                heartbeat (µs, Redis's clock)
//	<prefix>{nodes}:info            hash: node -> "<seen µs>,<info JSON>"
//
// The three keys of a log expire together, MaxAge after the topic's last append.
// A log whose parts disagree (the hash gone but not the list, a count that
// does not match) is deleted on sight, so whatever Redis lost, a topic's
// head is never forgotten or rewound without a new epoch. The id index
// alone lost (or a log written before x was kept) is not a lost log: an
// append that finds its size differ from x rebuilds it from the retained
// messages before it looks an id up, so a retried publish is still found.
// A data byte count that is missing or stale (d) is recounted the same way.
const luaLib = `
local function fmt(x) return string.format('%d', x) end

local function parse(el)
  local c1 = string.find(el, ',', 1, true)
  local c2 = string.find(el, ',', c1 + 1, true)
  local n = tonumber(string.sub(el, c1 + 1, c2 - 1))
  return tonumber(string.sub(el, 1, c1 - 1)), string.sub(el, c2 + 1, c2 + n), #el - c2
end

local function clock(arg)
  local t = tonumber(arg)
  if t == 0 then
    local r = redis.call('TIME')
    t = tonumber(r[1]) * 1000000 + tonumber(r[2])
  end
  return t
end

-- dcount reads the field d, "<data bytes>,<f>,<h>": the count is
-- trusted only while the log's f and h are those it was taken at, so a
-- writer that does not keep it (an older version) leaves it stale, never
-- wrong. nil: recount.
local function dcount(v, st)
  if not v then return nil end
  local c1 = string.find(v, ',', 1, true)
  local c2 = c1 and string.find(v, ',', c1 + 1, true)
  if not c2 or tonumber(string.sub(v, c1 + 1, c2 - 1)) ~= st.f or tonumber(string.sub(v, c2 + 1)) ~= st.h then
    return nil
  end
  return tonumber(string.sub(v, 1, c1 - 1))
end

local function dfield(st) return fmt(st.d) .. ',' .. fmt(st.f) .. ',' .. fmt(st.h) end

local function recount(st, kl)
  local d = 0
  local els = redis.call('LRANGE', kl, 0, -1)
  for i = 1, #els do
    local _, id, size = parse(els[i])
    d = d + size - #id
  end
  st.d = d
end

local function load(km, kl, ki)
  local m = redis.call('HMGET', km, 'e', 'h', 'f', 'b', 't', 'k', 'x', 'd')
  local n = redis.call('LLEN', kl)
  local st = nil
  if m[1] then
    st = {e = m[1], h = tonumber(m[2]), f = tonumber(m[3]), b = tonumber(m[4]), t = tonumber(m[5]), k = m[6], n = n,
      x = tonumber(m[7])}
    if not (st.h and st.f and st.b and st.t) or st.h - st.f + 1 ~= n then
      st = nil
    else
      st.d = dcount(m[8], st)
    end
  end
  if st == nil and (m[1] or n > 0) then
    redis.call('DEL', km, kl, ki)
  end
  return st
end

local function drop1(st, kl, ki, extra)
  local _, id, size = parse(redis.call('LPOP', kl))
  if id ~= '' and redis.call('HGET', ki, id) == fmt(st.f) then
    redis.call('HDEL', ki, id)
    if st.x then st.x = st.x - 1 end
  end
  st.f = st.f + 1
  st.n = st.n - 1
  st.b = st.b - size - extra
  if st.d then st.d = st.d - (size - #id) end
end

-- reindex rebuilds the id index from the retained messages when its size
-- is not the one recorded (x): the key was lost (evicted, deleted), or the
-- log predates x. It returns whether it did.
local function reindex(st, km, kl, ki)
  if st.x and redis.call('HLEN', ki) == st.x then return false end
  redis.call('DEL', ki)
  local els = redis.call('LRANGE', kl, 0, -1)
  for i = 1, #els do
    local _, id = parse(els[i])
    if id ~= '' then redis.call('HSET', ki, id, fmt(st.f + i - 1)) end
  end
  st.x = redis.call('HLEN', ki)
  local ttl = redis.call('PTTL', km)
  if st.x > 0 and ttl > 0 then redis.call('PEXPIRE', ki, ttl) end
  return true
end

local function expire(st, kl, ki, extra, cutoff)
  local dropped = false
  while st.n > 0 do
    local t = parse(redis.call('LINDEX', kl, 0))
    if t >= cutoff then break end
    drop1(st, kl, ki, extra)
    dropped = true
  end
  return dropped
end

-- other is an epoch other than e (decimal uint64 text, not 0), in range:
-- its last digit changed.
local function other(e)
  if e == '1' then return '2' end
  local last = string.byte(e, #e)
  local c = last == 48 and '1' or string.char(last - 1)
  return string.sub(e, 1, #e - 1) .. c
end
`

// appendScript appends to one or more topics (all in one slot in Cluster).
//
// KEYS: the topic index of the slot, then per topic m, l, i, d. ARGV:
// token, now µs (0: Redis TIME), max messages, max bytes, max age µs, key
// TTL ms, message overhead, PUBLISH or SPUBLISH, topic count, "1" if the
// slot is marked in the Cluster's slot map (always on a single Redis);
// then per topic: name, epoch for a new log, channel, publication count,
// then id and data of each publication.
// Returns per topic its epoch, its receipts (seqs joined by ",", a
// duplicate's negated) and "1" if its id index was rebuilt, else "0"; or,
// having written nothing, "mark" alone: the slot has no topic index yet,
// and the caller must mark the slot before it creates one.
var appendScript = goredis.NewScript("#!lua\n" + luaLib + `
local token = ARGV[1]
local now = clock(ARGV[2])
local maxn, maxb, maxage = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl, over, pub = ARGV[6], tonumber(ARGV[7]), ARGV[8]
if ARGV[10] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return {'mark'} end
local a, k, out = 11, 2, {}
for _ = 1, tonumber(ARGV[9]) do
  local topic, epoch, chan, np = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  local km, kl, ki, kd = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  k = k + 4
  local extra = #topic + over
  local st = load(km, kl, ki)
  -- Every append indexes its topic, so a log written before the index
  -- existed, or an index lost, is indexed again.
  redis.call('ZADD', KEYS[1], 0, topic)
  if st and st.k == token then
    -- A retry of a call that was applied but whose reply was lost.
    out[#out + 1] = st.e
    out[#out + 1] = redis.call('HGET', km, 'r')
    out[#out + 1] = '0'
    a = a + 2 * np
  else
    local rebuilt = false
    if st then
      rebuilt = reindex(st, km, kl, ki)
      if not st.d then recount(st, kl) end
      expire(st, kl, ki, extra, now - maxage)
    else
      redis.call('DEL', kl, ki)
      -- A deleted log's epoch is never the next one's.
      local dead = redis.call('GET', kd)
      if dead then
        if dead == epoch then epoch = other(epoch) end
        redis.call('DEL', kd)
      end
      st = {e = epoch, h = 0, f = 1, b = 0, t = 0, n = 0, x = 0, d = 0}
    end
    local t = now
    if st.t > t then t = st.t end
    local stamp = fmt(t)
    local seen, res, added = {}, {}, 0
    for _ = 1, np do
      local id, data = ARGV[a], ARGV[a + 1]
      a = a + 2
      local dup = false
      if id ~= '' then dup = seen[id] or redis.call('HGET', ki, id) end
      if dup then
        res[#res + 1] = '-' .. dup
      else
        st.h = st.h + 1
        local seq = fmt(st.h)
        redis.call('RPUSH', kl, stamp .. ',' .. #id .. ',' .. id .. data)
        if id ~= '' then
          seen[id] = seq
          st.x = st.x + redis.call('HSET', ki, id, seq)
        end
        st.n = st.n + 1
        st.b = st.b + #id + #data + extra
        st.d = st.d + #data
        added = added + 1
        res[#res + 1] = seq
      end
    end
    while st.n > 1 and (st.n > maxn or st.b > maxb) do
      drop1(st, kl, ki, extra)
    end
    if added > 0 then st.t = t end
    local r = table.concat(res, ',')
    redis.call('HSET', km, 'e', st.e, 'h', fmt(st.h), 'f', fmt(st.f), 'b', fmt(st.b), 't', fmt(st.t), 'x', fmt(st.x),
      'd', dfield(st), 'k', token, 'r', r)
    if added > 0 then
      redis.call('PEXPIRE', km, ttl)
      redis.call('PEXPIRE', kl, ttl)
      redis.call('PEXPIRE', ki, ttl)
      redis.call(pub, chan, '')
    end
    out[#out + 1] = st.e
    out[#out + 1] = r
    out[#out + 1] = rebuilt and '1' or '0'
  end
end
return out
`)

// readScript reads one topic. It may write: it drops the messages that
// MaxAge expired (which frees memory, hence allow-oom) and deletes a
// damaged log.
//
// KEYS: m, l, i. ARGV: now µs (0: Redis TIME), max age µs, message
// overhead, topic, from epoch, from seq, limit. Returns nothing when the
// topic has no log, else epoch, head, first retained seq, gap ("", "reset"
// or "expired"), missed, the seq read after, then up to limit elements.
var readScript = goredis.NewScript("#!lua flags=allow-oom\n" + luaLib + `
local now = clock(ARGV[1])
local maxage, over = tonumber(ARGV[2]), tonumber(ARGV[3])
local topic, fe, fs, limit = ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local km, kl, ki = KEYS[1], KEYS[2], KEYS[3]
local st = load(km, kl, ki)
if not st then return {} end
if expire(st, kl, ki, #topic + over, now - maxage) then
  redis.call('HSET', km, 'f', fmt(st.f), 'b', fmt(st.b))
  if st.x then redis.call('HSET', km, 'x', fmt(st.x)) end
  if st.d then redis.call('HSET', km, 'd', dfield(st)) end
end
local oldest = st.f
local after, gap, missed = fs, '', 0
if fe == '0' and fs == 0 then
  after = 0
elseif fe ~= st.e or fs > st.h then
  gap = 'reset'
  after = oldest - 1
end
if after + 1 < oldest then
  gap = 'expired'
  missed = oldest - 1 - after
  after = oldest - 1
end
local out = {st.e, fmt(st.h), fmt(st.f), gap, fmt(missed), fmt(after)}
if limit > 0 and after < st.h then
  local els = redis.call('LRANGE', kl, after + 1 - st.f, after + limit - st.f)
  for i = 1, #els do out[#out + 1] = els[i] end
end
return out
`)

// checkScript writes nothing, but is a write script: Redis refuses it as
// it would refuse an append (out of memory, a replica, a slot not served),
// so a batch spanning Cluster slots can check every slot before it
// appends to any. KEYS: the m key of a topic of the slot.
var checkScript = goredis.NewScript("#!lua\nreturn 1\n")

// infoScript describes one topic for a listing, and prunes the topic
// index: a topic whose log is gone is removed from it. Like readScript it
// drops the messages that MaxAge expired.
//
// KEYS: m, l, i, the topic index of the slot. ARGV: now µs (0: Redis
// TIME), max age µs, message overhead, topic. Returns nothing when the
// topic has no log, else epoch, head, first retained seq, retained count,
// retained data bytes, time of the newest message (µs).
var infoScript = goredis.NewScript("#!lua flags=allow-oom\n" + luaLib + `
local now = clock(ARGV[1])
local maxage, over, topic = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local km, kl, ki = KEYS[1], KEYS[2], KEYS[3]
local st = load(km, kl, ki)
if not st then
  redis.call('ZREM', KEYS[4], topic)
  return {}
end
local changed = expire(st, kl, ki, #topic + over, now - maxage)
if not st.d then
  recount(st, kl)
  changed = true
end
if changed then
  redis.call('HSET', km, 'f', fmt(st.f), 'b', fmt(st.b), 'd', dfield(st))
  if st.x then redis.call('HSET', km, 'x', fmt(st.x)) end
end
return {st.e, fmt(st.h), fmt(st.f), fmt(st.n), fmt(st.d), fmt(st.t)}
`)

// deleteScript deletes a topic's log and ids, leaves its epoch in the
// tombstone so that the next log's differs, removes it from the topic
// index and wakes its watchers on every node. It frees memory: allow-oom.
//
// KEYS: m, l, i, d, the topic index of the slot. ARGV: topic, channel,
// PUBLISH or SPUBLISH, tombstone TTL ms. Returns 1 if the topic had a log,
// else 0.
var deleteScript = goredis.NewScript("#!lua flags=allow-oom\n" + luaLib + `
local st = load(KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[5], ARGV[1])
if not st then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SET', KEYS[4], st.e, 'PX', ARGV[4])
redis.call(ARGV[3], ARGV[2], '')
return 1
`)

// revokeScript stores a revocation over the subject's earlier one, keeping
// the later before and the later expires of the two, and announces the
// result.
//
// KEYS: the revocations hash. ARGV: subject, before µs, expires µs,
// channel, PUBLISH or SPUBLISH. Returns the stored "<before>,<expires>".
var revokeScript = goredis.NewScript(`#!lua
local subject, before, expires = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('HGET', KEYS[1], subject)
if cur then
  local c = string.find(cur, ',', 1, true)
  if c then
    local b, e = string.sub(cur, 1, c - 1), string.sub(cur, c + 1)
    if tonumber(b) and tonumber(b) > tonumber(before) then before = b end
    if tonumber(e) and tonumber(e) > tonumber(expires) then expires = e end
  end
end
local v = before .. ',' .. expires
redis.call('HSET', KEYS[1], subject, v)
redis.call(ARGV[5], ARGV[4], v .. ',' .. subject)
return v
`)

// revocationsScript returns the revocations in force and deletes the
// expired ones (allow-oom: it only frees memory). An entry it cannot read
// is returned, not deleted: the caller fails on it rather than forget a
// revocation.
//
// KEYS: the revocations hash. ARGV: now µs (0: Redis TIME). Returns
// subject, "<before>,<expires>" pairs.
var revocationsScript = goredis.NewScript("#!lua flags=allow-oom\n" + luaLib + `
local now = clock(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  local c = string.find(v, ',', 1, true)
  local e = c and tonumber(string.sub(v, c + 1))
  if e and e <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i]
    out[#out + 1] = v
  end
end
return out
`)

// nodesLib drops the nodes whose heartbeat expired.
const nodesLib = `
local function prune(kz, kh, now)
  local gone = redis.call('ZRANGEBYSCORE', kz, '-inf', fmt(now))
  for i = 1, #gone do redis.call('HDEL', kh, gone[i]) end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', kz, '-inf', fmt(now)) end
end
`

// heartbeatScript records a node's heartbeat, stamped by Redis's clock,
// and drops expired ones. Both keys expire a second after the last
// heartbeat in force, so a deployment gone leaves nothing behind.
//
// KEYS: the expiry sorted set, the info hash. ARGV: now µs (0: Redis
// TIME), node, info, ttl µs.
var heartbeatScript = goredis.NewScript("#!lua\n" + luaLib + nodesLib + `
local now = clock(ARGV[1])
local kz, kh = KEYS[1], KEYS[2]
prune(kz, kh, now)
redis.call('ZADD', kz, fmt(now + tonumber(ARGV[4])), ARGV[2])
redis.call('HSET', kh, ARGV[2], fmt(now) .. ',' .. ARGV[3])
local last = redis.call('ZRANGE', kz, -1, -1, 'WITHSCORES')
local ttl = fmt(math.floor((tonumber(last[2]) - now) / 1000) + 1000)
redis.call('PEXPIRE', kz, ttl)
redis.call('PEXPIRE', kh, ttl)
return 1
`)

// nodesScript returns the nodes whose heartbeat is in force, and drops
// the others (allow-oom: it only frees memory).
//
// KEYS: the expiry sorted set, the info hash. ARGV: now µs (0: Redis
// TIME). Returns node, "<seen µs>,<info>" pairs.
var nodesScript = goredis.NewScript("#!lua flags=allow-oom\n" + luaLib + nodesLib + `
local now = clock(ARGV[1])
local kz, kh = KEYS[1], KEYS[2]
prune(kz, kh, now)
local names = redis.call('ZRANGE', kz, 0, -1)
local out = {}
for i = 1, #names do
  local v = redis.call('HGET', kh, names[i])
  if v then
    out[#out + 1] = names[i]
    out[#out + 1] = v
  end
end
return out
`)

// indexScript reads the topic indexes of many slots of one Cluster master
// (allow-cross-slot-keys: a script may touch any key its node serves). It
// only reads them: the caller merges and orders what it returns, since a
// Lua string comparison follows the server's locale, not byte order.
//
// KEYS: one of the indexes (it routes the call, and makes a node that no
// longer serves it answer MOVED). ARGV: key prefix, max (a ZRANGEBYLEX
// bound), count; then per index: its slot's tag, min. Returns per index
// the number of names read, then the names.
var indexScript = goredis.NewScript(`#!lua flags=no-writes,allow-cross-slot-keys
local prefix, hi, count = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for a = 4, #ARGV, 2 do
  local got = redis.call('ZRANGEBYLEX', prefix .. '{' .. ARGV[a] .. '}:topics', ARGV[a + 1], hi, 'LIMIT', 0, count)
  out[#out + 1] = tostring(#got)
  for i = 1, #got do out[#out + 1] = got[i] end
end
return out
`)
