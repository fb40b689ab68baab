"""Crawls of generated multi-host sites served on 127.0.0.1, 127.0.0.2 and 127.0.0.3."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Engine, Request, Response, Settings, Spider, load_settings
from crawler.sinks import JsonLinesSink
from crawler.testing import generate_site, serve_many

pytestmark = pytest.mark.anyio

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def settings(**crawl: Any) -> Settings:
    return load_settings(environ={}, cli={f"crawl.{k}": v for k, v in crawl.items()}, config_dir=Path("/nonexistent"))


class Collect:
    """A sink that keeps items in memory."""

    uri = "memory:"

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.closed = False

    async def open(self) -> None:
        return None

    async def write(self, batch: Any) -> None:
        self.items.extend(record.item for record in batch)
        self.keys.extend(record.key for record in batch)

    async def close(self) -> None:
        self.closed = True


class FollowAll(Spider):
    """Follows every link within the three hosts, one item per page."""

    name = "follow"
    allowed_domains = HOSTS

    def __init__(self, start: str) -> None:
        super().__init__()
        self.start_urls = [start]  # type: ignore[misc]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url, "host": response.request.host}
        for request in response.follow_all():
            if not request.url.endswith((".png", ".css", ".pdf")):
                yield request


async def test_every_reachable_page_fetched_once_per_host_limit_held() -> None:
    site = generate_site(pages=60, links_per_page=8, hosts=HOSTS, seed=3)
    with serve_many(site, latency=0.002) as servers:
        bound = servers.site
        assert bound is not None
        sink = Collect()
        spider = FollowAll(bound.url())
        stats = await Engine(spider, settings(concurrency=12, per_host=2), sinks=[sink]).run()
        served = servers.stats()

    expected = bound.reachable_urls()
    assert len(expected) > 100  # pages on all three hosts
    fetched = {url: n for url, n in served.hits_by_url().items() if not url.endswith("/robots.txt")}
    assert set(fetched) == expected
    assert all(n == 1 for n in fetched.values()), {u: n for u, n in fetched.items() if n != 1}
    assert sorted(item["url"] for item in sink.items) == sorted(expected)
    assert len(set(sink.keys)) == len(sink.keys)
    assert sink.closed
    assert set(served.max_in_flight) == {f"{h}:{servers.port}" for h in HOSTS}
    assert max(served.max_in_flight.values()) <= 2
    assert stats.counts["pages"] == len(expected)
    assert stats.reason == "finished"


async def test_slow_host_does_not_block_the_others() -> None:
    """No head-of-line blocking: with one host answering slowly, the fast hosts finish first."""
    site = generate_site(pages=25, links_per_page=5, hosts=HOSTS, cross_host_ratio=0.0, seed=5)
    slow = "127.0.0.3"
    with serve_many(site, latency={slow: 0.15}) as servers:
        bound = servers.site
        assert bound is not None

        class ThreeStarts(FollowAll):
            async def start(self) -> AsyncIterator[Request]:
                for host in bound.hosts:
                    yield Request(url=bound.url("/index.html", host))

        stats = await Engine(ThreeStarts(bound.url()), settings(concurrency=8, per_host=1), sinks=[Collect()]).run()
        log = servers.stats().log

    pages = [r for r in log if r.path != "/robots.txt"]
    fast_done = max(r.finished for r in pages if not r.host.startswith(slow))
    slow_pages = [r for r in pages if r.host.startswith(slow)]
    assert len(slow_pages) == 25
    slow_before_fast_done = sum(1 for r in slow_pages if r.finished <= fast_done)
    # the two fast hosts (50 pages) complete while the slow host has served only a few of its 25 pages
    assert slow_before_fast_done < len(slow_pages) // 2, (slow_before_fast_done, len(slow_pages))
    assert stats.counts["pages"] == 75


async def test_robots_txt_disallow_is_obeyed() -> None:
    site = generate_site(pages=40, links_per_page=6, hosts=("127.0.0.1",), disallow=["/s1/"], seed=7)
    with serve_many(site) as servers:
        bound = servers.site
        assert bound is not None
        sink = Collect()
        stats = await Engine(FollowAll(bound.url()), settings(concurrency=4), sinks=[sink]).run()
        fetched = set(servers.stats().hits_by_url())
    assert not any("/s1/" in url for url in fetched)
    expected = bound.reachable_urls(respect_robots=True)
    assert {item["url"] for item in sink.items} == expected
    assert stats.counts["robots_disallowed"] > 0


async def test_writes_jsonl_through_the_sink_seam(tmp_path: Path) -> None:
    site = generate_site(pages=15, links_per_page=4, hosts=("127.0.0.1",), seed=1)
    out = tmp_path / "items.jsonl"
    with serve_many(site) as servers:
        bound = servers.site
        assert bound is not None
        await Engine(FollowAll(bound.url()), settings(), sinks=[JsonLinesSink(str(out))]).run()
    lines = out.read_text().splitlines()
    assert len(lines) == len(bound.reachable_urls())
