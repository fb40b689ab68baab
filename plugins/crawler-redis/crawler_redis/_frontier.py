"""The Redis frontier: one crawl's per-host queues, politeness, seen set, delayed requests and leases in Redis,
shared by every worker process (on any machine) started with the same ``--crawl-id``.

It reproduces the scheduling of :class:`crawler.MemoryFrontier` across processes: a host may start a request when
``max(next, pause) <= now`` and fewer than ``limit`` of its requests are in flight *in all the workers together*;
a claim sets ``next = now + interval``.  Each worker keeps the :class:`crawler.Politeness` the engine feeds
(429s, Retry-After, rate-limit headers, AIMD, circuit breaker) and writes the host's ``limit``, a sampled
``interval`` and ``pause_until`` to Redis on every :meth:`~RedisFrontier.complete`; a claim reads the shared
``pause_until`` back, so no worker's policy contradicts another's pause.

A claimed request is *leased* to its worker for ``settings.crawl.lease`` seconds; :meth:`RedisFrontier.maintain`
renews the worker's leases every third of that.  A lease that runs out (its worker died, or lost Redis for
longer than the lease) is reclaimed by the next claim of any worker: the request goes back to its host's queue
and is fetched again (at-least-once), and the host's in-flight slot is freed if the dead worker had not freed it.
The crawl ends for every worker when no request is queued, delayed or leased.

Every step is one Lua script (:mod:`crawler_redis._scripts` lists the keys).  A Redis outage pauses the workers:
each call waits it out (see :class:`crawler_redis._connection.RedisConnection`); only :meth:`RedisFrontier.open`
gives up, with a :class:`crawler.FrontierError`.  Times are the caller's ``now``; worker clocks must agree to well
within the lease (NTP).
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import attrs
import redis
import structlog

from crawler import (
    FrontierError,
    FrontierStatistics,
    InvalidURL,
    Politeness,
    Request,
    Settings,
    request_from_dict,
    request_to_dict,
)
from crawler_redis._connection import RedisConnection
from crawler_redis._scripts import SCRIPTS

__all__ = ["RedisFrontier", "key_prefix"]

#: Seconds a lease lasts without renewal when no settings are given (``crawl.lease``).
DEFAULT_LEASE = 60.0
#: Seconds between looks at Redis while this worker has nothing to claim but the crawl is not over.
DEFAULT_POLL = 0.25
#: Priorities are clamped to +-2**20 so that ``-priority * 2**32 + id`` stays exact in a double.
MAX_PRIORITY = 2**20
#: Requests per ``add`` script, and leases per ``renew`` script, at most (longer batches are split).
BATCH = 500
#: Seconds :meth:`RedisFrontier.close` tries to give leases back before leaving them to expire.
_RELEASE_GIVE_UP = 5.0

log = structlog.get_logger("crawler.frontier")


def key_prefix(crawl_id: str) -> str:
    """The prefix of every key of the crawl ``crawl_id``: ``crawler:{CRAWL_ID}:``, with ``%``, ``{`` and ``}``
    percent-encoded so that the braces stay a Redis Cluster hash tag."""
    safe = crawl_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return f"crawler:{{{safe}}}:"


@attrs.define
class _Lease:
    lid: str
    request: Request
    completed: bool = False
    lost: bool = False


@attrs.frozen
class _Counts:
    stored: int = 0  # queued, delayed and leased requests
    leases: int = 0
    delayed: int = 0
    seen: int = 0
    hosts: int = 0


class RedisFrontier:
    """A frontier in the Redis server at ``uri`` (``redis://[:PASSWORD@]HOST:PORT/DB``, ``rediss://`` for TLS,
    ``unix:///PATH?db=N``) shared by every worker given the same ``crawl_id``.

    ``politeness`` is this worker's registry of host policies (the engine's); ``settings`` gives the lease
    (``settings.crawl.lease`` seconds; 60 without settings); ``rng`` samples the jittered intervals; ``clock``
    (seconds since the epoch) times lease renewals; ``poll`` is how often (seconds) an idle worker looks for
    work another worker may have added; :meth:`open` tries to reach the server for ``connect_timeout`` seconds.

    Raises :class:`crawler.FrontierError` from :meth:`open` when the server cannot be reached (the message names
    the URI, password redacted), and from :meth:`add` for a request that cannot be stored as JSON (nothing of
    that batch is queued).  Redis must persist its data (AOF) for a crawl to survive a restart of Redis.
    """

    def __init__(
        self,
        uri: str,
        politeness: Politeness | None = None,
        *,
        crawl_id: str = "crawl",
        settings: Settings | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        poll: float = DEFAULT_POLL,
        connect_timeout: float = 5.0,
    ) -> None:
        self.uri = uri
        self.politeness = politeness if politeness is not None else Politeness()
        self.crawl_id = crawl_id
        self.prefix = key_prefix(crawl_id)
        self.lease = float(settings.crawl.lease) if settings is not None else DEFAULT_LEASE
        self.poll = poll
        self.connect_timeout = connect_timeout
        self._rng = rng or random.Random()
        self._clock = clock
        self._owner = secrets.token_hex(8)  # names this worker's leases (logged on open)
        self._conn = RedisConnection(uri, what="frontier", log=log)
        self._keys = [self.prefix + "req"]
        self._leases: dict[int, _Lease] = {}  # id(request) -> its lease
        self._in_flight = 0
        self._counts = _Counts()

    @property
    def worker(self) -> str:
        """This worker's id: the owner written in its leases, logged when it joins the crawl."""
        return self._owner

    @property
    def display_uri(self) -> str:
        """The URI with its password redacted."""
        return self._conn.display

    @property
    def connection(self) -> RedisConnection:
        """The connection (its ``min_backoff`` and ``max_backoff`` tune the waits during an outage)."""
        return self._conn

    # -- life cycle ---------------------------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            self._conn.connect(SCRIPTS)
        except ValueError as exc:
            raise FrontierError(f"cannot use Redis frontier {self.display_uri}: {exc}") from None
        try:
            reply = await self._conn.script("peek", self._keys, [self.prefix], give_up_after=self.connect_timeout)
        except redis.RedisError as exc:
            await self._conn.close()
            raise FrontierError(
                f"cannot reach Redis frontier {self.display_uri} (crawl {self.crawl_id!r}): {type(exc).__name__}: {exc}"
            ) from None
        counts = self._keep_counts(reply)
        log.info(
            "frontier joined",
            frontier=self.display_uri,
            crawl_id=self.crawl_id,
            worker=self._owner,
            queued=counts.stored - counts.leases,
            leased=counts.leases,
            seen=counts.seen,
        )

    async def close(self) -> None:
        """Give this worker's remaining leases back at once (their requests are queued again) and disconnect."""
        lids = [lease.lid for lease in self._leases.values() if not lease.lost]
        self._leases.clear()
        self._in_flight = 0
        if not self._conn.connected:
            return
        try:
            if lids:
                await self._script("release", [self._owner, *lids], give_up_after=_RELEASE_GIVE_UP)
        except FrontierError as exc:
            log.warning("leases not given back; they expire", frontier=self.display_uri, error=str(exc))
        finally:
            await self._conn.close()

    async def clear(self) -> int:
        """Delete every key of this crawl (queues, seen set, leases): the crawl id starts afresh.  Returns how
        many keys were deleted.  Only while no worker runs the crawl."""
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self.prefix) + "*"

        def delete(client: Any) -> Any:
            return _delete_matching(client, pattern)

        if self._conn.connected:
            deleted: int = await self._conn.call(delete)
            self._counts = _Counts()
            return deleted
        raise FrontierError(f"frontier {self.display_uri} is not open")

    # -- adding ---------------------------------------------------------------------------------------------------
    async def add(self, requests: Iterable[Request]) -> int:
        args: list[Any] = []
        for request in requests:
            args.extend(self._fields(request))
        added = 0
        step = BATCH * 8
        for start in range(0, len(args), step):
            reply = await self._script("add", args[start : start + step])
            added += int(reply[0])
        return added

    def _fields(self, request: Request) -> list[Any]:
        """The 8 values the scripts store a request from: fingerprint (16 bytes, empty for ``dont_filter``),
        host, priority, not_before, JSON, and the host policy's limit, interval and pause."""
        try:
            body = json.dumps(request_to_dict(request), separators=(",", ":"))  # ASCII: lone surrogates escaped
            host = request.host
            fingerprint = b"" if request.dont_filter else bytes.fromhex(request.fingerprint)
        except (TypeError, ValueError, InvalidURL) as exc:
            raise FrontierError(f"cannot store request {request.url!r} in Redis: {exc}") from None
        policy = self.politeness.get(host)
        priority = max(-MAX_PRIORITY, min(MAX_PRIORITY, int(request.priority)))
        not_before = "" if request.not_before is None else repr(float(request.not_before))
        return [
            fingerprint,
            host,
            str(priority),
            not_before,
            body,
            str(policy.limit),
            repr(policy.next_interval(self._rng)),
            repr(policy.pause_until),
        ]

    # -- claiming ---------------------------------------------------------------------------------------------
    async def claim(self, now: float) -> Request | None:
        while True:
            token = secrets.token_hex(8)  # the same in every attempt of this call (see the claim script)
            reply = await self._script("claim", [repr(now), repr(now + self.lease), self._owner, token])
            reclaimed, lid = int(reply[0]), reply[1]
            if reclaimed:
                self._reclaimed(reclaimed)
            if lid is None:
                return None
            value, shared_pause = str(reply[2]), float(reply[3])
            try:
                request = request_from_dict(json.loads(value.split("\t", 2)[2]))
            except (ValueError, TypeError, KeyError, IndexError, InvalidURL) as exc:
                log.error("unreadable request dropped from the frontier", frontier=self.display_uri, error=str(exc))
                await self._script("finish", [str(lid), self._owner])
                continue
            policy = self.politeness.get(request.host)
            policy.pause_until = max(policy.pause_until, shared_pause)
            policy.on_claim(now)
            self._leases[id(request)] = _Lease(str(lid), request)
            self._in_flight += 1
            return request

    async def complete(self, request: Request, now: float) -> None:
        lease = self._leases.get(id(request))
        if lease is None or lease.completed:
            return  # not ours, or completed already: the slot is freed once
        lease.completed = True
        self._in_flight -= 1
        host = request.host
        policy = self.politeness.get(host)
        reply = await self._script(
            "complete",
            [
                lease.lid,
                self._owner,
                host,
                str(policy.limit),
                repr(policy.next_interval(self._rng)),
                repr(policy.pause_until),
            ],
        )
        policy.pause_until = max(policy.pause_until, float(reply[1]))

    async def finish(self, request: Request, retry: Request | None = None) -> None:
        """End the lease of ``request`` and queue ``retry`` in its place.  Raises :class:`crawler.FrontierError`,
        leaving the lease as it was, when ``retry`` cannot be stored (it is given back on :meth:`close`)."""
        fields = self._fields(retry)[1:] if retry is not None else []
        lease = self._leases.pop(id(request), None)
        if lease is None:
            return
        if not lease.completed:
            self._in_flight -= 1
        reply = await self._script("finish", [lease.lid, self._owner, *fields])
        if not int(reply[0]):
            log.debug("lease was reclaimed before finish; its request is queued again", request=request.url)

    # -- waiting --------------------------------------------------------------------------------------------------
    async def next_wakeup(self, now: float) -> float | None:
        """The earliest time a host may start or a delayed request comes due, and no later than ``now + poll``:
        another worker may add work at any time, or end the crawl between this worker's look at
        :meth:`exhausted` and this call, so an idle worker looks again.  Never None."""
        reply = await self._script("peek", [])
        return min([now + self.poll, *(float(t) for t in reply[:2] if t is not None)])

    async def exhausted(self) -> bool:
        """True when no request is queued, delayed or leased by any worker of the crawl."""
        await self._script("peek", [])
        return self._counts.stored == 0

    async def maintain(self) -> None:
        """Renew this worker's leases every ``lease / 3`` seconds and reclaim the expired leases of any worker;
        runs until cancelled."""
        while True:
            await anyio.sleep(self.lease / 3)
            await self.renew()

    async def renew(self) -> None:
        """Extend this worker's leases to ``clock() + lease`` and reclaim expired ones, in one script per
        :data:`BATCH` leases.  A lease found gone (it expired before) is dropped with a warning: its request was
        queued again and will be fetched twice."""
        held = [lease for lease in self._leases.values() if not lease.lost]
        now = self._clock()
        expiry = repr(now + self.lease)
        for start in range(0, max(len(held), 1), BATCH):
            batch = held[start : start + BATCH]
            reply = await self._script("renew", [repr(now), expiry, self._owner, *(lease.lid for lease in batch)])
            if int(reply[0]):
                self._reclaimed(int(reply[0]))
            lost = {str(lid) for lid in reply[1:]}
            for lease in batch:
                if lease.lid in lost:
                    lease.lost = True
                    log.warning(
                        "lease expired before renewal; the request will be fetched again", url=lease.request.url
                    )

    def statistics(self) -> FrontierStatistics:
        """The crawl's counts as of this worker's last call to Redis; ``in_flight`` is this worker's own."""
        counts = self._counts
        return FrontierStatistics(
            queued=max(counts.stored - counts.leases, 0),
            delayed=counts.delayed,
            in_flight=self._in_flight,
            seen=counts.seen,
            hosts=counts.hosts,
        )

    # -- plumbing -------------------------------------------------------------------------------------------------
    def _reclaimed(self, count: int) -> None:
        log.warning("expired leases reclaimed: their requests are queued again", count=count, frontier=self.display_uri)

    async def _script(self, name: str, args: list[Any], *, give_up_after: float | None = None) -> list[Any]:
        """Run a script with the crawl's key and prefix; keep its counts; return the rest of its reply."""
        try:
            reply = await self._conn.script(name, self._keys, [self.prefix, *args], give_up_after=give_up_after)
        except redis.RedisError as exc:
            raise FrontierError(f"Redis frontier {self.display_uri} failed: {type(exc).__name__}: {exc}") from None
        except RuntimeError as exc:  # not connected
            raise FrontierError(str(exc)) from None
        self._keep_counts(reply)
        return reply[5:]

    def _keep_counts(self, reply: list[Any]) -> _Counts:
        self._counts = _Counts(*(int(n) for n in reply[:5]))
        return self._counts


def _delete_matching(client: Any, pattern: str) -> Any:
    """Delete the keys matching ``pattern``; works with the sync client, returns a coroutine with the asyncio one."""
    if isinstance(client, redis.Redis):
        deleted = 0
        batch: list[str] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(client.unlink(*batch))
        return deleted

    async def run() -> int:
        deleted = 0
        batch: list[str] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(await client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(await client.unlink(*batch))
        return deleted

    return run()
