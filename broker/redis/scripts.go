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
//	               index, k token and r receipts of the last append call (so
//	               that a retried call is not appended twice)
//	<prefix>{T}:l  list: the retained messages, oldest first; message seq
//	               f+i is element i: "<time µs>,<len(id)>,<id><data>"
//	<prefix>{T}:i  hash: id -> seq of each retained message that has an id
//
// Wake-ups go to the channel <prefix>{T}:w (PUBLISH, or SPUBLISH in
// Cluster, whose shard channels stay within the topic's shard).
//
// The three keys expire together, MaxAge after the topic's last append.
// A log whose parts disagree (the hash gone but not the list, a count that
// does not match) is deleted on sight, so whatever Redis lost, a topic's
// head is never forgotten or rewound without a new epoch. The id index
// alone lost (or a log written before x was kept) is not a lost log: an
// append that finds its size differ from x rebuilds it from the retained
// messages before it looks an id up, so a retried publish is still found.
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

local function load(km, kl, ki)
  local m = redis.call('HMGET', km, 'e', 'h', 'f', 'b', 't', 'k', 'x')
  local n = redis.call('LLEN', kl)
  local st = nil
  if m[1] then
    st = {e = m[1], h = tonumber(m[2]), f = tonumber(m[3]), b = tonumber(m[4]), t = tonumber(m[5]), k = m[6], n = n,
      x = tonumber(m[7])}
    if not (st.h and st.f and st.b and st.t) or st.h - st.f + 1 ~= n then
      st = nil
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
`

// appendScript appends to one or more topics (all in one slot in Cluster).
//
// KEYS: per topic m, l, i. ARGV: token, now µs (0: Redis TIME), max
// messages, max bytes, max age µs, key TTL ms, message overhead, PUBLISH or
// SPUBLISH, topic count; then per topic: name, epoch for a new log,
// channel, publication count, then id and data of each publication.
// Returns per topic its epoch, its receipts (seqs joined by ",", a
// duplicate's negated) and "1" if its id index was rebuilt, else "0".
var appendScript = goredis.NewScript("#!lua\n" + luaLib + `
local token = ARGV[1]
local now = clock(ARGV[2])
local maxn, maxb, maxage = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl, over, pub = ARGV[6], tonumber(ARGV[7]), ARGV[8]
local a, k, out = 10, 1, {}
for _ = 1, tonumber(ARGV[9]) do
  local topic, epoch, chan, np = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  local km, kl, ki = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  k = k + 3
  local extra = #topic + over
  local st = load(km, kl, ki)
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
      expire(st, kl, ki, extra, now - maxage)
    else
      redis.call('DEL', kl, ki)
      st = {e = epoch, h = 0, f = 1, b = 0, t = 0, n = 0, x = 0}
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
      'k', token, 'r', r)
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
