"""The frontier: where requests wait until their host may be fetched.

Mercator-style (Heydon & Najork, 1999): one queue per host, ordered by priority then arrival; a heap of hosts
ordered by the time each may next be fetched ("back-queue selector"); a seen-set of request fingerprints that
drops duplicates; and a heap of delayed requests (retries, backoff) that move to their host's queue when their
``not_before`` time comes.  A host whose in-flight count has reached its policy's limit leaves the ready heap until
one of its requests completes, so a slow or paused host never blocks the others.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any, Protocol

import attrs

from crawler._exceptions import FrontierError
from crawler._politeness import Politeness
from crawler._request import Request

__all__ = ["Frontier", "FrontierStatistics", "HostQueue", "HostScheduler", "MemoryFrontier", "open_frontier"]


@attrs.frozen(kw_only=True)
class FrontierStatistics:
    """A snapshot: ``queued`` requests waiting (ready or delayed), ``delayed`` of those waiting for their
    ``not_before``, ``in_flight`` claimed but not completed, ``seen`` fingerprints, ``hosts`` with queued work."""

    queued: int
    delayed: int
    in_flight: int
    seen: int
    hosts: int


class Frontier(Protocol):
    """The seam every frontier implements (in memory, SQLite, Redis).  Times are seconds since the epoch.

    A request's life: :meth:`add` queues it (once per fingerprint); :meth:`claim` leases it to this process;
    :meth:`complete` says its fetch is over, so its host's in-flight slot is free (politeness); :meth:`finish`
    ends the lease once everything the request produced is safe (new requests added, items written), optionally
    putting a ``retry`` in its place.  A persistent frontier keeps a leased request until it is finished, so a
    process that dies mid-request loses nothing: the request is fetched again (at-least-once).

    :meth:`complete` and :meth:`finish` take the very object :meth:`claim` returned.
    """

    async def open(self) -> None:
        """Connect or load saved state; called once before anything else.  Raises :class:`FrontierError`."""
        ...

    async def add(self, requests: Iterable[Request]) -> int:
        """Queue new requests, dropping those whose fingerprint was seen (unless ``dont_filter``).
        Returns how many were queued.  Raises :class:`FrontierError` for a request that cannot be stored."""
        ...

    async def claim(self, now: float) -> Request | None:
        """Lease the best request whose host may be fetched at ``now`` and has free capacity, or return None."""
        ...

    async def complete(self, request: Request, now: float) -> None:
        """The fetch of a claimed request is over: its host's in-flight count drops by one.  The lease stays."""
        ...

    async def finish(self, request: Request, retry: Request | None = None) -> None:
        """End the lease of a claimed request; queue ``retry`` (a new attempt, or the request given back) in its
        place without the dedup check, in the same step."""
        ...

    async def next_wakeup(self, now: float) -> float | None:
        """The earliest time a queued request may become claimable, or None when none is waiting for a time
        (nothing queued, or every host with work is at its in-flight limit until a request completes).  A frontier
        shared between processes must return a time (say, a short poll interval), never None: work added or
        finished by another process wakes nobody here."""
        ...

    async def exhausted(self) -> bool:
        """True when nothing is queued and no lease is outstanding, in any process sharing this frontier."""
        ...

    async def maintain(self) -> None:
        """Background upkeep for the whole crawl (renewing leases, say); the engine runs it in its task group and
        cancels it at the end.  Returns at once when there is nothing to do."""
        ...

    def statistics(self) -> FrontierStatistics:
        """Counts for progress displays and the end-of-crawl summary (this process's view)."""
        ...

    async def close(self) -> None:
        """Release resources; a persistent frontier saves its state (leased requests stay queued)."""
        ...


@attrs.define(eq=False)
class HostQueue:
    """One host's queue in a :class:`HostScheduler`: ``heap`` holds the requests in memory as ``(-priority,
    sequence, request)``; ``stored`` counts those a subclass keeps elsewhere (on disk)."""

    host: str
    heap: list[tuple[int, int, Request]] = attrs.field(factory=list)
    stored: int = 0
    in_flight: int = 0
    next_at: float = 0.0
    token: int = -1  # the sequence number of this host's live entry in the ready heap; -1 when absent


class HostScheduler:
    """The politeness core shared by the frontiers of one process: per-host queues, the ready heap of hosts ordered
    by the time each may next start a request, each host's in-flight count against its policy's limit, and the
    heap of delayed requests.  Subclasses say where requests are kept (:meth:`_store`, :meth:`_take`).

    ``politeness`` supplies each host's limit, interval and pause; ``rng`` draws the delay jitter.
    """

    def __init__(self, politeness: Politeness | None = None, *, rng: random.Random | None = None) -> None:
        self.politeness = politeness or Politeness()
        self._rng = rng or random.Random()
        self._hosts: dict[str, HostQueue] = {}
        self._ready: list[tuple[float, int, str]] = []
        self._delayed: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._queued = 0
        self._in_flight = 0
        self._leased = 0

    # -- storage hooks ----------------------------------------------------------------------------------------
    def _store(self, queue: HostQueue, request: Request) -> None:
        """Keep a request ready for its host's queue."""
        heapq.heappush(queue.heap, (-request.priority, next(self._seq), request))

    def _take(self, queue: HostQueue) -> Request | None:
        """Remove and return the host's best request, or None when the stored ones turned out unreadable (the
        subclass then takes them out of ``_queued`` itself)."""
        return heapq.heappop(queue.heap)[2]

    def _undelay(self, payload: Any) -> None:
        """A delayed request's time has come: queue it for its host."""
        self._push_host(payload)

    # -- scheduling -------------------------------------------------------------------------------------------
    def _queue(self, host: str) -> HostQueue:
        queue = self._hosts.get(host)
        if queue is None:
            queue = self._hosts[host] = HostQueue(host)
        return queue

    def _push_host(self, request: Request) -> None:
        queue = self._queue(request.host)
        self._store(queue, request)
        self._schedule(queue)

    def _delay(self, not_before: float, payload: Any) -> None:
        heapq.heappush(self._delayed, (not_before, next(self._seq), payload))

    def _schedule(self, queue: HostQueue) -> None:
        """Put the host in the ready heap if it has work and capacity and is not there already."""
        if queue.token >= 0 or not (queue.heap or queue.stored):
            return
        policy = self.politeness.get(queue.host)
        if queue.in_flight >= policy.limit:
            return
        queue.token = next(self._seq)
        heapq.heappush(self._ready, (max(queue.next_at, policy.pause_until), queue.token, queue.host))

    def _promote(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, _, payload = heapq.heappop(delayed)
            self._undelay(payload)

    async def claim(self, now: float) -> Request | None:
        self._promote(now)
        ready = self._ready
        while ready and ready[0][0] <= now:
            _, token, host = heapq.heappop(ready)
            queue = self._hosts[host]
            if token != queue.token:
                continue  # stale entry
            queue.token = -1
            policy = self.politeness.get(host)
            if not (queue.heap or queue.stored) or queue.in_flight >= policy.limit:
                continue  # re-scheduled by add() or complete()
            start = max(queue.next_at, policy.pause_until)
            if start > now:  # the policy changed since the entry was made
                self._schedule(queue)
                continue
            request = self._take(queue)
            if request is None:  # a subclass found none it could read (and uncounted them)
                self._schedule(queue)
                continue
            self._queued -= 1
            queue.in_flight += 1
            self._in_flight += 1
            self._leased += 1
            policy.on_claim(now)
            queue.next_at = now + policy.next_interval(self._rng)
            self._schedule(queue)
            return request
        return None

    async def complete(self, request: Request, now: float) -> None:
        queue = self._hosts[request.host]
        queue.in_flight -= 1
        self._in_flight -= 1
        if queue.token < 0:
            self._schedule(queue)

    async def next_wakeup(self, now: float) -> float | None:
        times = []
        if self._ready:
            times.append(self._ready[0][0])
        if self._delayed:
            times.append(self._delayed[0][0])
        return min(times) if times else None

    async def exhausted(self) -> bool:
        return self._queued == 0 and self._leased == 0

    async def maintain(self) -> None:
        return None

    def _seen_count(self) -> int:
        return 0

    def statistics(self) -> FrontierStatistics:
        return FrontierStatistics(
            queued=self._queued,
            delayed=len(self._delayed),
            in_flight=self._in_flight,
            seen=self._seen_count(),
            hosts=sum(1 for q in self._hosts.values() if q.heap or q.stored),
        )


class MemoryFrontier(HostScheduler):
    """The default frontier, held in memory (see the module docstring); nothing survives the process."""

    def __init__(self, politeness: Politeness | None = None, *, rng: random.Random | None = None) -> None:
        super().__init__(politeness, rng=rng)
        self._seen: set[str] = set()

    async def open(self) -> None:
        return None

    async def add(self, requests: Iterable[Request]) -> int:
        added = 0
        for request in requests:
            if not request.dont_filter:
                key = request.fingerprint
                if key in self._seen:
                    continue
                self._seen.add(key)
            self._enqueue(request)
            added += 1
        return added

    async def finish(self, request: Request, retry: Request | None = None) -> None:
        self._leased -= 1
        if retry is not None:
            self._enqueue(retry)

    def seen(self, request: Request) -> bool:
        """True when a request with this fingerprint was queued before."""
        return request.fingerprint in self._seen

    def _seen_count(self) -> int:
        return len(self._seen)

    def _enqueue(self, request: Request) -> None:
        self._queued += 1
        if request.not_before is not None:
            self._delay(request.not_before, request)
        else:
            self._push_host(request)

    async def close(self) -> None:
        return None


def open_frontier(
    uri: str | None,
    *,
    politeness: Politeness,
    crawl_id: str,
    settings: Any = None,
    rng: random.Random | None = None,
) -> Frontier:
    """Make the frontier for ``uri`` (not yet opened).

    None or ``memory`` gives a :class:`MemoryFrontier`; ``sqlite:///PATH.db`` (or a plain ``PATH.db``) a
    :class:`crawler.SqliteFrontier`; any other ``scheme://`` is looked up in the ``crawler.frontiers``
    entry-point group (``redis://`` with the Redis plugin), whose factory is called as ``factory(uri,
    politeness=..., crawl_id=..., settings=...)``.  Raises :class:`crawler.FrontierError` for a URI nothing
    handles, naming it and the schemes known.
    """
    if uri is None or uri in ("memory", "memory://"):
        return MemoryFrontier(politeness, rng=rng)
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "sqlite" or (not scheme and uri.endswith((".db", ".sqlite", ".sqlite3"))):
        from crawler._sqlite_frontier import SqliteFrontier

        return SqliteFrontier(uri, politeness, rng=rng)
    for ep in entry_points(group="crawler.frontiers"):
        if ep.name == scheme:
            factory = ep.load()
            frontier: Frontier = factory(uri, politeness=politeness, crawl_id=crawl_id, settings=settings)
            return frontier
    known = ", ".join(
        ["memory", "sqlite:///PATH.db", *(f"{ep.name}://" for ep in entry_points(group="crawler.frontiers"))]
    )
    raise FrontierError(f"no frontier handles {uri!r}; known: {known}")
