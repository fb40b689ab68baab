"""The Lua scripts of the Redis frontier: every step that touches more than one key runs as one script, so it is
atomic with respect to every other worker of the crawl.

Keys, all under the crawl's prefix ``P`` (``crawler:{CRAWL_ID}:``; the braces are a Redis Cluster hash tag, so
one crawl's keys share a slot):

==================  ===========  ==========================================================================
key                 type         holds
==================  ===========  ==========================================================================
``P req``           hash         request id -> ``SCORE \\t HOST \\t JSON`` for every request queued, delayed
                                 or leased (deleted when its lease is finished); ``SCORE`` is
                                 ``-priority * 2**32 + id``, so a host queue pops by priority then arrival
``P q:HOST``        sorted set   the host's queued request ids, by ``SCORE``
``P h:HOST``        hash         the host's shared politeness: ``inflight``, ``limit``, ``interval``
                                 (seconds between request starts), ``pause`` (no start before it), ``next``
                                 (the earliest next start)
``P ready``         sorted set   hosts with queued work and ``inflight < limit``, by ``max(next, pause)``
``P hosts``         set          hosts with queued work (for statistics)
``P delayed``       sorted set   request ids waiting for their ``not_before``, by that time
``P seen``          set          the 16-byte fingerprints (BLAKE2b) of every request queued with dedup
``P leases``        sorted set   lease id -> expiry time (seconds since the epoch)
``P lease``         hash         lease id -> ``REQUEST_ID \\t HOST \\t FREED \\t OWNER \\t TOKEN``; ``FREED``
                                 is 1 once ``complete`` gave the host's in-flight slot back; ``OWNER`` is the
                                 worker's id, ``TOKEN`` the claim's
``P claims``        hash         claim token -> lease id, while the lease lasts (a claim sent again after a
                                 lost reply gets its lease back instead of leaking a second one)
``P seq``           string       the last request id (INCR)
``P lseq``          string       the last lease id (INCR)
==================  ===========  ==========================================================================

Every script takes ``KEYS[1] = P req`` (so a cluster client routes it to the crawl's slot) and ``ARGV[1] = P``,
and replies with the crawl's counts first: ``[requests stored, leases, delayed, seen, hosts with work, ...]``.
Times come from the caller (``now``, seconds since the epoch): a script never reads the server's clock.  Numbers
are handed to Redis formatted with ``%.17g``, since Lua's default formatting keeps only 14 digits.
"""

from __future__ import annotations

__all__ = ["ADD", "CLAIM", "COMPLETE", "FINISH", "PEEK", "RELEASE", "RENEW", "SCRIPTS"]

_LIBRARY = r"""
local P = ARGV[1]
local REQ, SEEN, READY, DELAYED = P .. 'req', P .. 'seen', P .. 'ready', P .. 'delayed'
local LEASES, LEASE, HOSTS, SEQ, LSEQ = P .. 'leases', P .. 'lease', P .. 'hosts', P .. 'seq', P .. 'lseq'
local CLAIMS = P .. 'claims'

local function num(x)
  return string.format('%.17g', x)
end

local function counts(extra)
  local out = {
    redis.call('HLEN', REQ), redis.call('ZCARD', LEASES), redis.call('ZCARD', DELAYED),
    redis.call('SCARD', SEEN), redis.call('SCARD', HOSTS),
  }
  for _, value in ipairs(extra) do
    table.insert(out, value)
  end
  return out
end

-- the host is in READY, scored by the time it may start a request, exactly when it has queued work and capacity
local function reschedule(host)
  local h = redis.call('HMGET', P .. 'h:' .. host, 'inflight', 'limit', 'next', 'pause')
  local inflight, limit = tonumber(h[1]) or 0, tonumber(h[2]) or 1
  if inflight < limit and redis.call('ZCARD', P .. 'q:' .. host) > 0 then
    redis.call('ZADD', READY, num(math.max(tonumber(h[3]) or 0, tonumber(h[4]) or 0)), host)
  else
    redis.call('ZREM', READY, host)
  end
end

local function init_host(host, limit, interval, pause)
  local key = P .. 'h:' .. host
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'inflight', 0, 'limit', limit, 'interval', interval, 'pause', pause, 'next', 0)
  end
end

local function queue(id, score, host)
  redis.call('ZADD', P .. 'q:' .. host, score, id)
  redis.call('SADD', HOSTS, host)
  reschedule(host)
end

local function enqueue(host, priority, not_before, body)
  local id = redis.call('INCR', SEQ)
  local score = string.format('%.0f', -tonumber(priority) * 4294967296 + id)
  redis.call('HSET', REQ, id, score .. '\t' .. host .. '\t' .. body)
  if not_before ~= '' then
    redis.call('ZADD', DELAYED, not_before, id)
  else
    queue(id, score, host)
  end
end

local function free_slot(host)
  local key = P .. 'h:' .. host
  if (tonumber(redis.call('HGET', key, 'inflight')) or 0) > 0 then
    redis.call('HINCRBY', key, 'inflight', -1)
  end
end

-- a lease record: request id, host, freed (0 or 1), owner, claim token
local function parse_lease(rec)
  return string.match(rec, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
end

local function lease_record(id, host, freed, owner, token)
  return id .. '\t' .. host .. '\t' .. freed .. '\t' .. owner .. '\t' .. token
end

local function end_lease(lid, token)
  redis.call('HDEL', LEASE, lid)
  redis.call('ZREM', LEASES, lid)
  redis.call('HDEL', CLAIMS, token)
end

-- a lease ends without its request being done: the request goes back to its host's queue
local function release(lid, rec)
  local id, host, freed, _, token = parse_lease(rec)
  if freed == '0' then
    free_slot(host)
  end
  end_lease(lid, token)
  local value = redis.call('HGET', REQ, id)
  if value then
    queue(id, string.match(value, '^([^\t]*)\t'), host)
  else
    reschedule(host)
  end
end

local function reclaim(now, max)
  local lids = redis.call('ZRANGEBYSCORE', LEASES, '-inf', num(now), 'LIMIT', 0, max)
  for _, lid in ipairs(lids) do
    local rec = redis.call('HGET', LEASE, lid)
    if rec then
      release(lid, rec)
    else
      redis.call('ZREM', LEASES, lid)
    end
  end
  return #lids
end

local function promote(now, max)
  local ids = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', num(now), 'LIMIT', 0, max)
  for _, id in ipairs(ids) do
    redis.call('ZREM', DELAYED, id)
    local value = redis.call('HGET', REQ, id)
    if value then
      local score, host = string.match(value, '^([^\t]*)\t([^\t]*)\t')
      queue(id, score, host)
    end
  end
end
"""

#: ARGV: P, then per request 8 values: fingerprint ('' for dont_filter), host, priority, not_before ('' for
#: none), JSON, and the host's limit, interval and pause from the local policy (used if the host is new).
#: Reply: counts + [number queued].
ADD = (
    _LIBRARY
    + r"""
local added = 0
for i = 2, #ARGV - 7, 8 do
  local fp = ARGV[i]
  if fp == '' or redis.call('SADD', SEEN, fp) == 1 then
    local host = ARGV[i + 1]
    init_host(host, ARGV[i + 5], ARGV[i + 6], ARGV[i + 7])
    enqueue(host, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
    added = added + 1
  end
end
return counts({added})
"""
)

#: ARGV: P, now, lease expiry, owner, claim token.  Reclaims expired leases, promotes due delayed requests, then
#: leases the best request of the host that may start soonest.  A token seen before (the same claim sent again
#: after its reply was lost) gets the lease it made, if that lease still holds.
#: Reply: counts + [leases reclaimed, lease id or nil, the request's stored value, the host's shared pause].
CLAIM = (
    _LIBRARY
    + r"""
local now, expiry, owner, token = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local known = redis.call('HGET', CLAIMS, token)
if known then -- this claim ran before and its reply was lost: the same lease again
  local rec = redis.call('HGET', LEASE, known)
  if rec then
    local id, host = parse_lease(rec)
    local pause = redis.call('HGET', P .. 'h:' .. host, 'pause') or '0'
    return counts({0, known, redis.call('HGET', REQ, id), pause})
  end
end
local reclaimed = reclaim(now, 100)
promote(now, 100)
for _ = 1, 100 do
  local top = redis.call('ZRANGEBYSCORE', READY, '-inf', num(now), 'LIMIT', 0, 1)
  if #top == 0 then
    break
  end
  local host = top[1]
  local hkey, qkey = P .. 'h:' .. host, P .. 'q:' .. host
  local h = redis.call('HMGET', hkey, 'inflight', 'limit', 'interval', 'next', 'pause')
  local inflight, limit = tonumber(h[1]) or 0, tonumber(h[2]) or 1
  local pause = tonumber(h[5]) or 0
  if inflight < limit and math.max(tonumber(h[4]) or 0, pause) <= now then
    local popped = redis.call('ZPOPMIN', qkey)
    if #popped == 0 then
      redis.call('SREM', HOSTS, host)
      reschedule(host)
    else
      local id = popped[1]
      if redis.call('ZCARD', qkey) == 0 then
        redis.call('SREM', HOSTS, host)
      end
      local value = redis.call('HGET', REQ, id)
      if value then
        redis.call('HSET', hkey, 'inflight', inflight + 1, 'next', num(now + (tonumber(h[3]) or 0)))
        reschedule(host)
        local lid = redis.call('INCR', LSEQ)
        redis.call('ZADD', LEASES, expiry, lid)
        redis.call('HSET', LEASE, lid, lease_record(id, host, 0, owner, token))
        redis.call('HSET', CLAIMS, token, lid)
        return counts({reclaimed, lid, value, num(pause)})
      end
      reschedule(host)
    end
  else
    reschedule(host)
  end
end
return counts({reclaimed, false})
"""
)

#: ARGV: P, lease id, owner, host, limit, interval, pause (the local policy's values now).  Frees the lease's
#: in-flight slot once (a reclaimed or foreign lease is left alone) and writes the host's policy values.
#: Reply: counts + [1 if the slot was freed now else 0, the host's shared pause].
COMPLETE = (
    _LIBRARY
    + r"""
local lid, owner, host = ARGV[2], ARGV[3], ARGV[4]
local freed_now = 0
local rec = redis.call('HGET', LEASE, lid)
if rec then
  local id, lhost, freed, lowner, token = parse_lease(rec)
  if lowner == owner and freed == '0' then
    free_slot(lhost)
    redis.call('HSET', LEASE, lid, lease_record(id, lhost, 1, lowner, token))
    freed_now = 1
  end
end
local hkey = P .. 'h:' .. host
local pause = tonumber(ARGV[7])
if redis.call('EXISTS', hkey) == 1 then
  pause = math.max(tonumber(redis.call('HGET', hkey, 'pause')) or 0, pause)
  redis.call('HSET', hkey, 'limit', ARGV[5], 'interval', ARGV[6], 'pause', num(pause))
  reschedule(host)
end
return counts({freed_now, num(pause)})
"""
)

#: ARGV: P, lease id, owner, then either nothing or the retry's 7 values: host, priority, not_before, JSON,
#: limit, interval, pause.  Ends the lease (freeing its slot if complete did not) and queues the retry, without
#: dedup; a lease that is gone (reclaimed) or foreign is left alone and the retry dropped, since the reclaimed
#: request is queued already.  Reply: counts + [1 if the lease was ended, else 0].
FINISH = (
    _LIBRARY
    + r"""
local lid, owner = ARGV[2], ARGV[3]
local rec = redis.call('HGET', LEASE, lid)
if not rec then
  return counts({0})
end
local id, host, freed, lowner, token = parse_lease(rec)
if lowner ~= owner then
  return counts({0})
end
if freed == '0' then
  free_slot(host)
end
end_lease(lid, token)
redis.call('HDEL', REQ, id)
if #ARGV >= 10 then
  init_host(ARGV[4], ARGV[8], ARGV[9], ARGV[10])
  enqueue(ARGV[4], ARGV[5], ARGV[6], ARGV[7])
end
reschedule(host)
return counts({1})
"""
)

#: ARGV: P, now, new expiry, owner, lease ids...  Extends this owner's leases and reclaims expired ones.
#: Reply: counts + [leases reclaimed, lease ids no longer held...].
RENEW = (
    _LIBRARY
    + r"""
local now, expiry, owner = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local lost = {}
for i = 5, #ARGV do
  local rec = redis.call('HGET', LEASE, ARGV[i])
  local held = false
  if rec then
    local _, _, _, lowner = parse_lease(rec)
    held = lowner == owner
  end
  if held then
    redis.call('ZADD', LEASES, 'XX', expiry, ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
local out = {reclaim(now, 1000)}
for _, lid in ipairs(lost) do
  table.insert(out, lid)
end
return counts(out)
"""
)

#: ARGV: P, owner, lease ids...  Gives this owner's leases back at once (their requests queued again).
#: Reply: counts + [leases released].
RELEASE = (
    _LIBRARY
    + r"""
local owner, released = ARGV[2], 0
for i = 3, #ARGV do
  local rec = redis.call('HGET', LEASE, ARGV[i])
  if rec then
    local _, _, _, lowner = parse_lease(rec)
    if lowner == owner then
      release(ARGV[i], rec)
      released = released + 1
    end
  end
end
return counts({released})
"""
)

#: ARGV: P.  Reads only.  Reply: counts + [the earliest ready host's time or nil, the earliest delayed time or
#: nil].
PEEK = (
    _LIBRARY
    + r"""
local ready = redis.call('ZRANGE', READY, 0, 0, 'WITHSCORES')
local delayed = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
return counts({ready[2] or false, delayed[2] or false})
"""
)

SCRIPTS: dict[str, str] = {
    "add": ADD,
    "claim": CLAIM,
    "complete": COMPLETE,
    "finish": FINISH,
    "renew": RENEW,
    "release": RELEASE,
    "peek": PEEK,
}
