"""Real crawls through the Redis frontier: a generated three-host site served on 127.0.0.1-3, crawled by one
engine, then by two engines sharing one crawl id (two workers of one crawl in one process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from crawler import AdaptivePoliteness, Engine, ItemRecord, Response, Settings, SiteSpider, Stats, load_settings
from crawler.testing import generate_site, serve_many
from crawler_redis import RedisFrontier

pytestmark = pytest.mark.anyio

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def settings(**crawl: Any) -> Settings:
    return load_settings(environ={}, cli={f"crawl.{k}": v for k, v in crawl.items()}, config_dir=Path("/nonexistent"))


class Collect:
    """A sink that keeps items in memory."""

    uri = "memory:"

    def __init__(self) -> None:
        self.records: list[ItemRecord] = []

    async def open(self) -> None:
        return None

    async def write(self, batch: Any) -> None:
        self.records.extend(batch)

    async def close(self) -> None:
        return None


def page_hits(hits: dict[str, int]) -> dict[str, int]:
    return {url: n for url, n in hits.items() if not url.endswith("/robots.txt")}


async def test_a_crawl_through_the_redis_frontier(redis_url: str, crawl_id: str) -> None:
    site = generate_site(pages=40, links_per_page=6, hosts=HOSTS, seed=3)
    with serve_many(site, latency=0.003) as servers:
        bound = servers.site
        assert bound is not None
        starts = [bound.url("/index.html", host) for host in bound.hosts]
        config = settings(concurrency=12, per_host=2, lease=5.0)
        politeness = AdaptivePoliteness(per_host=2, delay=0.0, jitter=0.0)
        frontier = RedisFrontier(redis_url, politeness, crawl_id=crawl_id, settings=config)
        sink = Collect()
        engine = Engine(SiteSpider(starts), config, frontier=frontier, politeness=politeness, sinks=[sink])
        stats = await engine.run()
        served = servers.stats()

    expected = bound.reachable_urls(starts)
    assert len(expected) > 60
    assert page_hits(served.hits_by_url()) == dict.fromkeys(expected, 1)
    assert sorted(record.url for record in sink.records) == sorted(expected)
    assert max(served.max_in_flight.values()) <= 2
    assert stats.reason == "finished" and stats.counts["pages"] == len(expected)
    end = frontier.statistics()
    assert (end.queued, end.in_flight, end.seen) == (0, 0, len(expected))


async def test_two_engines_share_one_crawl(redis_url: str, crawl_id: str) -> None:
    """Two workers (built from settings: crawl.frontier and crawl.crawl_id) split the site between them; each
    page is fetched once in all, and the per-host limit holds for both together."""
    site = generate_site(pages=40, links_per_page=6, hosts=HOSTS, seed=11)
    with serve_many(site, latency=0.01) as servers:
        bound = servers.site
        assert bound is not None
        starts = [bound.url("/index.html", host) for host in bound.hosts]
        sinks = [Collect(), Collect()]
        results: list[Stats] = []

        async def worker(sink: Collect) -> None:
            config = settings(concurrency=8, per_host=2, lease=5.0, frontier=redis_url, crawl_id=crawl_id)
            engine = Engine(SiteSpider(starts), config, sinks=[sink])
            assert isinstance(engine.frontier, RedisFrontier)
            results.append(await engine.run())

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for sink in sinks:
                    tg.start_soon(worker, sink)
        served = servers.stats()

    expected = bound.reachable_urls(starts)
    assert page_hits(served.hits_by_url()) == dict.fromkeys(expected, 1)
    urls = [record.url for sink in sinks for record in sink.records]
    assert sorted(urls) == sorted(expected)
    assert all(sink.records for sink in sinks), [len(sink.records) for sink in sinks]
    assert max(served.max_in_flight.values()) <= 2
    assert [stats.reason for stats in results] == ["finished", "finished"]


class SlowSite(SiteSpider):
    """Spends longer on each page than the lease lasts: only renewals keep the leases."""

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        await anyio.sleep(0.4)
        async for value in super().parse(response):
            yield value


async def test_renewals_keep_leases_longer_than_the_lease(redis_url: str, crawl_id: str) -> None:
    site = generate_site(pages=12, links_per_page=4, hosts=HOSTS[:1], seed=2)
    with serve_many(site) as servers:
        bound = servers.site
        assert bound is not None
        start = bound.url("/index.html")
        config = settings(concurrency=4, per_host=4, lease=0.3, frontier=redis_url, crawl_id=crawl_id)
        sink = Collect()
        with anyio.fail_after(30):
            stats = await Engine(SlowSite([start]), config, sinks=[sink]).run()
        served = servers.stats()

    expected = bound.reachable_urls(start)
    assert page_hits(served.hits_by_url()) == dict.fromkeys(expected, 1)  # no lease ran out
    assert sorted(record.url for record in sink.records) == sorted(expected)
    assert stats.reason == "finished"
