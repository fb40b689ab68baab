"""The frontier contract (:class:`crawler.testing.FrontierContract`), run against every frontier of this package (in
memory and SQLite) with fake times (``now``); what only they promise (a pause set on a host already scheduled, the
in-memory ``seen``); and a property test of the limits and exactly-once claiming."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crawler._sqlite_frontier
from crawler import Frontier, FrontierStatistics, MemoryFrontier, Politeness, Request, SqliteFrontier
from crawler.testing import FrontierContract

pytestmark = pytest.mark.anyio

T0 = 1_000_000.0  # a fake "now", seconds since the epoch


def req(url: str, **kwargs: object) -> Request:
    return Request(url=url, **kwargs)  # type: ignore[arg-type]


class FrontierFactory:
    """Makes opened frontiers of one kind (``memory`` or ``sqlite``); a SQLite one in a new file each time.
    Every frontier it made is closed at the end of the test."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self._directory = directory
        self._made: list[Frontier] = []

    async def __call__(
        self,
        *,
        per_host: int = 2,
        delay: float = 0.0,
        jitter: float = 0.0,
        politeness: Politeness | None = None,
        rng: random.Random | None = None,
    ) -> Frontier:
        politeness = politeness or Politeness(per_host=per_host, delay=delay, jitter=jitter)
        front: Frontier
        if self.kind == "memory":
            front = MemoryFrontier(politeness, rng=rng)
        else:
            path = self._directory / f"frontier-{len(self._made)}.db"
            front = SqliteFrontier(f"sqlite:///{path}", politeness, rng=rng)
        await front.open()
        self._made.append(front)
        return front

    async def close_all(self) -> None:
        for front in self._made:
            await front.close()  # closing twice is harmless


@pytest.fixture(params=["memory", "sqlite"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FrontierFactory]:
    factory = FrontierFactory(request.param, tmp_path)
    try:
        yield factory
    finally:
        await factory.close_all()


class TestMemoryAndSqlite(FrontierContract):
    """The contract every frontier keeps, on both (``make`` is parametrized)."""


async def test_memory_frontier_has_seen_every_canonical_variant() -> None:
    front = MemoryFrontier(Politeness())
    await front.open()
    variants = [
        "http://example.com/b?x=1&y=2",
        "HTTP://Example.COM:80/b?y=2&x=1",
        "http://example.com/a/../b?x=1&y=2#section",
        "http://example.com/./b?x=1&y=2",
        "http://example.com/%62?x=1&y=2",
    ]
    assert not front.seen(req(variants[0]))
    await front.add([req(variants[0])])
    assert all(front.seen(req(url)) for url in variants)
    await front.close()


async def test_pause_set_after_the_host_was_scheduled(make: FrontierFactory) -> None:
    """A policy that pauses a host already waiting in the ready heap (a 429 seen meanwhile) is obeyed."""
    politeness = Politeness(per_host=2, jitter=0.0)
    front = await make(politeness=politeness)
    await front.add([req("http://a.test/0")])
    politeness.get("a.test").pause_until = T0 + 60.0
    assert await front.claim(T0) is None
    assert await front.next_wakeup(T0) == T0 + 60.0
    assert await front.claim(T0 + 60.0) is not None


# -- properties ------------------------------------------------------------------------------------------------

HOSTS = ("a.test", "b.test", "c.test")

operation = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(HOSTS), st.integers(0, 7), st.integers(-2, 2)),
    st.tuples(st.just("claim"), st.floats(0.0, 3.0)),
    st.tuples(st.just("complete"), st.integers(0, 50)),
    st.tuples(st.just("finish"), st.integers(0, 50)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limits=st.fixed_dictionaries({h: st.integers(1, 3) for h in HOSTS}),
    delays=st.fixed_dictionaries({h: st.sampled_from([0.0, 0.0, 0.5, 2.0]) for h in HOSTS}),
    operations=st.lists(operation, max_size=80),
)
async def test_limits_held_and_every_request_claimed_once(
    make: FrontierFactory,
    monkeypatch: pytest.MonkeyPatch,
    limits: dict[str, int],
    delays: dict[str, float],
    operations: list[tuple[object, ...]],
) -> None:
    # a tiny memory buffer, so that the SQLite frontier's queues spill to disk and are refilled from it
    monkeypatch.setattr(crawler._sqlite_frontier, "BUFFER", 2)
    politeness = Politeness(jitter=0.0)
    for host in HOSTS:
        policy = politeness.get(host)
        policy.limit = limits[host]
        policy.delay = delays[host]
    front = await make(politeness=politeness)  # a fresh one (a new file for SQLite) per example
    now = T0
    unique: set[str] = set()
    claimed: Counter[str] = Counter()
    in_flight: list[Request] = []
    completed: list[Request] = []  # their leases are outstanding
    last_claim: dict[str, float] = {}

    async def claim() -> Request | None:
        request = await front.claim(now)
        if request is not None:
            host = request.host
            claimed[request.url] += 1
            in_flight.append(request)
            assert sum(1 for r in in_flight if r.host == host) <= limits[host]
            if host in last_claim:
                assert now - last_claim[host] >= delays[host] - 1e-9
            last_claim[host] = now
        else:
            # nothing claimable now: every host with queued work is at its limit or waiting for its delay
            for host in HOSTS:
                busy = sum(1 for r in in_flight if r.host == host)
                waiting = host in last_claim and now < last_claim[host] + delays[host]
                queued = any(url.startswith(f"http://{host}/") and not claimed[url] for url in unique)
                assert not queued or busy >= limits[host] or waiting
        return request

    for op in operations:
        if op[0] == "add":
            _, host, path, priority = op
            url = f"http://{host}/{path}"
            added = await front.add([req(url, priority=priority)])
            assert added == (url not in unique)
            unique.add(url)
        elif op[0] == "claim":
            now += op[1]  # type: ignore[operator]
            await claim()
        elif op[0] == "complete" and in_flight:
            request = in_flight.pop(op[1] % len(in_flight))  # type: ignore[operator]
            await front.complete(request, now)
            completed.append(request)
        elif op[0] == "finish" and completed:
            await front.finish(completed.pop(op[1] % len(completed)))  # type: ignore[operator]
        assert front.statistics().in_flight == len(in_flight)
        assert front.statistics().queued == sum(1 for url in unique if not claimed[url])

    # drain: complete and finish everything, then claim until the frontier is empty
    while True:
        while in_flight:
            request = in_flight.pop()
            await front.complete(request, now)
            completed.append(request)
        if await claim() is not None:
            continue
        wake = await front.next_wakeup(now)
        if wake is None:
            break
        assert wake > now
        now = wake
    assert not await front.exhausted() or not completed
    for request in completed:
        await front.finish(request)

    assert set(claimed) == unique
    assert all(n == 1 for n in claimed.values())
    assert front.statistics() == FrontierStatistics(queued=0, delayed=0, in_flight=0, seen=len(unique), hosts=0)
    assert await front.exhausted()
    await front.close()
