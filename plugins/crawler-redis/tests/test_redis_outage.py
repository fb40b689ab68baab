"""Redis goes away and comes back (a restart with its append-only file): the frontier's calls wait it out, and a
crawl under way completes with every page."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest
import redis

from crawler import AdaptivePoliteness, Engine, ItemRecord, Politeness, Request, SiteSpider, load_settings
from crawler.testing import generate_site, serve_many
from crawler_redis import RedisFrontier

if TYPE_CHECKING:
    from conftest import RedisServer

pytestmark = pytest.mark.anyio

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
T0 = 1_000_000.0


class Recorder:
    """Stands in for the connection's structlog logger: keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))


class Collect:
    uri = "memory:"

    def __init__(self) -> None:
        self.records: list[ItemRecord] = []

    async def open(self) -> None:
        return None

    async def write(self, batch: Any) -> None:
        self.records.extend(batch)

    async def close(self) -> None:
        return None


def quick(front: RedisFrontier) -> Recorder:
    """Short backoff for the test, and a recorder of the outage log lines."""
    front.connection.min_backoff, front.connection.max_backoff = 0.02, 0.2
    front.connection.log = recorder = Recorder()
    return recorder


async def test_a_call_waits_out_an_outage(own_redis: RedisServer, crawl_id: str) -> None:
    front = RedisFrontier(own_redis.url, crawl_id=crawl_id)
    await front.open()
    recorder = quick(front)
    try:
        await front.add([Request(url="http://a.test/0")])
        own_redis.stop()
        claimed: list[Request | None] = []

        async def claim() -> None:
            claimed.append(await front.claim(T0))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(claim)
                await anyio.sleep(0.5)
                assert not claimed  # waiting, not failing
                await anyio.to_thread.run_sync(own_redis.start)
        assert claimed[0] is not None and claimed[0].url == "http://a.test/0"  # kept by the append-only file
        events = [(level, event) for level, event, _ in recorder.lines]
        assert events == [("warning", "redis unavailable, retrying"), ("info", "redis available again")]
        assert recorder.lines[0][2]["uri"] == own_redis.url
    finally:
        await front.close()


def lose_one_reply(front: RedisFrontier) -> None:
    """The next call to Redis runs, but its reply is lost (the connection drops before it arrives)."""
    run = front.connection.run
    lost: list[object] = []

    async def lossy(operation: Any) -> Any:
        result = await run(operation)
        if not lost:
            lost.append(result)
            raise redis.ConnectionError("connection lost before the reply")
        return result

    front.connection.run = lossy  # type: ignore[method-assign]


async def test_a_claim_whose_reply_was_lost_leaks_no_lease(redis_url: str, crawl_id: str) -> None:
    front = RedisFrontier(redis_url, Politeness(per_host=1), crawl_id=crawl_id)
    await front.open()
    quick(front)
    try:
        await front.add([Request(url="http://a.test/0"), Request(url="http://a.test/1")])
        lose_one_reply(front)
        first = await front.claim(T0)  # sent again: the same lease, not a second one
        assert first is not None and first.url == "http://a.test/0"
        assert front.statistics().queued == 1
        await front.complete(first, T0)
        await front.finish(first)
        second = await front.claim(T0)  # the host's one slot was not leaked
        assert second is not None and second.url == "http://a.test/1"
    finally:
        await front.close()


async def test_a_finish_whose_reply_was_lost_queues_its_retry_once(redis_url: str, crawl_id: str) -> None:
    front = RedisFrontier(redis_url, crawl_id=crawl_id)
    await front.open()
    quick(front)
    try:
        await front.add([Request(url="http://a.test/0")])
        request = await front.claim(T0)
        assert request is not None
        await front.complete(request, T0)
        lose_one_reply(front)
        await front.finish(request, request.replace(attempt=1))
        assert front.statistics().queued == 1
        retry = await front.claim(T0)
        assert retry is not None and retry.attempt == 1
        assert await front.claim(T0) is None
    finally:
        await front.close()


async def test_open_waits_for_a_server_that_is_starting(own_redis: RedisServer, crawl_id: str) -> None:
    own_redis.stop()
    front = RedisFrontier(own_redis.url, crawl_id=crawl_id, connect_timeout=10.0)
    quick(front)
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(front.open)
            await anyio.sleep(0.3)
            await anyio.to_thread.run_sync(own_redis.start)
    try:
        assert await front.exhausted()
    finally:
        await front.close()


async def test_a_crawl_survives_a_redis_restart(own_redis: RedisServer, crawl_id: str) -> None:
    site = generate_site(pages=60, links_per_page=6, hosts=HOSTS, seed=5)
    config = load_settings(
        environ={}, cli={"crawl.per_host": 2, "crawl.concurrency": 12, "crawl.lease": 5.0}, config_dir=Path("/x")
    )
    politeness = AdaptivePoliteness(per_host=2, jitter=0.0)
    frontier = RedisFrontier(own_redis.url, politeness, crawl_id=crawl_id, settings=config)
    recorder = quick(frontier)
    sink = Collect()
    with serve_many(site, latency=0.02) as servers:
        bound = servers.site
        assert bound is not None
        starts = [bound.url("/index.html", host) for host in bound.hosts]
        engine = Engine(SiteSpider(starts), config, frontier=frontier, politeness=politeness, sinks=[sink])

        async def restart_midway() -> None:
            while servers.stats().requests < 40:  # noqa: ASYNC110 - the server counts in its own threads
                await anyio.sleep(0.01)
            restarted_at = servers.stats().requests
            await anyio.to_thread.run_sync(own_redis.restart, 0.5)
            assert restarted_at < len(bound.reachable_urls(starts))

        started = time.monotonic()
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(restart_midway)
                stats = await engine.run()
        served = servers.stats()

    expected = bound.reachable_urls(starts)
    assert stats.reason == "finished"
    assert {record.url for record in sink.records} == expected
    hits = {url: n for url, n in served.hits_by_url().items() if not url.endswith("/robots.txt")}
    assert hits == dict.fromkeys(expected, 1)  # no lease was lost to the outage: nothing fetched twice
    assert max(served.max_in_flight.values()) <= 2
    assert any(event == "redis unavailable, retrying" for _, event, _ in recorder.lines)
    assert time.monotonic() - started < 30
