"""The Redis frontier, driven with fake times (``now``) against a real server: the contract every frontier keeps
(:class:`crawler.testing.FrontierContract`), what storing requests in Redis means, and what sharing adds: several
workers on one crawl id, limits and pauses shared, leases that expire and are reclaimed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from crawler import (
    CrawlSettings,
    FrontierError,
    Politeness,
    Request,
    Settings,
    open_frontier,
)
from crawler.testing import FrontierContract
from crawler_redis import RedisFrontier, key_prefix

pytestmark = pytest.mark.anyio

T0 = 1_000_000.0  # a fake "now", seconds since the epoch
NO_POLL = 3600.0  # an idle worker's poll interval that never hides the exact wake-up times

Make = Callable[..., Awaitable[RedisFrontier]]


def req(url: str, **kwargs: Any) -> Request:
    return Request(url=url, **kwargs)


@pytest.fixture
async def make(redis_url: str, crawl_id: str) -> AsyncIterator[Make]:
    """Open frontiers on one crawl id (workers of one crawl); all are closed at the end."""
    opened: list[RedisFrontier] = []

    async def factory(
        per_host: int = 2,
        delay: float = 0.0,
        *,
        jitter: float = 0.0,
        politeness: Politeness | None = None,
        lease: float = 60.0,
        poll: float = NO_POLL,
        **kwargs: Any,
    ) -> RedisFrontier:
        politeness = politeness or Politeness(per_host=per_host, delay=delay, jitter=jitter)
        front = RedisFrontier(
            redis_url,
            politeness,
            crawl_id=kwargs.pop("crawl_id", crawl_id),
            settings=Settings(crawl=CrawlSettings(lease=lease)),
            poll=poll,
            **kwargs,
        )
        await front.open()
        opened.append(front)
        return front

    yield factory
    for front in opened:
        await front.close()


async def claim_all(front: RedisFrontier, now: float) -> list[Request]:
    """Claim until None (without completing)."""
    claimed = []
    while (request := await front.claim(now)) is not None:
        claimed.append(request)
    return claimed


class TestRedisContract(FrontierContract):
    """The contract every frontier keeps, on one worker of a crawl."""

    def idle_wakeup(self, now: float) -> float | None:
        return now + NO_POLL  # never None: another worker may add work; ``make`` polls every NO_POLL seconds


# -- storing requests ------------------------------------------------------------------------------------------


async def test_request_round_trips_through_redis(make: Make) -> None:
    front = await make()
    original = req(
        "http://example.com/api?q=1",
        method="POST",
        body=b"\x00\xffbinary",
        headers={"X-Token": "abc"},
        callback="parse_item",
        cb_kwargs={"n": 3},
        meta={"tag": "é", "list": [1, 2]},
        priority=4,
        depth=2,
    )
    await front.add([original])
    claimed = await front.claim(T0)
    assert claimed is not None
    assert (claimed.url, claimed.method, claimed.body) == (original.url, "POST", b"\x00\xffbinary")
    assert (claimed.callback, claimed.cb_kwargs, claimed.meta) == ("parse_item", {"n": 3}, {"tag": "é", "list": [1, 2]})
    assert (claimed.priority, claimed.depth, claimed.fingerprint) == (4, 2, original.fingerprint)


async def test_a_request_that_cannot_be_stored_is_refused(make: Make) -> None:
    front = await make()
    with pytest.raises(FrontierError, match=r"http://example\.com/bad"):
        await front.add([req("http://example.com/good"), req("http://example.com/bad", meta={"x": object()})])
    assert front.statistics().queued == 0  # nothing of the batch
    assert await front.add([req("http://example.com/good")]) == 1


# -- per-host limits -------------------------------------------------------------------------------------------


async def test_a_lowered_limit_is_shared_on_complete(make: Make) -> None:
    """A worker whose policy halves a host's limit (a 429, say) writes it on complete: all workers obey."""
    one, two = await make(per_host=2), await make(per_host=2)
    await one.add([req(f"http://a.test/{i}") for i in range(5)])
    first, second = await claim_all(one, T0)
    one.politeness.get("a.test").limit = 1
    await one.complete(first, T0)
    assert await two.claim(T0) is None  # one still in flight: at the new limit
    await one.complete(second, T0)
    assert await two.claim(T0) is not None
    assert await two.claim(T0) is None


# -- pauses ----------------------------------------------------------------------------------------------------


async def test_a_pause_seen_by_one_worker_holds_every_worker(make: Make) -> None:
    """A 429 with Retry-After seen by one worker pauses the host for all: written on complete, read back on
    claim into the other workers' policies."""
    one, two = await make(), await make()
    await one.add([req(f"http://a.test/{i}") for i in range(3)])
    first = await one.claim(T0)
    assert first is not None
    one.politeness.get("a.test").pause_until = T0 + 60.0
    await one.complete(first, T0 + 1.0)
    assert await two.claim(T0 + 59.0) is None
    assert await two.next_wakeup(T0 + 59.0) == T0 + 60.0
    assert await two.claim(T0 + 60.0) is not None
    assert two.politeness.get("a.test").pause_until == T0 + 60.0


async def test_a_pause_never_moves_back(make: Make) -> None:
    one, two = await make(), await make()
    await one.add([req(f"http://a.test/{i}") for i in range(3)])
    a, b = await claim_all(one, T0)
    one.politeness.get("a.test").pause_until = T0 + 60.0
    await one.complete(a, T0)
    # the other worker's own policy knows no pause, yet its complete keeps the shared one
    await two.complete(b, T0)  # not its lease: a no-op for the slot
    two.politeness.get("a.test").pause_until = 0.0
    assert await two.claim(T0 + 30.0) is None


# -- the lease: claim, complete, finish ------------------------------------------------------------------------


async def test_a_second_complete_frees_nothing(make: Make) -> None:
    front = await make(per_host=1)
    await front.add([req(f"http://a.test/{i}") for i in range(3)])
    first = await front.claim(T0)
    assert first is not None
    await front.complete(first, T0)
    await front.complete(first, T0)
    second = await front.claim(T0)
    assert second is not None and second.url == "http://a.test/1"
    assert await front.claim(T0) is None
    assert front.statistics().in_flight == 1


async def test_finish_without_complete_frees_the_slot(make: Make) -> None:
    front = await make(per_host=1)
    await front.add([req("http://a.test/0"), req("http://a.test/1")])
    first = await front.claim(T0)
    assert first is not None
    await front.finish(first, first)  # cancelled before its fetch ended
    assert front.statistics().in_flight == 0
    assert await front.claim(T0) is not None


async def test_finish_with_a_retry_that_is_not_json_keeps_the_lease(make: Make) -> None:
    front = await make()
    await front.add([req("http://a.test/x")])
    request = await front.claim(T0)
    assert request is not None
    await front.complete(request, T0)
    with pytest.raises(FrontierError, match="meta"):
        await front.finish(request, request.replace(meta={"session": object()}))
    assert not await front.exhausted()
    await front.finish(request)  # the lease is still there to end
    assert await front.exhausted()


async def test_a_lone_surrogate_in_meta_is_stored(make: Make) -> None:
    front = await make()
    meta = json.loads('{"cursor": "abc\\ud83d"}')  # half an emoji, as a truncating API may send it
    assert await front.add([req("http://a.test/x", meta=meta)]) == 1
    claimed = await front.claim(T0)
    assert claimed is not None and claimed.meta == meta


# -- workers sharing a crawl ----------------------------------------------------------------------------------


async def test_two_workers_share_the_per_host_limit(make: Make) -> None:
    one, two = await make(per_host=2), await make(per_host=2)
    await one.add([req(f"http://a.test/{i}") for i in range(5)])
    await two.add([req(f"http://a.test/{i}") for i in range(5)] + [req("http://b.test/0")])  # dupes dropped
    first = await one.claim(T0)
    got = await claim_all(two, T0)
    assert first is not None and first.host == "a.test"
    assert sorted(r.url for r in got) == ["http://a.test/1", "http://b.test/0"]  # one slot of a.test left
    assert await one.claim(T0) is None
    await one.complete(first, T0)
    again = await two.claim(T0)
    assert again is not None and again.url == "http://a.test/2"
    assert await one.claim(T0) is None


async def test_an_idle_worker_polls_while_another_holds_leases(make: Make) -> None:
    one, two = await make(), await make(poll=0.25)
    await one.add([req("http://a.test/0")])
    request = await one.claim(T0)
    assert request is not None
    assert await two.claim(T0) is None
    assert not await two.exhausted()
    assert await two.next_wakeup(T0) == T0 + 0.25  # the other worker may add work
    await one.complete(request, T0)
    await one.add([req("http://b.test/from-one")])  # a child request, found by the poll
    await one.finish(request)
    found = await two.claim(T0 + 0.25)
    assert found is not None and found.url == "http://b.test/from-one"


async def test_crawl_ids_are_separate(make: Make, crawl_id: str) -> None:
    one, other = await make(), await make(crawl_id=crawl_id + "-{other}")
    await one.add([req("http://a.test/0")])
    assert await other.add([req("http://a.test/0")]) == 1
    assert (await one.claim(T0)) is not None and (await other.claim(T0)) is not None
    assert key_prefix("another-{crawl}") == "crawler:{another-%7Bcrawl%7D}:"


# -- leases ------------------------------------------------------------------------------------------------


async def test_an_expired_lease_is_reclaimed_and_its_slot_freed(make: Make) -> None:
    dead, alive = await make(per_host=1, lease=10.0), await make(per_host=1, lease=10.0)
    await dead.add([req("http://a.test/0"), req("http://a.test/1")])
    lost = await dead.claim(T0)
    assert lost is not None and lost.url == "http://a.test/0"
    assert await alive.claim(T0 + 9.9) is None  # the lease holds; the host's only slot is taken
    again = await alive.claim(T0 + 10.0)  # expired: queued again, slot freed, claimed at once
    assert again is not None and again.url == "http://a.test/0"
    assert await alive.claim(T0 + 10.0) is None  # one slot: the reclaimed request holds it

    # the dead worker wakes up late: its complete and finish change nothing
    await dead.complete(lost, T0 + 11.0)
    await dead.finish(lost, lost.replace(attempt=1))
    assert await alive.claim(T0 + 11.0) is None
    assert alive.statistics().queued == 1 and alive.statistics().delayed == 0
    await alive.complete(again, T0 + 12.0)
    await alive.finish(again)
    last = await alive.claim(T0 + 12.0)
    assert last is not None and last.url == "http://a.test/1"
    await alive.complete(last, T0 + 12.0)
    await alive.finish(last)
    assert await alive.exhausted()


async def test_a_completed_lease_that_expires_frees_no_slot_twice(make: Make) -> None:
    dead, alive = await make(per_host=1, lease=10.0), await make(per_host=1, lease=10.0)
    await dead.add([req("http://a.test/0"), req("http://a.test/1")])
    done = await dead.claim(T0)
    assert done is not None
    await dead.complete(done, T0 + 1.0)  # fetched; died before its items were written
    other = await alive.claim(T0 + 1.0)
    assert other is not None and other.url == "http://a.test/1"
    assert await alive.claim(T0 + 10.0) is None  # reclaimed and queued, but a.test's one slot is taken
    await alive.complete(other, T0 + 10.0)
    again = await alive.claim(T0 + 10.0)
    assert again is not None and again.url == "http://a.test/0"


async def test_renewal_keeps_a_lease(make: Make) -> None:
    now = [T0]
    worker = await make(lease=10.0, clock=lambda: now[0])
    other = await make(lease=10.0)
    await worker.add([req("http://a.test/0")])
    request = await worker.claim(T0)
    assert request is not None
    now[0] = T0 + 8.0
    await worker.renew()  # until T0 + 18
    assert await other.claim(T0 + 12.0) is None
    stolen = await other.claim(T0 + 18.0)
    assert stolen is not None
    await worker.renew()  # gone: dropped, and its finish is a no-op
    await worker.finish(request)
    assert not await other.exhausted()
    await other.finish(stolen)
    assert await other.exhausted()


async def test_close_gives_leases_back_at_once(make: Make) -> None:
    leaving, staying = await make(per_host=1), await make(per_host=1)
    await leaving.add([req("http://a.test/0")])
    assert await leaving.claim(T0) is not None
    await leaving.close()
    back = await staying.claim(T0)
    assert back is not None and back.url == "http://a.test/0"


async def test_clear_deletes_the_crawl(make: Make) -> None:
    front = await make()
    await front.add([req("http://a.test/0"), req("http://b.test/0", not_before=T0 + 1)])
    assert await front.clear() > 0
    assert await front.exhausted()
    assert await front.add([req("http://a.test/0")]) == 1


# -- opening ---------------------------------------------------------------------------------------------------


async def test_open_frontier_finds_the_plugin(redis_url: str, crawl_id: str) -> None:
    front = open_frontier(redis_url, politeness=Politeness(), crawl_id=crawl_id, settings=Settings())
    assert isinstance(front, RedisFrontier) and front.lease == 60.0
    await front.open()
    try:
        assert await front.add([req("http://a.test/0")]) == 1
    finally:
        await front.close()


async def test_an_unreachable_server_fails_open_naming_it(crawl_id: str, unused_port: int) -> None:
    uri = f"redis://:s3cret@127.0.0.1:{unused_port}/0"
    front = RedisFrontier(uri, crawl_id=crawl_id, connect_timeout=0.3)
    with pytest.raises(FrontierError) as info:
        await front.open()
    message = str(info.value)
    assert "127.0.0.1" in message and "***" in message and "s3cret" not in message


async def test_a_bad_uri_fails_open(crawl_id: str) -> None:
    with pytest.raises(FrontierError, match="redis"):
        await RedisFrontier("redis://127.0.0.1:notaport/0", crawl_id=crawl_id, connect_timeout=0.1).open()
