"""A property of the shared frontier: whatever 2-3 workers of one crawl add, claim and complete, in any order,
no host ever has more requests in flight than its limit, no two starts to a host come closer than its delay,
nothing claimable is held back, and every request is claimed exactly once when no lease expires."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler import CrawlSettings, Politeness, Request, Settings
from crawler_redis import RedisFrontier

pytestmark = pytest.mark.anyio

T0 = 1_000_000.0
HOSTS = ("a.test", "b.test", "c.test")

operation = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 2), st.sampled_from(HOSTS), st.integers(0, 7), st.integers(-2, 2)),
    st.tuples(st.just("claim"), st.integers(0, 2), st.floats(0.0, 3.0)),
    st.tuples(st.just("complete"), st.integers(0, 50)),
    st.tuples(st.just("finish"), st.integers(0, 50)),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    workers=st.integers(2, 3),
    limits=st.fixed_dictionaries({h: st.integers(1, 3) for h in HOSTS}),
    delays=st.fixed_dictionaries({h: st.sampled_from([0.0, 0.0, 0.5, 2.0]) for h in HOSTS}),
    operations=st.lists(operation, max_size=60),
)
async def test_limits_held_across_workers_and_every_request_claimed_once(
    redis_url: str, workers: int, limits: dict[str, int], delays: dict[str, float], operations: list[tuple[Any, ...]]
) -> None:
    crawl_id = f"prop-{uuid.uuid4().hex[:12]}"
    fronts = []
    for _ in range(workers):
        politeness = Politeness(jitter=0.0)
        for host in HOSTS:
            policy = politeness.get(host)
            policy.limit = limits[host]
            policy.delay = delays[host]
        front = RedisFrontier(
            redis_url, politeness, crawl_id=crawl_id, settings=Settings(crawl=CrawlSettings(lease=1e6)), poll=1e6
        )
        await front.open()
        fronts.append(front)
    try:
        await _run(fronts, limits, delays, operations)
    finally:
        for front in fronts:
            await front.clear()
            await front.close()


async def _run(
    fronts: list[RedisFrontier], limits: dict[str, int], delays: dict[str, float], operations: list[tuple[Any, ...]]
) -> None:
    now = T0
    unique: set[str] = set()
    claimed: Counter[str] = Counter()
    in_flight: list[tuple[RedisFrontier, Request]] = []  # claimed, not completed
    fetched: list[tuple[RedisFrontier, Request]] = []  # completed, lease not finished
    last_claim: dict[str, float] = {}

    async def claim(front: RedisFrontier) -> Request | None:
        request = await front.claim(now)
        if request is not None:
            host = request.host
            claimed[request.url] += 1
            in_flight.append((front, request))
            assert sum(1 for _, r in in_flight if r.host == host) <= limits[host]
            if host in last_claim:
                assert now - last_claim[host] >= delays[host] - 1e-9
            last_claim[host] = now
        else:
            # nothing claimable now: every host with queued work is at its limit or waiting for its delay
            for host in HOSTS:
                busy = sum(1 for _, r in in_flight if r.host == host)
                waiting = host in last_claim and now < last_claim[host] + delays[host]
                queued = any(url.startswith(f"http://{host}/") and not claimed[url] for url in unique)
                assert not queued or busy >= limits[host] or waiting
        return request

    for op in operations:
        if op[0] == "add":
            _, worker, host, path, priority = op
            url = f"http://{host}/{path}"
            added = await fronts[worker % len(fronts)].add([Request(url=url, priority=priority)])
            assert added == (url not in unique)
            unique.add(url)
        elif op[0] == "claim":
            now += op[2]
            await claim(fronts[op[1] % len(fronts)])
        elif op[0] == "complete" and in_flight:
            front, request = in_flight.pop(op[1] % len(in_flight))
            await front.complete(request, now)
            fetched.append((front, request))
        elif op[0] == "finish" and fetched:
            front, request = fetched.pop(op[1] % len(fetched))
            await front.finish(request)
        assert sum(f.statistics().in_flight for f in fronts) == len(in_flight)
        if in_flight or fetched:
            assert not await fronts[-1].exhausted()  # a lease is outstanding somewhere

    # drain: complete everything, then claim (round-robin over the workers) until the crawl is exhausted
    turn = 0
    while True:
        while in_flight:
            front, request = in_flight.pop()
            await front.complete(request, now)
            fetched.append((front, request))
        while fetched:
            front, request = fetched.pop()
            await front.finish(request)
        turn += 1
        if await claim(fronts[turn % len(fronts)]) is not None:
            continue
        if await fronts[0].exhausted():
            break
        wake = await fronts[0].next_wakeup(now)
        assert wake is not None and wake > now
        now = wake

    assert set(claimed) == unique
    assert all(n == 1 for n in claimed.values())
    stats = fronts[0].statistics()
    assert (stats.queued, stats.delayed, stats.seen, stats.hosts) == (0, 0, len(unique), 0)
