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
from typing import Protocol

import attrs

from crawler._politeness import Politeness
from crawler._request import Request

__all__ = ["Frontier", "FrontierStatistics", "MemoryFrontier"]


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

    A request is *claimed* (leased) by :meth:`claim` and must be given back by :meth:`complete`, whatever happened
    to it; a retry is re-queued with :meth:`requeue`, which bypasses the dedup.
    """

    async def add(self, requests: Iterable[Request]) -> int:
        """Queue new requests, dropping those whose fingerprint was seen (unless ``dont_filter``).
        Returns how many were queued."""
        ...

    async def claim(self, now: float) -> Request | None:
        """Take the best request whose host may be fetched at ``now`` and has free capacity, or None."""
        ...

    async def complete(self, request: Request, now: float) -> None:
        """Give back a claimed request: its host's in-flight count drops by one."""
        ...

    async def requeue(self, request: Request) -> None:
        """Queue a request again without the dedup check (a retry; ``not_before`` says when)."""
        ...

    async def next_wakeup(self, now: float) -> float | None:
        """The earliest time a queued request may become claimable, or None when none is waiting for a time
        (nothing queued, or every host with work is at its in-flight limit until a request completes)."""
        ...

    def statistics(self) -> FrontierStatistics:
        """Counts for progress displays and the end-of-crawl summary."""
        ...

    async def close(self) -> None:
        """Release resources (persistent frontiers save their state)."""
        ...


@attrs.define(eq=False)
class _HostQueue:
    host: str
    heap: list[tuple[int, int, Request]] = attrs.field(factory=list)
    in_flight: int = 0
    next_at: float = 0.0
    token: int = -1  # the sequence number of this host's live entry in the ready heap; -1 when absent


class MemoryFrontier:
    """The default frontier, held in memory.  See the module docstring for the structure.

    ``politeness`` supplies each host's limit, interval and pause; ``rng`` draws the delay jitter.
    """

    def __init__(self, politeness: Politeness | None = None, *, rng: random.Random | None = None) -> None:
        self.politeness = politeness or Politeness()
        self._rng = rng or random.Random()
        self._hosts: dict[str, _HostQueue] = {}
        self._ready: list[tuple[float, int, str]] = []
        self._delayed: list[tuple[float, int, Request]] = []
        self._seen: set[str] = set()
        self._seq = itertools.count()
        self._queued = 0
        self._in_flight = 0

    # -- adding ---------------------------------------------------------------------------------------------
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

    async def requeue(self, request: Request) -> None:
        self._enqueue(request)

    def seen(self, request: Request) -> bool:
        """True when a request with this fingerprint was queued before."""
        return request.fingerprint in self._seen

    def _enqueue(self, request: Request) -> None:
        self._queued += 1
        if request.not_before is not None:
            heapq.heappush(self._delayed, (request.not_before, next(self._seq), request))
            return
        self._push_host(request)

    def _push_host(self, request: Request) -> None:
        host = request.host
        queue = self._hosts.get(host)
        if queue is None:
            queue = self._hosts[host] = _HostQueue(host)
        heapq.heappush(queue.heap, (-request.priority, next(self._seq), request))
        self._schedule(queue)

    def _schedule(self, queue: _HostQueue) -> None:
        """Put the host in the ready heap if it has work and capacity and is not there already."""
        if queue.token >= 0 or not queue.heap:
            return
        policy = self.politeness.get(queue.host)
        if queue.in_flight >= policy.limit:
            return
        queue.token = next(self._seq)
        heapq.heappush(self._ready, (max(queue.next_at, policy.pause_until), queue.token, queue.host))

    # -- claiming -------------------------------------------------------------------------------------------
    def _promote(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, _, request = heapq.heappop(delayed)
            self._push_host(request)

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
            if not queue.heap or queue.in_flight >= policy.limit:
                continue  # re-scheduled by add() or complete()
            start = max(queue.next_at, policy.pause_until)
            if start > now:  # the policy changed since the entry was made
                self._schedule(queue)
                continue
            _, _, request = heapq.heappop(queue.heap)
            queue.in_flight += 1
            self._in_flight += 1
            self._queued -= 1
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

    def statistics(self) -> FrontierStatistics:
        return FrontierStatistics(
            queued=self._queued,
            delayed=len(self._delayed),
            in_flight=self._in_flight,
            seen=len(self._seen),
            hosts=sum(1 for q in self._hosts.values() if q.heap),
        )

    async def close(self) -> None:
        return None
