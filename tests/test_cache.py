"""The HTTP cache (``crawl.cache``, ``--cache DIR``): RFC 9111 storage and revalidation over real servers on
127.0.0.1, on asyncio and trio, with each network transport."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import (
    CacheTransport,
    CrawlerError,
    Engine,
    Request,
    Response,
    Spider,
    load_settings,
    network_exchange,
)
from crawler._cache import CACHE_FILE
from crawler._engine import default_transport
from crawler.testing import LocalServer, Reply, RequestInfo, arun_spider

pytestmark = pytest.mark.anyio

ROBOTS = b"User-agent: *\nAllow: /\n"


class Pages(Spider):
    """Follows every link from ``start``; one item per page: URL, status and a digest of the body."""

    name = "pages"

    def __init__(self, start: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.start_urls = [start]  # type: ignore[misc]
        self.headers = dict(headers or {})

    async def start(self) -> AsyncIterator[Request]:
        for url in self.start_urls:
            yield Request(url=url, headers=self.headers)

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url, "status": response.status, "sha256": hashlib.sha256(response.body).hexdigest()}
        for request in response.follow_all():
            yield request.replace(headers=self.headers)


def write_site(root: Path, pages: int, modified: float | None = None) -> dict[str, bytes]:
    """``index.html`` linking to ``p0.html`` ... and a robots.txt, written to ``root``: {path: body}.

    The files' mtime, served as Last-Modified, is ``modified`` (seconds since the epoch), by default a day ahead:
    then no heuristic freshness applies (RFC 9111 §4.2.2), so every stored page is stale and is revalidated, however
    long the crawls take."""
    root.mkdir()
    files = {f"/p{i}.html": f"<title>page {i}</title><a href='index.html'>home</a>".encode() for i in range(pages)}
    files["/index.html"] = "".join(f"<a href='p{i}.html'>{i}</a>" for i in range(pages)).encode()
    files["/robots.txt"] = ROBOTS
    mtime = time.time() + 86400 if modified is None else modified
    for path, body in files.items():
        (root / path.lstrip("/")).write_bytes(body)
        os.utime(root / path.lstrip("/"), (mtime, mtime))
    return files


def crawl_settings(cache: Path, transport: str, **more: Any) -> dict[str, Any]:
    return {"crawl.cache": str(cache), "crawl.transport": transport, **more}


def by_url(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["url"]: item for item in items}


async def test_recrawl_of_unchanged_site_transfers_only_304s(tmp_path: Path, transport_name: str) -> None:
    files = write_site(tmp_path / "site", pages=30)
    settings = crawl_settings(tmp_path / "cache", transport_name, **{"crawl.concurrency": 8, "crawl.per_host": 8})
    with LocalServer(tmp_path / "site") as server:
        first = await arun_spider(Pages(server.url("/index.html")), settings=settings)
        served_first = server.stats()
        server.reset()
        second = await arun_spider(Pages(server.url("/index.html")), settings=settings)
        served_second = server.stats()

    assert not first.errors and not second.errors
    assert served_first.statuses == {200: len(files)}
    assert served_second.statuses == {304: len(files)}  # robots.txt and every page: nothing but 304s
    assert all("if-none-match" in r.headers and "if-modified-since" in r.headers for r in served_second.log)
    assert len(first.items) == len(files) - 1
    assert by_url(second.items) == by_url(first.items)  # status 200 and the stored body, as on the first crawl
    assert first.stats["counts"]["cache_stored"] == first.stats["counts"]["cache_misses"] == len(files)
    counts = second.stats["counts"]
    assert counts["cache_revalidated"] == len(files)
    assert "cache_hits" not in counts and "cache_misses" not in counts
    assert counts["cache_bytes_saved"] == sum(len(body) for body in files.values())
    assert (tmp_path / "cache" / CACHE_FILE).is_file()


async def test_heuristic_freshness_from_last_modified_needs_no_request(tmp_path: Path, transport_name: str) -> None:
    """Pages last modified 30 days ago, with no Cache-Control or Expires: fresh for a tenth of that, 3 days."""
    files = write_site(tmp_path / "site", pages=3, modified=time.time() - 30 * 86400)
    settings = crawl_settings(tmp_path / "cache", transport_name)
    with LocalServer(tmp_path / "site") as server:
        first = await arun_spider(Pages(server.url("/index.html")), settings=settings)
        server.reset()
        second = await arun_spider(Pages(server.url("/index.html")), settings=settings)
        assert server.stats().requests == 0

    assert by_url(second.items) == by_url(first.items)
    assert second.stats["counts"]["cache_hits"] == len(files)


def fixed(body: bytes, **headers: str) -> Reply:
    return 200, {"Content-Type": "text/html", **{k.replace("_", "-"): v for k, v in headers.items()}}, body


async def test_fresh_responses_are_served_with_no_request(tmp_path: Path, transport_name: str) -> None:
    routes = {
        "/": fixed(b"<a href='/b'>b</a>", Cache_Control="max-age=3600"),
        "/b": fixed(b"<title>b</title>", Expires="Thu, 01 Jan 2099 00:00:00 GMT"),
        "/robots.txt": (200, {"Content-Type": "text/plain", "Cache-Control": "max-age=3600"}, ROBOTS),
    }
    settings = crawl_settings(tmp_path / "cache", transport_name)
    with LocalServer(routes) as server:
        first = await arun_spider(Pages(server.url("/")), settings=settings)
        server.reset()
        second = await arun_spider(Pages(server.url("/")), settings=settings)
        served = server.stats()

    assert served.requests == 0
    assert by_url(second.items) == by_url(first.items) and len(first.items) == 2
    assert second.stats["counts"]["cache_hits"] == 3  # the requests saved
    assert second.stats["counts"]["cache_bytes_saved"] == sum(len(reply[2]) for reply in routes.values())
    assert second.stats["statuses"] == {"200": 2}  # the pages (robots.txt is not counted there)


def validated(body: Callable[[], bytes], etag: Callable[[], str], **headers: str) -> Callable[[RequestInfo], Reply]:
    """A route with an ETag that answers a matching If-None-Match with 304."""

    def route(request: RequestInfo) -> Reply:
        tag = etag()
        extra = {k.replace("_", "-"): v for k, v in headers.items()}
        if request.headers.get("if-none-match") == tag:
            return 304, {"ETag": tag, **extra}, b""
        return 200, {"Content-Type": "text/html", "ETag": tag, **extra}, body()

    return route


async def test_no_store_responses_are_not_stored(tmp_path: Path, transport_name: str) -> None:
    routes = {"/": validated(lambda: b"<title>secret</title>", lambda: '"v1"', Cache_Control="no-store")}
    settings = crawl_settings(tmp_path / "cache", transport_name, **{"crawl.obey_robots": False})
    with LocalServer(routes) as server:
        first = await arun_spider(Pages(server.url("/")), settings=settings)
        second = await arun_spider(Pages(server.url("/")), settings=settings)
        served = server.stats()

    assert served.statuses == {200: 2}
    assert not any("if-none-match" in r.headers for r in served.log)  # nothing stored to revalidate
    assert "cache_stored" not in first.stats["counts"]
    assert second.stats["counts"]["cache_misses"] == 1 and "cache_revalidated" not in second.stats["counts"]


async def test_a_changed_page_is_fetched_again_and_replaces_the_stored_one(tmp_path: Path, transport_name: str) -> None:
    version = ["1"]
    routes = {"/": validated(lambda: f"<title>v{version[0]}</title>".encode(), lambda: f'"v{version[0]}"')}
    settings = crawl_settings(tmp_path / "cache", transport_name, **{"crawl.obey_robots": False})
    with LocalServer(routes) as server:
        first = await arun_spider(Pages(server.url("/")), settings=settings)
        version[0] = "2"
        second = await arun_spider(Pages(server.url("/")), settings=settings)
        third = await arun_spider(Pages(server.url("/")), settings=settings)
        served = server.stats()

    assert [r.status for r in served.log] == [200, 200, 304]
    assert [r.headers.get("if-none-match") for r in served.log] == [None, '"v1"', '"v2"']
    assert second.items[0]["sha256"] == hashlib.sha256(b"<title>v2</title>").hexdigest() != first.items[0]["sha256"]
    assert third.items == second.items
    assert third.stats["counts"]["cache_revalidated"] == 1


async def test_credentials_are_cached_only_when_the_response_allows_a_shared_cache(
    tmp_path: Path, transport_name: str
) -> None:
    token = "Bearer s3cr3t-t0ken-value"
    routes = {
        "/": fixed(b"<a href='/public'>p</a>", Cache_Control="max-age=3600"),  # RFC 9111 §3.5: not shareable
        "/public": fixed(b"<title>public</title>", Cache_Control="public, max-age=3600"),
    }
    settings = crawl_settings(tmp_path / "cache", transport_name, **{"crawl.obey_robots": False})
    with LocalServer(routes) as server:
        await arun_spider(Pages(server.url("/"), headers={"Authorization": token}), settings=settings)
        server.reset()
        second = await arun_spider(Pages(server.url("/"), headers={"Authorization": token}), settings=settings)
        served = server.stats()

    assert served.hits_by_url() == {server.url("/"): 1}  # /public came from the cache, / did not
    assert second.stats["counts"]["cache_hits"] == 1
    stored = b"".join(p.read_bytes() for p in (tmp_path / "cache").iterdir() if p.is_file())
    assert b"s3cr3t" not in stored  # the stored request holds a digest of the credential, never its value


async def test_network_exchange_is_the_304_behind_a_revalidated_response(tmp_path: Path, transport_name: str) -> None:
    routes = {
        "/stale": validated(lambda: b"body", lambda: '"x"', Cache_Control="no-cache", X_Seen="yes"),
        "/fresh": fixed(b"fresh", Cache_Control="max-age=3600"),
    }
    with LocalServer(routes) as server:
        for attempt in range(2):
            transport = default_transport(load_settings(cli=crawl_settings(tmp_path / "cache", transport_name)))
            assert isinstance(transport, CacheTransport)
            try:
                stale = await transport.fetch(Request(url=server.url("/stale")))
                fresh = await transport.fetch(Request(url=server.url("/fresh")))
            finally:
                await transport.aclose()
            if attempt == 0:  # from the network: the response is its own exchange
                assert network_exchange(stale) is stale and network_exchange(fresh) is fresh
    exchange = network_exchange(stale)
    assert exchange is not None and exchange.status == 304 and exchange.body == b""
    assert (stale.status, stale.body, stale.headers["x-seen"]) == (200, b"body", "yes")
    assert network_exchange(fresh) is None  # answered from the cache: no exchange at all
    assert (fresh.status, fresh.body) == (200, b"fresh")


def test_a_cache_directory_that_cannot_be_created_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(CrawlerError, match="HTTP cache directory"):
        default_transport(load_settings(cli={"crawl.cache": str(tmp_path / "file" / "cache")}))


def test_a_cache_file_that_is_not_a_database_is_an_error(tmp_path: Path) -> None:
    (tmp_path / CACHE_FILE).write_bytes(b"not a database" * 100)
    with pytest.raises(CrawlerError, match="is not an HTTP cache"):
        default_transport(load_settings(cli={"crawl.cache": str(tmp_path)}))


async def test_a_database_hishel_cannot_use_switches_the_cache_off(tmp_path: Path, transport_name: str) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / CACHE_FILE)) as connection:
        connection.execute("CREATE TABLE entries (something_else TEXT)")
    settings = crawl_settings(tmp_path, transport_name, **{"crawl.obey_robots": False})
    with LocalServer({"/": fixed(b"page", Cache_Control="max-age=3600")}) as server:
        first = await arun_spider(Pages(server.url("/")), settings=settings)
        second = await arun_spider(Pages(server.url("/")), settings=settings)
        assert server.stats().requests == 2  # nothing stored: both from the network

    assert first.items == second.items and not first.errors
    assert "cache_stored" not in first.stats["counts"]


def test_cli_recrawl_with_cache_reports_the_savings(tmp_path: Path) -> None:
    files = write_site(tmp_path / "site", pages=5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}

    def crawl(n: int) -> dict[str, Any]:
        stats = tmp_path / f"stats{n}.json"
        done = subprocess.run(
            [
                *(sys.executable, "-m", "crawler", "crawl", server.url("/index.html")),
                *("--cache", str(tmp_path / "cache"), "-o", str(tmp_path / f"items{n}.jsonl")),
                *("--stats-file", str(stats), "--no-progress"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "http cache" in done.stderr
        result: dict[str, Any] = json.loads(stats.read_text())
        return result

    with LocalServer(tmp_path / "site") as server:
        crawl(1)
        server.reset()
        stats = crawl(2)  # another process: the cache is on disk
        assert server.stats().statuses == {304: len(files)}

    assert stats["counts"]["cache_revalidated"] == len(files)
    assert stats["counts"]["cache_bytes_saved"] == sum(len(body) for body in files.values())
    items = [(tmp_path / f"items{n}.jsonl").read_text().splitlines() for n in (1, 2)]
    assert len(items[1]) == len(items[0]) == len(files) - 1


def test_local_server_files_answer_conditional_requests_with_304(tmp_path: Path) -> None:
    write_site(tmp_path / "site", pages=1)
    with LocalServer(tmp_path / "site") as server, httpx.Client() as client:
        first = client.get(server.url("/p0.html"))
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        by_etag = client.get(server.url("/p0.html"), headers={"If-None-Match": f'W/"x", {etag}'})
        by_date = client.get(server.url("/p0.html"), headers={"If-Modified-Since": modified})
        other = client.get(server.url("/p0.html"), headers={"If-None-Match": '"x"', "If-Modified-Since": modified})
    assert first.status_code == 200 and first.content
    assert (by_etag.status_code, by_etag.headers["etag"], by_etag.content) == (304, etag, b"")
    assert by_date.status_code == 304
    assert other.status_code == 200  # If-None-Match decides when present (RFC 9110 §13.1.3)


class _Memory:
    uri = "memory:"

    def __init__(self) -> None:
        self.records: list[Any] = []

    async def open(self) -> None:
        return None

    async def write(self, batch: Any) -> None:
        self.records.extend(batch)

    async def close(self) -> None:
        return None


async def test_politeness_sees_the_network_not_the_cache(tmp_path: Path, transport_name: str) -> None:
    """A cache hit does not feed the host policy (its stored rate-limit headers are old news); a 304 does."""
    limits = {"RateLimit-Limit": "10", "RateLimit-Reset": "60"}
    routes = {
        "/fresh": fixed(b"fresh", Cache_Control="max-age=3600", RateLimit_Remaining="7", **limits),
        "/stale": validated(
            lambda: b"stale", lambda: '"s"', Cache_Control="no-cache", RateLimit_Remaining="3", **limits
        ),
    }
    settings = load_settings(
        environ={},
        config_dir=False,
        cli=crawl_settings(tmp_path / "cache", transport_name, **{"crawl.obey_robots": False}),
    )

    async def policy_after_crawl(path: str) -> dict[str, Any]:
        engine = Engine(Pages(server.url(path)), settings, sinks=[_Memory()], error_sinks=[_Memory()])
        await engine.run()
        return dict(engine.politeness.get(Request(url=server.url(path)).host).snapshot())

    with LocalServer(routes) as server:
        assert (await policy_after_crawl("/fresh"))["remaining"] == 7  # from the network
        assert "remaining" not in await policy_after_crawl("/fresh")  # from the cache: no exchange to learn from
        await policy_after_crawl("/stale")
        assert (await policy_after_crawl("/stale"))["remaining"] == 3  # the 304's headers
        assert [r.status for r in server.stats().log] == [200, 200, 304]
