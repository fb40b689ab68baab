"""Engine-level checks of politeness and pagination on real servers: robots.txt Crawl-delay, the default error
table, the pagination loop guard."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Engine, Request, Response, Spider, load_settings
from crawler.testing import LocalServer, Reply, RequestInfo, generate_site, serve_many

pytestmark = pytest.mark.anyio


def settings(**values: Any) -> Any:
    return load_settings(environ={}, cli=values, config_dir=Path("/nonexistent"))


class Pages(Spider):
    name = "pages"

    def __init__(self, start: str) -> None:
        super().__init__()
        self.start_urls = [start]  # type: ignore[misc]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}
        for request in response.follow_all():
            yield request


async def test_robots_crawl_delay_spaces_the_requests_to_a_host(in_tmp: Path) -> None:
    site = generate_site(pages=6, links_per_page=3, robots_txt="User-agent: *\nCrawl-delay: 0.2\n", asset_ratio=0.0)
    with serve_many(site, hosts=["127.0.0.1"]) as servers:
        engine = Engine(Pages(servers.url("/index.html")), settings(**{"crawl.per_host": 4, "crawl.jitter": 0.0}))
        await engine.run()
        log = [r for r in servers.stats().log if r.path != "/robots.txt"]
    assert engine.politeness.get(f"127.0.0.1:{servers.port}").crawl_delay == pytest.approx(0.2)
    starts = sorted(r.started for r in log)
    assert len(starts) == 6
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Lower bounds: the crawler starts requests 0.2 s apart; the server sees each arrival a little late, by up to
    # its thread's scheduling delay, so one gap may look shorter by that much, but the whole span cannot.
    assert min(gaps) >= 0.2 - 0.05
    assert starts[-1] - starts[0] >= 5 * 0.2 - 0.05


async def test_a_request_that_gives_up_lands_in_the_default_errors_table(in_tmp: Path) -> None:
    routes = {"/": (200, {"Content-Type": "text/html"}, b'<a href="/missing">x</a><a href="/ok">y</a>')}
    routes["/ok"] = (200, {"Content-Type": "text/html"}, b"<title>ok</title>")
    with LocalServer(routes) as server:
        stats = await Engine(Pages(server.url("/")), settings(**{"retry.max_attempts": 1})).run()
    assert stats.errors == {"http_404": 1}
    with sqlite3.connect(in_tmp / "pages.db") as db:
        items = [json.loads(row[0]) for row in db.execute("SELECT item FROM items")]
        errors = [json.loads(row[0]) for row in db.execute("SELECT item FROM errors")]
    assert sorted(i["url"] for i in items) == [server.url("/"), server.url("/ok")]
    assert len(errors) == 1
    assert errors[0]["url"] == server.url("/missing") and errors[0]["status"] == 404 and errors[0]["attempts"] == 1


async def test_a_cursor_seen_twice_stops_the_chain_with_a_warning(in_tmp: Path) -> None:
    def page(info: RequestInfo) -> Reply:
        cursor = dict(p.split("=", 1) for p in info.query.split("&") if "=" in p).get("cursor", "")
        following = {"": "a", "a": "b", "b": "a"}[cursor]  # a -> b -> a: a loop
        body = json.dumps({"data": [{"id": cursor or "start"}], "response_metadata": {"next_cursor": following}})
        return 200, {"Content-Type": "application/json"}, body.encode()

    class Loop(Spider):
        name = "loop"
        paginate = {"parse": "cursor:slack"}

        async def start(self) -> AsyncIterator[Request]:
            yield Request(url=server.url("/items"))

        def parse(self, response: Response) -> Any:
            return response.json()["data"]

    with LocalServer({"/items": page}) as server:
        stats = await Engine(Loop(), settings(**{"crawl.obey_robots": False})).run()
        hits = server.stats().hits
    assert stats.counts["pagination_loops"] == 1
    assert stats.counts["items"] == 3  # start, a, b; the second "a" is not fetched
    assert sum(hits[server.authority].values()) == 3
