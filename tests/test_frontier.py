"""The in-memory frontier, driven with fake times (``now``): dedup, per-host limits, priorities, delays, pauses,
delayed requeues, wake-up times and statistics; and a property test of the limits and exactly-once claiming."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler import FrontierStatistics, MemoryFrontier, Politeness, Request

pytestmark = pytest.mark.anyio

T0 = 1_000_000.0  # a fake "now", seconds since the epoch


def req(url: str, **kwargs: object) -> Request:
    return Request(url=url, **kwargs)  # type: ignore[arg-type]


def frontier(per_host: int = 2, delay: float = 0.0) -> MemoryFrontier:
    return MemoryFrontier(Politeness(per_host=per_host, delay=delay, jitter=0.0))


async def claim_all(front: MemoryFrontier, now: float) -> list[Request]:
    """Claim until None (without completing)."""
    claimed = []
    while (request := await front.claim(now)) is not None:
        claimed.append(request)
    return claimed


# -- dedup -----------------------------------------------------------------------------------------------------


async def test_canonical_variants_are_one_request() -> None:
    front = frontier()
    variants = [
        "http://example.com/b?x=1&y=2",
        "HTTP://Example.COM:80/b?y=2&x=1",
        "http://example.com/a/../b?x=1&y=2#section",
        "http://example.com/./b?x=1&y=2",
        "http://example.com/%62?x=1&y=2",
    ]
    assert await front.add([req(variants[0])]) == 1
    assert await front.add([req(url) for url in variants[1:]]) == 0
    assert all(front.seen(req(url)) for url in variants)
    assert front.statistics() == FrontierStatistics(queued=1, delayed=0, in_flight=0, seen=1, hosts=1)


async def test_method_body_and_query_make_distinct_requests() -> None:
    front = frontier()
    added = await front.add(
        [
            req("http://example.com/a"),
            req("http://example.com/a", method="POST"),
            req("http://example.com/a", method="POST", body=b"x=1"),
            req("http://example.com/a", method="POST", body=b"x=2"),
            req("http://example.com/a?page=2"),
            req("https://example.com/a"),
        ]
    )
    assert added == 6


async def test_seen_survives_claim_and_complete() -> None:
    front = frontier()
    await front.add([req("http://example.com/a")])
    request = await front.claim(T0)
    assert request is not None
    await front.complete(request, T0)
    assert await front.add([req("http://example.com/a")]) == 0
    assert await front.claim(T0) is None


async def test_dont_filter_bypasses_the_dedup() -> None:
    front = frontier()
    await front.add([req("http://example.com/a")])
    assert await front.add([req("http://example.com/a", dont_filter=True)]) == 1
    assert await front.add([req("http://example.com/a", dont_filter=True)]) == 1
    assert front.statistics().queued == 3
    assert len(await claim_all(front, T0)) == 2  # per_host=2: the third waits for a completion


# -- per-host limits -------------------------------------------------------------------------------------------


async def test_host_at_its_limit_does_not_block_other_hosts() -> None:
    front = frontier(per_host=2)
    await front.add([req(f"http://a.test/{i}") for i in range(4)])
    await front.add([req(f"http://b.test/{i}") for i in range(3)])

    claimed = await claim_all(front, T0)
    assert Counter(r.host for r in claimed) == {"a.test": 2, "b.test": 2}
    assert await front.claim(T0) is None  # both hosts at their limit though work is queued
    assert front.statistics().queued == 3

    # a new host is claimable at once
    await front.add([req("http://c.test/0")])
    third = await front.claim(T0)
    assert third is not None and third.host == "c.test"


async def test_complete_frees_capacity() -> None:
    front = frontier(per_host=1)
    await front.add([req(f"http://a.test/{i}") for i in range(3)])
    first = await front.claim(T0)
    assert first is not None and first.url == "http://a.test/0"
    assert await front.claim(T0) is None
    await front.complete(first, T0)
    second = await front.claim(T0)
    assert second is not None and second.url == "http://a.test/1"
    assert await front.claim(T0) is None
    assert front.statistics().in_flight == 1


async def test_ports_are_distinct_hosts() -> None:
    front = frontier(per_host=1)
    await front.add([req("http://a.test:8001/x"), req("http://a.test:8002/x"), req("http://a.test:8001/y")])
    claimed = await claim_all(front, T0)
    assert sorted(r.host for r in claimed) == ["a.test:8001", "a.test:8002"]


async def test_per_host_policy_limit() -> None:
    politeness = Politeness(per_host=1, jitter=0.0)
    politeness.get("big.test").limit = 3
    front = MemoryFrontier(politeness)
    await front.add([req(f"http://big.test/{i}") for i in range(5)] + [req(f"http://small.test/{i}") for i in range(5)])
    claimed = await claim_all(front, T0)
    assert Counter(r.host for r in claimed) == {"big.test": 3, "small.test": 1}


# -- order -----------------------------------------------------------------------------------------------------


async def test_priority_then_arrival_within_a_host() -> None:
    front = frontier(per_host=1)
    order = [("low", -1), ("first", 0), ("high", 5), ("second", 0), ("mid", 2), ("higher", 9)]
    await front.add([req(f"http://a.test/{name}", priority=priority) for name, priority in order])
    claimed = []
    while (request := await front.claim(T0)) is not None:
        claimed.append(request.url.rsplit("/", 1)[1])
        await front.complete(request, T0)
    assert claimed == ["higher", "high", "mid", "first", "second", "low"]


async def test_a_later_high_priority_request_overtakes() -> None:
    front = frontier(per_host=1)
    await front.add([req("http://a.test/1"), req("http://a.test/2")])
    first = await front.claim(T0)
    assert first is not None
    await front.add([req("http://a.test/urgent", priority=10)])
    await front.complete(first, T0)
    nxt = await front.claim(T0)
    assert nxt is not None and nxt.url == "http://a.test/urgent"


# -- time: delay, pause, delayed requests ----------------------------------------------------------------------


async def test_delay_between_claims_for_one_host() -> None:
    front = frontier(per_host=4, delay=2.0)
    await front.add([req(f"http://a.test/{i}") for i in range(3)])
    await front.add([req("http://b.test/0")])

    times = []
    now = T0
    while len(times) < 3:
        request = await front.claim(now)
        if request is not None and request.host == "a.test":
            times.append(now)
        elif request is None:
            wake = await front.next_wakeup(now)
            assert wake is not None and wake > now
            now = wake
    assert times == [T0, T0 + 2.0, T0 + 4.0]


async def test_delayed_host_does_not_delay_others() -> None:
    front = frontier(per_host=4, delay=10.0)
    await front.add([req("http://a.test/0"), req("http://a.test/1"), req("http://b.test/0")])
    got = await claim_all(front, T0)
    assert sorted(r.url for r in got) == ["http://a.test/0", "http://b.test/0"]
    assert await front.claim(T0 + 9.999) is None
    assert await front.next_wakeup(T0) == T0 + 10.0
    late = await front.claim(T0 + 10.0)
    assert late is not None and late.url == "http://a.test/1"


async def test_jitter_spreads_the_delay() -> None:
    import random

    politeness = Politeness(per_host=9, delay=2.0, jitter=0.5)
    front = MemoryFrontier(politeness, rng=random.Random(7))
    await front.add([req(f"http://a.test/{i}") for i in range(20)])
    now, gaps, last = T0, [], None
    while (request := await front.claim(now)) is not None or (wake := await front.next_wakeup(now)) is not None:
        if request is None:
            now = wake
            continue
        if last is not None:
            gaps.append(now - last)
        last = now
        await front.complete(request, now)
    assert len(gaps) == 19
    assert all(1.0 <= gap <= 3.0 for gap in gaps)
    assert max(gaps) - min(gaps) > 0.1  # jittered, not constant


async def test_pause_until_holds_the_host() -> None:
    politeness = Politeness(per_host=2, jitter=0.0)
    front = MemoryFrontier(politeness)
    politeness.get("a.test").pause_until = T0 + 30.0
    await front.add([req("http://a.test/0"), req("http://b.test/0")])
    got = await claim_all(front, T0)
    assert [r.host for r in got] == ["b.test"]
    assert await front.next_wakeup(T0) == T0 + 30.0
    assert await front.claim(T0 + 29.0) is None
    late = await front.claim(T0 + 30.0)
    assert late is not None and late.host == "a.test"


async def test_pause_set_after_the_host_was_scheduled() -> None:
    """A policy that pauses a host already waiting in the ready heap (a 429 seen meanwhile) is obeyed."""
    politeness = Politeness(per_host=2, jitter=0.0)
    front = MemoryFrontier(politeness)
    await front.add([req("http://a.test/0")])
    politeness.get("a.test").pause_until = T0 + 60.0
    assert await front.claim(T0) is None
    assert await front.next_wakeup(T0) == T0 + 60.0
    assert await front.claim(T0 + 60.0) is not None


async def test_retry_with_not_before_waits_until_then() -> None:
    front = frontier()
    await front.add([req("http://a.test/x")])
    request = await front.claim(T0)
    assert request is not None
    await front.complete(request, T0)

    await front.finish(request, request.replace(not_before=T0 + 5.0, attempt=1))  # a retry: no dedup
    assert front.statistics() == FrontierStatistics(queued=1, delayed=1, in_flight=0, seen=1, hosts=0)
    assert await front.next_wakeup(T0) == T0 + 5.0
    assert await front.claim(T0 + 4.9) is None
    retry = await front.claim(T0 + 5.0)
    assert retry is not None and retry.attempt == 1 and retry.url == "http://a.test/x"
    assert front.statistics().queued == 0


async def test_added_request_with_not_before_waits() -> None:
    front = frontier()
    assert await front.add([req("http://a.test/later", not_before=T0 + 3.0), req("http://a.test/now")]) == 2
    got = await claim_all(front, T0)
    assert [r.url for r in got] == ["http://a.test/now"]
    assert await front.next_wakeup(T0) == T0 + 3.0
    later = await front.claim(T0 + 3.0)
    assert later is not None and later.url == "http://a.test/later"


async def test_delayed_requests_come_out_in_time_order() -> None:
    front = frontier(per_host=10)
    for i, offset in enumerate([7.0, 1.0, 4.0]):
        await front.add([req(f"http://a.test/{i}", not_before=T0 + offset)])
    assert await front.next_wakeup(T0) == T0 + 1.0
    assert [r.url for r in await claim_all(front, T0 + 5.0)] == ["http://a.test/1", "http://a.test/2"]
    assert await front.next_wakeup(T0 + 5.0) == T0 + 7.0


async def test_next_wakeup() -> None:
    front = frontier(per_host=1, delay=1.5)
    assert await front.next_wakeup(T0) is None  # nothing queued
    await front.add([req("http://a.test/0"), req("http://a.test/1")])
    wake = await front.next_wakeup(T0)
    assert wake is not None and wake <= T0  # claimable now
    first = await front.claim(T0)
    assert first is not None
    await front.complete(first, T0 + 0.2)
    assert await front.next_wakeup(T0 + 0.2) == T0 + 1.5
    assert await front.claim(T0 + 1.5) is not None
    assert await front.next_wakeup(T0 + 1.5) is None  # nothing left


async def test_statistics() -> None:
    front = frontier(per_host=1)
    await front.add([req("http://a.test/0"), req("http://a.test/1"), req("http://b.test/0"), req("http://a.test/0")])
    await front.add([req("http://c.test/retry", not_before=T0 + 10.0, dont_filter=True)])
    assert front.statistics() == FrontierStatistics(queued=4, delayed=1, in_flight=0, seen=3, hosts=2)
    claimed = await claim_all(front, T0)
    assert len(claimed) == 2
    assert front.statistics() == FrontierStatistics(queued=2, delayed=1, in_flight=2, seen=3, hosts=1)
    for request in claimed:
        await front.complete(request, T0)
    assert front.statistics().in_flight == 0
    await front.close()


# -- properties ------------------------------------------------------------------------------------------------

HOSTS = ("a.test", "b.test", "c.test")

operation = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(HOSTS), st.integers(0, 7), st.integers(-2, 2)),
    st.tuples(st.just("claim"), st.floats(0.0, 3.0)),
    st.tuples(st.just("complete"), st.integers(0, 50)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limits=st.fixed_dictionaries({h: st.integers(1, 3) for h in HOSTS}),
    delays=st.fixed_dictionaries({h: st.sampled_from([0.0, 0.0, 0.5, 2.0]) for h in HOSTS}),
    operations=st.lists(operation, max_size=80),
)
async def test_limits_held_and_every_request_claimed_once(
    limits: dict[str, int], delays: dict[str, float], operations: list[tuple[object, ...]]
) -> None:
    politeness = Politeness(jitter=0.0)
    for host in HOSTS:
        policy = politeness.get(host)
        policy.limit = limits[host]
        policy.delay = delays[host]
    front = MemoryFrontier(politeness)
    now = T0
    unique: set[str] = set()
    claimed: Counter[str] = Counter()
    in_flight: list[Request] = []
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
        elif in_flight:
            request = in_flight.pop(op[1] % len(in_flight))  # type: ignore[operator]
            await front.complete(request, now)
        assert front.statistics().in_flight == len(in_flight)

    # drain: complete everything, then claim until the frontier is empty
    while True:
        while in_flight:
            await front.complete(in_flight.pop(), now)
        if await claim() is not None:
            continue
        wake = await front.next_wakeup(now)
        if wake is None:
            break
        assert wake > now
        now = wake

    assert set(claimed) == unique
    assert all(n == 1 for n in claimed.values())
    assert front.statistics() == FrontierStatistics(queued=0, delayed=0, in_flight=0, seen=len(unique), hosts=0)
