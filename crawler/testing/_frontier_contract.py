"""The contract every frontier keeps (in memory, SQLite, Redis, a plugin's own), as pytest tests driven with fake
times: dedup, per-host limits, priorities, delays, pauses, delayed requests and retries, wake-up times, the lease
(claim, complete, finish with or without a retry), exhausted() and statistics."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from crawler._frontier import Frontier, FrontierStatistics
from crawler._politeness import Politeness
from crawler._request import Request

if TYPE_CHECKING:
    import pytest

T0 = 1_000_000.0  # a fake "now", seconds since the epoch


class MakeFrontier(Protocol):
    """The ``make`` fixture: opens a new, empty frontier (closed by the fixture at the end of the test).
    ``politeness``, when given, replaces the one made of ``per_host``, ``delay`` and ``jitter``."""

    def __call__(
        self,
        *,
        per_host: int = 2,
        delay: float = 0.0,
        jitter: float = 0.0,
        politeness: Politeness | None = None,
        rng: random.Random | None = None,
    ) -> Awaitable[Frontier]: ...


def req(url: str, **kwargs: Any) -> Request:
    return Request(url=url, **kwargs)


async def claim_all(front: Frontier, now: float) -> list[Request]:
    """Claim until None (without completing)."""
    claimed = []
    while (request := await front.claim(now)) is not None:
        claimed.append(request)
    return claimed


class FrontierContract:
    """Tests that hold for every frontier.  A frontier's test module reuses them by subclassing, and provides the
    fixture ``make`` (see :class:`MakeFrontier`), as a fixture of the module or a method of the subclass::

        from crawler.testing import FrontierContract

        @pytest.fixture
        async def make(...) -> AsyncIterator[MakeFrontier]:
            ...  # open frontiers of your kind, close them after the test

        class TestMyFrontier(FrontierContract):
            pass

    The tests are async: every subclass is marked ``pytest.mark.anyio`` (pytest is imported then, not with this
    module), so the anyio pytest plugin runs them on the backends the fixture ``anyio_backend`` names.  A frontier
    shared by several processes never answers None from ``next_wakeup`` (another worker may add work): such a
    subclass overrides :meth:`idle_wakeup`.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        import pytest

        own = cls.__dict__.get("pytestmark", [])
        cls.pytestmark = [*(own if isinstance(own, list) else [own]), pytest.mark.anyio]

    def idle_wakeup(self, now: float) -> float | None:
        """What ``next_wakeup(now)`` returns when nothing is claimable later but for a completion or a new add:
        None for a frontier of one process; a shared frontier's next poll time."""
        return None

    # -- dedup ---------------------------------------------------------------------------------------------------

    async def test_canonical_variants_are_one_request(self, make: MakeFrontier) -> None:
        front = await make()
        variants = [
            "http://example.com/b?x=1&y=2",
            "HTTP://Example.COM:80/b?y=2&x=1",
            "http://example.com/a/../b?x=1&y=2#section",
            "http://example.com/./b?x=1&y=2",
            "http://example.com/%62?x=1&y=2",
        ]
        assert await front.add([req(variants[0])]) == 1
        assert await front.add([req(url) for url in variants[1:]]) == 0
        assert front.statistics() == FrontierStatistics(queued=1, delayed=0, in_flight=0, seen=1, hosts=1)

    async def test_method_body_and_query_make_distinct_requests(self, make: MakeFrontier) -> None:
        front = await make()
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
        assert front.statistics().seen == 6

    async def test_seen_survives_claim_complete_and_finish(self, make: MakeFrontier) -> None:
        front = await make()
        await front.add([req("http://example.com/a")])
        request = await front.claim(T0)
        assert request is not None
        await front.complete(request, T0)
        assert await front.add([req("http://example.com/a")]) == 0
        assert await front.claim(T0) is None
        await front.finish(request)
        assert await front.add([req("http://example.com/a")]) == 0  # and the end of its lease
        assert await front.claim(T0) is None

    async def test_dont_filter_bypasses_the_dedup(self, make: MakeFrontier) -> None:
        front = await make()
        await front.add([req("http://example.com/a")])
        assert await front.add([req("http://example.com/a", dont_filter=True)]) == 1
        assert await front.add([req("http://example.com/a", dont_filter=True)]) == 1
        assert front.statistics().queued == 3
        assert front.statistics().seen == 1
        assert len(await claim_all(front, T0)) == 2  # per_host=2: the third waits for a completion

    # -- per-host limits -----------------------------------------------------------------------------------------

    async def test_host_at_its_limit_does_not_block_other_hosts(self, make: MakeFrontier) -> None:
        front = await make(per_host=2)
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

    async def test_complete_frees_capacity(self, make: MakeFrontier) -> None:
        front = await make(per_host=1)
        await front.add([req(f"http://a.test/{i}") for i in range(3)])
        first = await front.claim(T0)
        assert first is not None and first.url == "http://a.test/0"
        assert await front.claim(T0) is None
        await front.complete(first, T0)
        second = await front.claim(T0)
        assert second is not None and second.url == "http://a.test/1"
        assert await front.claim(T0) is None
        assert front.statistics().in_flight == 1

    async def test_ports_are_distinct_hosts(self, make: MakeFrontier) -> None:
        front = await make(per_host=1)
        await front.add([req("http://a.test:8001/x"), req("http://a.test:8002/x"), req("http://a.test:8001/y")])
        claimed = await claim_all(front, T0)
        assert sorted(r.host for r in claimed) == ["a.test:8001", "a.test:8002"]

    async def test_per_host_policy_limit(self, make: MakeFrontier) -> None:
        politeness = Politeness(per_host=1, jitter=0.0)
        politeness.get("big.test").limit = 3
        front = await make(politeness=politeness)
        big = [req(f"http://big.test/{i}") for i in range(5)]
        await front.add(big + [req(f"http://small.test/{i}") for i in range(5)])
        claimed = await claim_all(front, T0)
        assert Counter(r.host for r in claimed) == {"big.test": 3, "small.test": 1}

    # -- order ---------------------------------------------------------------------------------------------------

    async def test_priority_then_arrival_within_a_host(self, make: MakeFrontier) -> None:
        front = await make(per_host=1)
        order = [("low", -1), ("first", 0), ("high", 5), ("second", 0), ("mid", 2), ("higher", 9)]
        await front.add([req(f"http://a.test/{name}", priority=priority) for name, priority in order])
        claimed = []
        while (request := await front.claim(T0)) is not None:
            claimed.append(request.url.rsplit("/", 1)[1])
            await front.complete(request, T0)
            await front.finish(request)
        assert claimed == ["higher", "high", "mid", "first", "second", "low"]

    async def test_a_later_high_priority_request_overtakes(self, make: MakeFrontier) -> None:
        front = await make(per_host=1)
        await front.add([req("http://a.test/1"), req("http://a.test/2")])
        first = await front.claim(T0)
        assert first is not None
        await front.add([req("http://a.test/urgent", priority=10)])
        await front.complete(first, T0)
        nxt = await front.claim(T0)
        assert nxt is not None and nxt.url == "http://a.test/urgent"

    # -- time: delay, pause, delayed requests --------------------------------------------------------------------

    async def test_delay_between_claims_for_one_host(self, make: MakeFrontier) -> None:
        front = await make(per_host=4, delay=2.0)
        await front.add([req(f"http://a.test/{i}") for i in range(3)])
        await front.add([req("http://b.test/0")])

        times: list[float] = []
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

    async def test_delayed_host_does_not_delay_others(self, make: MakeFrontier) -> None:
        front = await make(per_host=4, delay=10.0)
        await front.add([req("http://a.test/0"), req("http://a.test/1"), req("http://b.test/0")])
        got = await claim_all(front, T0)
        assert sorted(r.url for r in got) == ["http://a.test/0", "http://b.test/0"]
        assert await front.claim(T0 + 9.999) is None
        assert await front.next_wakeup(T0) == T0 + 10.0
        late = await front.claim(T0 + 10.0)
        assert late is not None and late.url == "http://a.test/1"

    async def test_jitter_spreads_the_delay(self, make: MakeFrontier) -> None:
        front = await make(per_host=9, delay=2.0, jitter=0.5, rng=random.Random(7))
        await front.add([req(f"http://a.test/{i}") for i in range(20)])
        now, gaps, last = T0, [], None
        while not await front.exhausted():
            request = await front.claim(now)
            if request is None:
                wake = await front.next_wakeup(now)
                assert wake is not None and wake > now
                now = wake
                continue
            if last is not None:
                gaps.append(now - last)
            last = now
            await front.complete(request, now)
            await front.finish(request)
        assert len(gaps) == 19
        assert all(1.0 - 1e-9 <= gap <= 3.0 + 1e-9 for gap in gaps)
        assert max(gaps) - min(gaps) > 0.1  # jittered, not constant

    async def test_pause_until_holds_the_host(self, make: MakeFrontier) -> None:
        politeness = Politeness(per_host=2, jitter=0.0)
        politeness.get("a.test").pause_until = T0 + 30.0
        front = await make(politeness=politeness)
        await front.add([req("http://a.test/0"), req("http://b.test/0")])
        got = await claim_all(front, T0)
        assert [r.host for r in got] == ["b.test"]
        assert await front.next_wakeup(T0) == T0 + 30.0
        assert await front.claim(T0 + 29.0) is None
        late = await front.claim(T0 + 30.0)
        assert late is not None and late.host == "a.test"

    async def test_retry_with_not_before_waits_until_then(self, make: MakeFrontier) -> None:
        front = await make()
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

    async def test_added_request_with_not_before_waits(self, make: MakeFrontier) -> None:
        front = await make()
        assert await front.add([req("http://a.test/later", not_before=T0 + 3.0), req("http://a.test/now")]) == 2
        got = await claim_all(front, T0)
        assert [r.url for r in got] == ["http://a.test/now"]
        assert await front.next_wakeup(T0) == T0 + 3.0
        later = await front.claim(T0 + 3.0)
        assert later is not None and later.url == "http://a.test/later"

    async def test_delayed_requests_come_out_in_time_order(self, make: MakeFrontier) -> None:
        front = await make(per_host=10)
        for i, offset in enumerate([7.0, 1.0, 4.0]):
            await front.add([req(f"http://a.test/{i}", not_before=T0 + offset)])
        assert await front.next_wakeup(T0) == T0 + 1.0
        assert [r.url for r in await claim_all(front, T0 + 5.0)] == ["http://a.test/1", "http://a.test/2"]
        assert await front.next_wakeup(T0 + 5.0) == T0 + 7.0

    async def test_next_wakeup(self, make: MakeFrontier) -> None:
        front = await make(per_host=1, delay=1.5)
        assert await front.next_wakeup(T0) == self.idle_wakeup(T0)  # nothing queued
        await front.add([req("http://a.test/0"), req("http://a.test/1")])
        wake = await front.next_wakeup(T0)
        assert wake is not None and wake <= T0  # claimable now
        first = await front.claim(T0)
        assert first is not None
        await front.complete(first, T0 + 0.2)
        assert await front.next_wakeup(T0 + 0.2) == T0 + 1.5
        second = await front.claim(T0 + 1.5)
        assert second is not None
        assert await front.next_wakeup(T0 + 1.5) == self.idle_wakeup(T0 + 1.5)  # nothing queued, leases out
        for request in (first, second):
            await front.complete(request, T0 + 2.0)
            await front.finish(request)
        assert await front.next_wakeup(T0 + 2.0) == self.idle_wakeup(T0 + 2.0)  # nothing left
        assert await front.exhausted()

    async def test_statistics(self, make: MakeFrontier) -> None:
        front = await make(per_host=1)
        urls = ["http://a.test/0", "http://a.test/1", "http://b.test/0", "http://a.test/0"]
        await front.add([req(url) for url in urls])
        await front.add([req("http://c.test/retry", not_before=T0 + 10.0, dont_filter=True)])
        assert front.statistics() == FrontierStatistics(queued=4, delayed=1, in_flight=0, seen=3, hosts=2)
        claimed = await claim_all(front, T0)
        assert len(claimed) == 2
        assert front.statistics() == FrontierStatistics(queued=2, delayed=1, in_flight=2, seen=3, hosts=1)
        for request in claimed:
            await front.complete(request, T0)
        assert front.statistics().in_flight == 0

    # -- the lease: claim, complete, finish ----------------------------------------------------------------------

    async def test_exhausted_only_when_nothing_is_queued_or_leased(self, make: MakeFrontier) -> None:
        front = await make()
        assert await front.exhausted()
        await front.add([req("http://a.test/0")])
        assert not await front.exhausted()
        request = await front.claim(T0)
        assert request is not None
        await front.complete(request, T0)
        assert not await front.exhausted()  # leased until finished
        await front.finish(request, request.replace(not_before=T0 + 1.0, attempt=1))
        assert not await front.exhausted()  # the retry is delayed
        retry = await front.claim(T0 + 1.0)
        assert retry is not None
        await front.finish(retry)
        assert await front.exhausted()

    async def test_lease_claim_complete_finish(self, make: MakeFrontier) -> None:
        front = await make(per_host=1)
        assert await front.exhausted()
        await front.add([req("http://a.test/x")])
        assert not await front.exhausted()

        request = await front.claim(T0)
        assert request is not None and request.url == "http://a.test/x"
        assert front.statistics() == FrontierStatistics(queued=0, delayed=0, in_flight=1, seen=1, hosts=0)
        assert not await front.exhausted()  # nothing queued, but the lease is outstanding

        await front.complete(request, T0)
        assert front.statistics() == FrontierStatistics(queued=0, delayed=0, in_flight=0, seen=1, hosts=0)
        assert not await front.exhausted()  # fetched, but its items may not be written yet
        assert await front.next_wakeup(T0) == self.idle_wakeup(T0)

        await front.finish(request)
        assert await front.exhausted()
        assert front.statistics() == FrontierStatistics(queued=0, delayed=0, in_flight=0, seen=1, hosts=0)
        assert await front.claim(T0) is None

    async def test_complete_frees_the_host_before_the_lease_ends(self, make: MakeFrontier) -> None:
        front = await make(per_host=1)
        await front.add([req("http://a.test/0"), req("http://a.test/1")])
        first = await front.claim(T0)
        assert first is not None
        await front.complete(first, T0)
        second = await front.claim(T0)  # the host slot is free though the first lease is still outstanding
        assert second is not None and second.url == "http://a.test/1"
        await front.complete(second, T0)
        await front.finish(second)
        assert not await front.exhausted()
        await front.finish(first)
        assert await front.exhausted()

    async def test_finish_with_a_retry_skips_the_dedup(self, make: MakeFrontier) -> None:
        front = await make(per_host=1)
        await front.add([req("http://a.test/x", priority=3)])
        request = await front.claim(T0)
        assert request is not None
        await front.complete(request, T0)

        retry = request.replace(attempt=1)  # same fingerprint: add() would drop it
        assert await front.add([retry]) == 0
        await front.finish(request, retry)
        assert front.statistics() == FrontierStatistics(queued=1, delayed=0, in_flight=0, seen=1, hosts=1)
        assert not await front.exhausted()

        again = await front.claim(T0)  # no not_before: claimable at once
        assert again is not None and again.url == "http://a.test/x" and again.attempt == 1 and again.priority == 3
        await front.complete(again, T0)
        await front.finish(again)
        assert await front.exhausted()
        assert front.statistics().seen == 1

    async def test_finish_gives_the_request_back(self, make: MakeFrontier) -> None:
        """The engine's shutdown path: a claimed request is handed back unchanged, and claimed again later."""
        front = await make(per_host=1)
        await front.add([req("http://a.test/0"), req("http://a.test/1")])
        request = await front.claim(T0)
        assert request is not None
        await front.complete(request, T0)
        await front.finish(request, request)
        urls = []
        while (nxt := await front.claim(T0)) is not None:
            urls.append(nxt.url)
            await front.complete(nxt, T0)
            await front.finish(nxt)
        assert sorted(urls) == ["http://a.test/0", "http://a.test/1"]
        assert await front.exhausted()

    async def test_finish_with_a_delayed_retry(self, make: MakeFrontier) -> None:
        front = await make(per_host=1)
        await front.add([req("http://a.test/x")])
        request = await front.claim(T0)
        assert request is not None
        await front.complete(request, T0)
        await front.finish(request, request.replace(attempt=1, not_before=T0 + 5.0))

        assert front.statistics() == FrontierStatistics(queued=1, delayed=1, in_flight=0, seen=1, hosts=0)
        assert not await front.exhausted()  # a delayed retry is queued work
        assert await front.next_wakeup(T0) == T0 + 5.0
        assert await front.claim(T0 + 4.999) is None
        retry = await front.claim(T0 + 5.0)
        assert retry is not None and retry.attempt == 1
        assert front.statistics() == FrontierStatistics(queued=0, delayed=0, in_flight=1, seen=1, hosts=0)
        await front.complete(retry, T0 + 5.0)
        await front.finish(retry)
        assert await front.exhausted()

    async def test_next_wakeup_with_delayed_retries(self, make: MakeFrontier) -> None:
        front = await make(per_host=1)
        await front.add([req("http://a.test/0"), req("http://b.test/0"), req("http://c.test/0")])
        claimed = await claim_all(front, T0)
        assert len(claimed) == 3
        waits = {"a.test": 8.0, "b.test": 2.0, "c.test": 5.0}
        for request in claimed:
            await front.complete(request, T0)
            await front.finish(request, request.replace(attempt=1, not_before=T0 + waits[request.host]))
        assert front.statistics().delayed == 3

        now, order = T0, []
        while not await front.exhausted():
            wake = await front.next_wakeup(now)
            assert wake is not None and wake > now  # nothing claimable before the earliest retry is due
            now = wake
            got = await claim_all(front, now)
            order += [(r.host, now - T0) for r in got]
            for request in got:
                await front.complete(request, now)
                await front.finish(request)
        assert order == [("b.test", 2.0), ("c.test", 5.0), ("a.test", 8.0)]
        assert await front.next_wakeup(now) == self.idle_wakeup(now)

    async def test_delayed_retry_of_a_busy_host_waits_for_a_completion(self, make: MakeFrontier) -> None:
        front = await make(per_host=1)
        await front.add([req("http://a.test/0"), req("http://a.test/1")])
        first = await front.claim(T0)
        assert first is not None
        await front.complete(first, T0)
        second = await front.claim(T0)
        assert second is not None
        await front.finish(first, first.replace(attempt=1, not_before=T0 + 1.0))
        assert await front.next_wakeup(T0) == T0 + 1.0
        assert await front.claim(T0 + 1.0) is None  # due, but the host is at its limit
        assert await front.next_wakeup(T0 + 1.0) == self.idle_wakeup(T0 + 1.0)  # only a completion can help now
        await front.complete(second, T0 + 1.5)
        wake = await front.next_wakeup(T0 + 1.5)
        assert wake is not None and wake <= T0 + 1.5
        retry = await front.claim(T0 + 1.5)
        assert retry is not None and retry.url == "http://a.test/0" and retry.attempt == 1
