"""The Spider API end to end: every way a spider can produce requests and items, errbacks, limits, redirects and
the generic SiteSpider, each crawled against real HTTP servers on loopback."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from crawler import (
    CloseSpider,
    ConnectError,
    CrawlerError,
    CrawlSettings,
    Engine,
    Failure,
    FetchTimeout,
    Request,
    Response,
    Settings,
    SiteSpider,
    Spider,
    Stats,
)
from crawler.testing import LocalServer, Reply, RequestInfo, RouteValue, generate_site, serve_many

pytestmark = pytest.mark.anyio


# -- helpers ---------------------------------------------------------------------------------------------------


def settings(**crawl: Any) -> Settings:
    """Settings for a test crawl: no robots.txt (its fetch would show up in request logs) unless asked, and no
    retries (a failure goes to the errback at once)."""
    crawl.setdefault("obey_robots", False)
    base = Settings(crawl=CrawlSettings(**crawl))
    if hasattr(base, "retry"):
        base = attrs.evolve(base, retry=attrs.evolve(base.retry, max_attempts=1))
    return base


@pytest.fixture(autouse=True)
def _in_tmp(in_tmp: Path) -> None:
    """Crawl in an empty directory: default outputs (the SQLite error table) land there."""


def page(*links: str, title: str = "page") -> bytes:
    anchors = "".join(f'<a href="{href}">{href}</a>\n' for href in links)
    return f"<!DOCTYPE html><html><head><title>{title}</title></head><body>\n{anchors}</body></html>\n".encode()


HTML = {"Content-Type": "text/html; charset=utf-8"}


def redirect(status: int, location: str) -> Reply:
    return status, {"Location": location, "Content-Type": "text/plain"}, b"moved\n"


class Collect:
    """A sink that keeps records in memory."""

    uri = "memory:"

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.urls: list[str] = []

    async def open(self) -> None:
        return None

    async def write(self, batch: Any) -> None:
        for record in batch:
            self.items.append(record.item)
            self.keys.append(record.key)
            self.urls.append(record.url)

    async def close(self) -> None:
        return None


@pytest.fixture
def server_factory() -> Iterator[Any]:
    """Start a LocalServer on 127.0.0.1 for a routes mapping; every server is stopped at the end."""
    servers: list[LocalServer] = []

    def start(routes: Mapping[str, RouteValue]) -> LocalServer:
        server = LocalServer(routes).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def fetched_paths(server: LocalServer) -> list[str]:
    """Paths in the order the server answered them."""
    return [record.path for record in server.stats().log]


async def run(spider: Spider, sink: Collect | None = None, **crawl: Any) -> Stats:
    return await Engine(spider, settings(**crawl), sinks=[sink if sink is not None else Collect()]).run()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- where requests come from ----------------------------------------------------------------------------------


async def test_start_urls_are_fetched_with_parse(server_factory: Any) -> None:
    server = server_factory({"/a": page(title="A"), "/b": page(title="B")})

    class Titles(Spider):
        name = "titles"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"title": response.title, "url": response.url}

    sink = Collect()
    stats = await run(Titles(start_urls=[server.url("/a"), server.url("/b")]), sink)

    assert sorted(item["title"] for item in sink.items) == ["A", "B"]
    assert sorted(fetched_paths(server)) == ["/a", "/b"]
    assert stats.counts["pages"] == 2
    assert stats.reason == "finished"


async def test_async_start_yields_requests_and_items(server_factory: Any) -> None:
    server = server_factory({"/one": page(title="one"), "/two": page(title="two")})

    class Starter(Spider):
        name = "starter"

        async def start(self) -> AsyncIterator[Any]:
            yield {"seed": 1}
            yield Request(url=server.url("/one"), callback="custom")
            yield Request(url=server.url("/two"), callback=self.custom)
            yield {"seed": 2}

        async def custom(self, response: Response) -> AsyncIterator[Any]:
            yield {"title": response.title}

    sink = Collect()
    await run(Starter(), sink)

    assert sorted(fetched_paths(server)) == ["/one", "/two"]
    assert {"seed": 1} in sink.items and {"seed": 2} in sink.items
    assert sorted(item["title"] for item in sink.items if "title" in item) == ["one", "two"]


async def test_items_yielded_by_start_have_distinct_keys(server_factory: Any) -> None:
    """Nothing is lost: two items from start() must not share a record key, or an upserting sink (the SQLite
    default) keeps only the last of them."""

    class Seeds(Spider):
        name = "seeds"

        async def start(self) -> AsyncIterator[Any]:
            yield {"seed": 1}
            yield {"seed": 2}
            yield {"seed": 3}

    sink = Collect()
    await run(Seeds(), sink)

    assert len(sink.items) == 3
    assert len(set(sink.keys)) == 3, sink.keys


@attrs.define
class Book:
    title: str
    tags: list[str]


@dataclasses.dataclass
class Author:
    name: str
    born: int | None = None


async def test_every_callback_style_is_accepted(server_factory: Any) -> None:
    styles = ["async_gen", "sync_gen", "returns_list", "returns_dict", "returns_none", "sync_list", "returns_attrs"]
    server = server_factory({"/index": page(), **{f"/{s}": page(title=s) for s in styles}})

    class Styles(Spider):
        name = "styles"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            for style in styles:
                yield response.follow(f"/{style}", callback=style)

        async def async_gen(self, response: Response) -> AsyncIterator[Any]:
            yield {"style": response.title, "n": 1}
            yield {"style": response.title, "n": 2}

        def sync_gen(self, response: Response) -> Iterator[Any]:
            yield {"style": response.title, "n": 1}
            yield {"style": response.title, "n": 2}

        async def returns_list(self, response: Response) -> list[Any]:
            return [{"style": response.title, "n": 1}, {"style": response.title, "n": 2}]

        async def returns_dict(self, response: Response) -> dict[str, Any]:
            return {"style": response.title, "n": 1}

        async def returns_none(self, response: Response) -> None:
            self.none_called = True

        def sync_list(self, response: Response) -> list[Any]:
            return [{"style": response.title, "n": 1}]

        async def returns_attrs(self, response: Response) -> Book:
            return Book(title=response.title, tags=["x"])

    spider = Styles(start_urls=[server.url("/index")])
    sink = Collect()
    stats = await run(spider, sink)

    produced = sorted((item.get("style", item.get("title")), item.get("n")) for item in sink.items)
    assert produced == [
        ("async_gen", 1),
        ("async_gen", 2),
        ("returns_attrs", None),
        ("returns_dict", 1),
        ("returns_list", 1),
        ("returns_list", 2),
        ("sync_gen", 1),
        ("sync_gen", 2),
        ("sync_list", 1),
    ]
    assert spider.none_called
    assert stats.counts["pages"] == len(styles) + 1
    assert stats.counts["errors"] == 0


async def test_cb_kwargs_and_meta_reach_the_callback(server_factory: Any) -> None:
    server = server_factory({"/list": page("/detail"), "/detail": page(title="detail")})

    class Detail(Spider):
        name = "detail"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield response.follow(
                "/detail", callback="detail", cb_kwargs={"category": "books", "rank": 3}, meta={"trail": ["list"]}
            )

        async def detail(self, response: Response, category: str, rank: int) -> AsyncIterator[Any]:
            yield {"category": category, "rank": rank, "trail": response.meta["trail"], "depth": response.request.depth}

    sink = Collect()
    await run(Detail(start_urls=[server.url("/list")]), sink)

    assert sink.items == [{"category": "books", "rank": 3, "trail": ["list"], "depth": 1}]


async def test_priority_orders_requests_within_a_host(server_factory: Any) -> None:
    priorities = {"/p1": 1, "/p5": 5, "/p0": 0, "/p9": 9, "/p3": 3, "/pminus": -2}
    server = server_factory({"/index": page(), **{path: page() for path in priorities}})

    class Prioritized(Spider):
        name = "prioritized"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            if response.url.endswith("/index"):
                for path, priority in priorities.items():
                    yield response.follow(path, priority=priority)

    await run(Prioritized(start_urls=[server.url("/index")]), concurrency=1, per_host=1)

    assert fetched_paths(server) == ["/index", "/p9", "/p5", "/p3", "/p1", "/p0", "/pminus"]


async def test_dont_filter_refetches_a_seen_url(server_factory: Any) -> None:
    server = server_factory({"/index": page(), "/again": page()})

    class Again(Spider):
        name = "again"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            if response.url.endswith("/index"):
                yield response.follow("/again")
                yield response.follow("/again")  # a duplicate: dropped
                yield response.follow("/again", dont_filter=True)
                yield response.follow("/index", dont_filter=True, callback="count")

        async def count(self, response: Response) -> AsyncIterator[Any]:
            yield {"refetched": response.url}

    sink = Collect()
    stats = await run(Again(start_urls=[server.url("/index")]), sink)

    hits = server.stats().hits["127.0.0.1:" + str(server.port)]
    assert dict(hits) == {"/index": 2, "/again": 2}
    assert stats.counts["duplicates"] == 1
    assert sink.items == [{"refetched": server.url("/index")}]


# -- failures --------------------------------------------------------------------------------------------------


async def test_errback_gets_failures_and_the_crawl_goes_on(server_factory: Any) -> None:
    release = threading.Event()

    def slow(request: RequestInfo) -> Reply:
        release.wait(5.0)  # answers only after the client gave up (or the test ends)
        return 200, HTML, page(title="too late")

    server = server_factory({"/ok": page("/ok2", title="ok"), "/ok2": page(title="ok2"), "/slow": slow})
    dead = f"http://127.0.0.1:{closed_port()}/nothing"

    class Failing(Spider):
        name = "failing"

        def __init__(self) -> None:
            super().__init__()
            self.failures: list[Failure] = []

        async def start(self) -> AsyncIterator[Any]:
            yield Request(url=dead, errback="on_error")
            yield Request(url=server.url("/missing"), errback="on_error")
            yield Request(url=server.url("/slow"), errback="on_error")
            yield Request(url=server.url("/ok"))

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"title": response.title}
            for request in response.follow_all():
                yield request

        async def on_error(self, failure: Failure) -> AsyncIterator[Any]:
            self.failures.append(failure)
            yield {"failed": failure.request.url}

    spider = Failing()
    sink = Collect()
    try:
        stats = await run(spider, sink, timeout=0.5)
    finally:
        release.set()

    by_url = {failure.request.url: failure for failure in spider.failures}
    assert set(by_url) == {dead, server.url("/missing"), server.url("/slow")}
    assert isinstance(by_url[dead].exception, ConnectError)
    assert by_url[dead].response is None
    assert isinstance(by_url[server.url("/slow")].exception, FetchTimeout)
    missing = by_url[server.url("/missing")]
    assert missing.exception is None
    assert missing.response is not None and missing.response.status == 404
    assert missing.reason == "HTTP 404"
    assert sorted(item["title"] for item in sink.items if "title" in item) == ["ok", "ok2"]
    assert sorted(item["failed"] for item in sink.items if "failed" in item) == sorted(by_url)
    assert dict(stats.errors) == {"ConnectError": 1, "FetchTimeout": 1, "http_404": 1}


async def test_default_errback_method_is_called(server_factory: Any) -> None:
    server = server_factory({})
    seen: list[int] = []

    class Default(Spider):
        name = "default"

        async def errback(self, failure: Failure) -> None:
            assert failure.response is not None
            seen.append(failure.response.status)

    stats = await run(Default(start_urls=[server.url("/gone")]))
    assert seen == [404]
    assert stats.statuses[404] == 1


async def test_callback_that_raises_is_counted_and_the_crawl_continues(server_factory: Any) -> None:
    server = server_factory({"/index": page("/boom", "/fine"), "/boom": page(), "/fine": page(title="fine")})

    class Boom(Spider):
        name = "boom"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            if response.url.endswith("/boom"):
                yield {"before": "boom"}  # yielded before the error: kept
                raise ValueError("broken page")
            yield {"title": response.title}
            for request in response.follow_all():
                yield request

    sink = Collect()
    stats = await run(Boom(start_urls=[server.url("/index")]), sink)

    assert stats.counts["errors"] == 1
    assert dict(stats.errors) == {"callback:ValueError": 1}
    assert {"title": "fine"} in sink.items
    assert {"before": "boom"} in sink.items
    assert stats.counts["pages"] == 3
    assert stats.reason == "finished"


async def test_close_spider_stops_the_crawl_with_its_reason(server_factory: Any) -> None:
    server = server_factory({f"/c{i}": page(f"/c{i + 1}") for i in range(6)})

    class Closing(Spider):
        name = "closing"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            if response.url.endswith("/c2"):
                raise CloseSpider("seen enough")
            for request in response.follow_all():
                yield request

    sink = Collect()
    stats = await run(Closing(start_urls=[server.url("/c0")]), sink, concurrency=1, per_host=1)

    assert stats.reason == "seen enough"
    assert fetched_paths(server) == ["/c0", "/c1", "/c2"]
    assert len(sink.items) == 3


async def test_errback_can_yield_requests_and_items(server_factory: Any) -> None:
    server = server_factory({"/mirror/page": page(title="mirror")})

    class Fallback(Spider):
        name = "fallback"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"title": response.title, "url": response.url}

        async def errback(self, failure: Failure) -> AsyncIterator[Any]:
            yield {"gave_up": failure.request.url}
            yield Request(url=server.url("/mirror/page"))

    sink = Collect()
    await run(Fallback(start_urls=[server.url("/page")]), sink)

    assert sink.items == [{"gave_up": server.url("/page")}, {"title": "mirror", "url": server.url("/mirror/page")}]


async def test_unknown_callback_name_is_an_error_not_a_crash(server_factory: Any) -> None:
    """A typo in a callback name fails that request (counted, logged); the rest of the crawl goes on."""
    server = server_factory({"/index": page(), "/typo": page(), "/fine": page(title="fine")})

    class Typo(Spider):
        name = "typo"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            if response.url.endswith("/index"):
                yield response.follow("/typo", callback="parse_itme")
                yield response.follow("/fine", callback="parse_item")

        async def parse_item(self, response: Response) -> AsyncIterator[Any]:
            yield {"title": response.title}

    sink = Collect()
    stats = await run(Typo(start_urls=[server.url("/index")]), sink, concurrency=1)

    assert sink.items == [{"title": "fine"}]
    assert stats.counts["errors"] == 1
    assert stats.reason == "finished"


async def test_too_many_redirects_fail_the_request(server_factory: Any) -> None:
    server = server_factory(
        {"/r0": redirect(302, "/r1"), "/r1": redirect(302, "/r2"), "/r2": redirect(302, "/end"), "/end": page()}
    )
    failures: list[Failure] = []

    class Limited(Spider):
        name = "limited"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

        async def errback(self, failure: Failure) -> None:
            failures.append(failure)

    sink = Collect()
    stats = await run(Limited(start_urls=[server.url("/r0")]), sink, max_redirects=2)

    assert sorted(fetched_paths(server)) == ["/r0", "/r1", "/r2"]  # two redirects followed, the third refused
    assert sink.items == []
    assert len(failures) == 1
    assert isinstance(failures[0].exception, CrawlerError)
    assert "2 redirects" in str(failures[0].exception)
    assert failures[0].request.url == server.url("/r2")
    assert stats.counts["redirects"] == 2

    server.reset()
    sink = Collect()
    await run(Limited(start_urls=[server.url("/r0")]), sink, max_redirects=3)
    assert sink.items == [{"url": server.url("/end")}]


# -- items -----------------------------------------------------------------------------------------------------


async def test_attrs_and_dataclass_items_become_dicts(server_factory: Any) -> None:
    server = server_factory({"/": page()})

    class Typed(Spider):
        name = "typed"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield Book(title="Dune", tags=["sf", "classic"])
            yield Author(name="Herbert", born=1920)

    sink = Collect()
    await run(Typed(start_urls=[server.url("/")]), sink)

    assert sink.items == [{"title": "Dune", "tags": ["sf", "classic"]}, {"name": "Herbert", "born": 1920}]
    assert all(type(item) is dict for item in sink.items)
    assert sink.urls == [server.url("/"), server.url("/")]


async def test_values_that_are_not_items_are_counted_and_skipped(server_factory: Any) -> None:
    server = server_factory({"/": page()})

    class Sloppy(Spider):
        name = "sloppy"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield "a string"
            yield 42
            yield {"ok": True}

    sink = Collect()
    stats = await run(Sloppy(start_urls=[server.url("/")]), sink)

    assert sink.items == [{"ok": True}]
    assert stats.errors["bad_item"] == 2


async def test_item_key_names_the_record_key(server_factory: Any) -> None:
    server = server_factory({"/": page()})

    class Keyed(Spider):
        name = "keyed"
        item_key = "sku"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"sku": "A1", "price": 3}
            yield {"sku": 42, "price": 4}
            yield {"price": 5}  # no key field: a generated key

    sink = Collect()
    await run(Keyed(start_urls=[server.url("/")]), sink)

    assert sink.keys[:2] == ["A1", "42"]
    assert sink.keys[2] not in ("A1", "42", "None", "")


# -- scope and limits ------------------------------------------------------------------------------------------


async def test_allowed_domains_drops_offsite_requests() -> None:
    routes: dict[str, RouteValue] = {}
    with serve_many(routes, hosts=["127.0.0.1", "127.0.0.2"]) as servers:
        routes["/index"] = page("/local", servers.url("/remote", "127.0.0.2"), servers.url("/local2"))
        routes["/local"] = routes["/local2"] = routes["/remote"] = page()

        class Scoped(Spider):
            name = "scoped"
            allowed_domains = ("127.0.0.1",)

            async def parse(self, response: Response) -> AsyncIterator[Any]:
                yield {"url": response.url}
                for request in response.follow_all():
                    yield request

        sink = Collect()
        stats = await run(Scoped(start_urls=[servers.url("/index")]), sink)
        hits = servers.stats().hits_by_url()

    assert set(hits) == {servers.url(p) for p in ("/index", "/local", "/local2")}
    assert stats.counts["offsite"] == 1
    assert len(sink.items) == 3


async def test_max_depth_limits_link_depth(server_factory: Any) -> None:
    server = server_factory({f"/d{i}": page(f"/d{i + 1}") for i in range(6)})

    class Deep(Spider):
        name = "deep"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"depth": response.request.depth}
            for request in response.follow_all():
                yield request

    sink = Collect()
    stats = await run(Deep(start_urls=[server.url("/d0")]), sink, max_depth=2)

    assert sorted(fetched_paths(server)) == ["/d0", "/d1", "/d2"]
    assert sorted(item["depth"] for item in sink.items) == [0, 1, 2]
    assert stats.counts["depth_limit"] == 1


class FollowPages(Spider):
    """Follows every page link of a generated site, ``per_page`` items per page."""

    name = "follow"
    per_page = 1

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        for n in range(self.per_page):
            yield {"url": response.url, "n": n}
        for request in response.follow_all():
            if "/assets/" not in request.url:
                yield request


async def test_max_pages_fetches_exactly_that_many_pages() -> None:
    site = generate_site(pages=40, links_per_page=6, hosts=("127.0.0.1", "127.0.0.2"), seed=2)
    with serve_many(site) as servers:
        bound = servers.site
        assert bound is not None
        sink = Collect()
        stats = await run(FollowPages(start_urls=[bound.url()]), sink, concurrency=6, per_host=3, max_pages=7)
        requests = servers.stats().requests

    assert requests == 7
    assert stats.counts["pages"] == 7
    assert len({item["url"] for item in sink.items}) == 7
    assert stats.reason == "max_pages"


async def test_max_items_writes_exactly_that_many_items() -> None:
    site = generate_site(pages=30, links_per_page=6, seed=4)
    with serve_many(site) as servers:
        bound = servers.site
        assert bound is not None
        sink = Collect()
        spider = FollowPages(start_urls=[bound.url()], per_page=3)
        stats = await run(spider, sink, concurrency=4, max_items=5)

    assert len(sink.items) == 5
    assert stats.counts["items"] == 5
    assert stats.reason == "max_items"


# -- redirects -------------------------------------------------------------------------------------------------


async def test_redirects_are_followed_through_the_frontier(server_factory: Any) -> None:
    routes: dict[str, RouteValue] = {
        "/index": page("/r301", "/r302", "/t1"),
        "/r301": redirect(301, "/t1"),
        "/r302": redirect(302, "/t2"),
        "/form": redirect(303, "/t3"),
        "/t1": page(title="t1"),
        "/t2": page(title="t2"),
        "/t3": page(title="t3"),
    }
    server = server_factory(routes)

    class Redirected(Spider):
        name = "redirected"

        async def start(self) -> AsyncIterator[Any]:
            yield Request(url=server.url("/index"))
            yield Request(url=server.url("/form"), method="POST", body=b"q=1")

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"title": response.title, "url": response.url, "via": list(response.meta.get("redirect_urls", []))}
            for request in response.follow_all():
                yield request

    sink = Collect()
    stats = await run(Redirected(), sink)
    log = server.stats().log

    hits = {record.path: 0 for record in log}
    for record in log:
        hits[record.path] += 1
    assert hits == {"/index": 1, "/r301": 1, "/r302": 1, "/form": 1, "/t1": 1, "/t2": 1, "/t3": 1}
    by_title = {item["title"]: item for item in sink.items}
    assert by_title["t2"] == {"title": "t2", "url": server.url("/t2"), "via": [server.url("/r302")]}
    assert by_title["t3"] == {"title": "t3", "url": server.url("/t3"), "via": [server.url("/form")]}
    assert by_title["t1"]["url"] == server.url("/t1")
    assert len([item for item in sink.items if item["title"] == "t1"]) == 1
    # RFC 9110 §15.4.4: a 303 is followed with GET
    assert [record.method for record in log if record.path in ("/form", "/t3")] == ["POST", "GET"]
    assert stats.counts["redirects"] == 3


async def test_redirect_chain_records_every_hop(server_factory: Any) -> None:
    server = server_factory(
        {"/a": redirect(301, "/b"), "/b": redirect(302, "/c"), "/c": redirect(307, "/end"), "/end": page()}
    )

    class Chain(Spider):
        name = "chain"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url, "via": list(response.meta["redirect_urls"])}

    sink = Collect()
    await run(Chain(start_urls=[server.url("/a")]), sink)

    assert sink.items == [{"url": server.url("/end"), "via": [server.url(p) for p in ("/a", "/b", "/c")]}]


# -- the generic site crawl ------------------------------------------------------------------------------------


async def test_site_spider_records_html_pages_of_its_host_only() -> None:
    site = generate_site(pages=30, links_per_page=6, hosts=("127.0.0.1", "127.0.0.2"), asset_ratio=0.3, seed=9)
    with serve_many(site) as servers:
        bound = servers.site
        assert bound is not None
        sink = Collect()
        stats = await run(SiteSpider([bound.url()]), sink, concurrency=4)
        hits = servers.stats().hits_by_url()

    expected = bound.reachable_urls(hosts=[bound.hosts[0]])
    assert set(hits) == expected  # no asset, no page of the other host
    assert not any("/assets/" in url for url in hits)
    assert sorted(item["url"] for item in sink.items) == sorted(expected)
    assert stats.counts["skipped_assets"] > 0
    assert stats.counts["offsite"] > 0
    index = next(item for item in sink.items if item["url"] == bound.url())
    assert index["title"] == "Page 0: /index.html"
    assert index["depth"] == 0
    assert index["status"] == 200
    assert index["content_type"] == "text/html"
    assert index["links"] == len(bound.pages[bound.hosts[0]]["/index.html"].links) - 2  # minus mailto, javascript


async def test_site_spider_skips_assets_and_non_html(server_factory: Any) -> None:
    routes: dict[str, RouteValue] = {
        "/": page("/about", "/data", "/logo.PNG", "/style.css?v=2", "/doc.pdf", "/feed", title="Home"),
        "/about": page("/", title="About"),
        "/data": (200, {"Content-Type": "application/json"}, b'{"a": 1}'),
        "/feed": (200, {"Content-Type": "text/plain; charset=utf-8"}, b"plain"),
        "/logo.PNG": b"\x89PNG",
        "/style.css": b"body {}",
        "/doc.pdf": b"%PDF",
    }
    server = server_factory(routes)
    sink = Collect()
    stats = await run(SiteSpider([server.url("/")]), sink)

    assert sorted(fetched_paths(server)) == ["/", "/about", "/data", "/feed"]
    assert stats.counts["skipped_assets"] == 3
    assert stats.counts["skipped_content_type"] == 2
    records = {item["url"]: item for item in sink.items}
    assert set(records) == {server.url("/"), server.url("/about")}
    home = records[server.url("/")]
    assert set(home) == {"url", "status", "title", "depth", "content_type", "elapsed", "links"}
    assert home["title"] == "Home"
    assert home["links"] == 6
    assert home["depth"] == 0
    assert records[server.url("/about")]["depth"] == 1
    assert isinstance(home["elapsed"], float) and home["elapsed"] >= 0.0
