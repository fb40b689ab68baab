"""The testing kit for spiders: run_spider / arun_spider, FakeClock, the assertions over a server's statistics, and
the pytest plugin's fixtures, used from small test files run by ``pytester`` as a user's project runs them."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import Response, RetryPolicy, SettingsError, Spider, Stats, parse_retry_after
from crawler.testing import (
    FakeClock,
    LocalServer,
    RequestInfo,
    RequestRecord,
    ServerStatistics,
    arun_spider,
    assert_honoured_retry_after,
    assert_max_in_flight_per_host,
    generate_site,
    run_spider,
    serve_many,
)

pytest_plugins = ["pytester"]

BACKENDS = ("asyncio", "trio")


class Titles(Spider):
    """One item per page, ``{"path", "title"}``, following every link on the start URL's host."""

    name = "titles"
    custom_settings = {"crawl": {"per_host": 3, "delay": 0.0}, "retry": {"backoff_base": 0.01}}

    def __init__(self, start: str = "http://127.0.0.1:9/", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_urls = [start]  # type: ignore[misc]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"path": response.url.split("/", 3)[3], "title": response.title}
        for request in response.follow_all():
            if request.host == response.request.host:
                yield request


ROUTES = {
    "/": b"<title>Home</title><a href='/a'>a</a> <a href='/b'>b</a> <a href='/broken'>broken</a>",
    "/a": b"<title>A</title><a href='/'>home</a>",
    "/b": b"<title>B</title>",
    "/broken": (500, {"Content-Type": "text/plain"}, b"down"),
}


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ROUTES) as server:
        yield server


# -- run_spider / arun_spider -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_spider_returns_items_errors_and_stats_and_writes_nothing(
    server: LocalServer, backend: str, in_tmp: Path
) -> None:
    result = run_spider(Titles(server.url("/")), backend=backend, retry__max_attempts=2)  # type: ignore[arg-type]
    assert sorted(result.items, key=lambda item: item["path"]) == [
        {"path": "", "title": "Home"},
        {"path": "a", "title": "A"},
        {"path": "b", "title": "B"},
    ]
    assert len(result.errors) == 1
    error = result.errors[0]
    assert (error["url"], error["status"], error["attempts"], error["callback"]) == (
        server.url("/broken"),
        500,
        2,
        "parse",
    )
    assert result.stats["reason"] == "finished"
    assert (result.stats["pages"], result.stats["items"], result.stats["errors"]) == (3, 3, {"http_500": 1})
    assert result.stats["counts"]["retries"] == 1
    assert result.settings.crawl.backend == backend
    assert server.stats().hits_by_url()[server.url("/broken")] == 2
    assert list(in_tmp.iterdir()) == []  # no default SQLite file, no stats file


def test_settings_layers_custom_settings_then_settings_then_overrides(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, in_tmp: Path
) -> None:
    spider = Titles(server.url("/"))
    assert run_spider(spider).settings.crawl.per_host == 3  # the spider's custom_settings
    nested = run_spider(spider, settings={"crawl": {"per_host": 4, "max_pages": 2}})
    assert (nested.settings.crawl.per_host, nested.settings.crawl.max_pages) == (4, 2)
    assert nested.stats["pages"] == 2 and nested.stats["reason"] == "max_pages"
    dotted = run_spider(spider, settings={"crawl.per_host": 5, "retry.max_attempts": 1})
    assert (dotted.settings.crawl.per_host, dotted.settings.retry.max_attempts) == (5, 1)
    overridden = run_spider(
        spider,
        settings={"crawl": {"per_host": 4, "delay": 0.25}},
        per_host=6,  # a bare key naming one setting
        **{"crawl.timeout": 7, "retry__max_attempts": 1},  # dotted, and with __ for the dot
    )
    crawl = overridden.settings.crawl
    assert (crawl.per_host, crawl.delay, crawl.timeout, overridden.settings.retry.max_attempts) == (6, 0.25, 7.0, 1)

    # crawler.toml and CRAWLER_* do not leak into a test
    (in_tmp / "crawler.toml").write_text("[crawl]\nper_host = 7\n[output]\nuris = ['items.jsonl']\n")
    monkeypatch.setenv("CRAWLER_CRAWL_PER_HOST", "9")
    hermetic = run_spider(spider, max_pages=1)
    assert hermetic.settings.crawl.per_host == 3
    assert sorted(p.name for p in in_tmp.iterdir()) == ["crawler.toml"]


def test_bad_settings_name_the_key_and_the_layer(server: LocalServer) -> None:
    spider = Titles(server.url("/"))
    with pytest.raises(SettingsError, match=r"run_spider\(\*\*overrides\).*'max_page'.*did you mean 'max_pages'"):
        run_spider(spider, max_page=3)
    with pytest.raises(SettingsError, match=r"run_spider\(settings=\.\.\.\): crawl: 'per_host' must be >= 1"):
        run_spider(spider, settings={"crawl": {"per_host": 0}})
    with pytest.raises(ValueError, match="replay= or record=, not both"):
        run_spider(spider, replay="a", record="b")
    assert server.stats().requests == 0


def test_a_spider_class_is_made_without_arguments(server: LocalServer) -> None:
    class Home(Titles):
        start_urls = [server.url("/b")]

        def __init__(self) -> None:
            Spider.__init__(self)

    result = run_spider(Home)
    assert result.items == [{"path": "b", "title": "B"}] and result.stats["spider"] == "titles"


@pytest.mark.anyio
async def test_arun_spider_runs_in_the_running_loop(server: LocalServer, anyio_backend: str) -> None:
    result = await arun_spider(Titles(server.url("/a")), max_pages=2)
    assert result.settings.crawl.backend == anyio_backend
    assert sorted(item["title"] for item in result.items) == ["A", "Home"]


# -- FakeClock ---------------------------------------------------------------------------------------------------


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    assert clock() == clock.now == 1_700_000_000.0
    assert clock.advance(2.5) == 1_700_000_002.5 == clock()
    clock.now = 10.0
    assert clock() == 10.0 and repr(clock) == "FakeClock(now=10.0)"
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
    assert clock() == 10.0


def test_fake_clock_drives_policies() -> None:
    clock = FakeClock()
    date = formatdate(clock.now + 30, usegmt=True)  # Retry-After as an HTTP-date, 30 s ahead of the fake now
    assert parse_retry_after(date, clock()) == 30.0
    clock.advance(20)
    assert parse_retry_after(date, clock()) == 10.0
    policy = RetryPolicy(max_attempts=3, statuses=frozenset({503}), backoff_base=1.0, backoff_cap=4.0)
    import random

    not_before = policy.decide(
        attempt=0, idempotent=True, status=503, error=None, retry_after=10.0, now=clock(), rng=random.Random(0)
    )
    assert not_before == clock() + 10.0  # never earlier than Retry-After, counted from the fake now
    stats = Stats(clock=clock)
    stats.start()
    clock.advance(4)
    stats.finish("finished")
    assert stats.elapsed == 4.0


# -- assert_max_in_flight_per_host -------------------------------------------------------------------------------


def record(
    path: str, started: float, finished: float, *, host: str = "127.0.0.2:8000", status: int = 200
) -> RequestRecord:
    return RequestRecord(
        method="GET",
        host=host,
        path=path,
        target=path,
        headers={},
        client=("127.0.0.1", 50000),
        status=status,
        started=started,
        finished=finished,
    )


def statistics(*log: RequestRecord, max_in_flight: dict[str, int] | None = None) -> ServerStatistics:
    return ServerStatistics(
        requests=len(log),
        hits={},
        in_flight={},
        max_in_flight=max_in_flight or {},
        max_in_flight_total=max((max_in_flight or {0: 0}).values()),
        statuses={},
        log=log,
        errors=(),
    )


def test_in_flight_assertion_says_who_had_how_many_when() -> None:
    log = (
        record("/a", 100.0, 100.5),
        record("/b", 100.1, 100.4),
        record("/c", 100.2, 100.3),
        record("/d", 100.5, 100.6),  # starts as /a ends: never four
        record("/x", 100.0, 101.0, host="127.0.0.1:8000"),
    )
    stats = statistics(*log, max_in_flight={"127.0.0.2:8000": 3, "127.0.0.1:8000": 1})
    assert_max_in_flight_per_host(stats, 3)
    with pytest.raises(AssertionError) as failed:
        assert_max_in_flight_per_host(stats, 2)
    message = str(failed.value)
    assert message.startswith("127.0.0.2:8000 had 3 in flight at ")
    assert message.endswith(" (GET /a, GET /b, GET /c), limit 2")
    assert "127.0.0.1" not in message
    with pytest.raises(AssertionError) as failed:  # the requests at the peak, not the first two over the limit
        assert_max_in_flight_per_host(stats, 1)
    assert str(failed.value).startswith("127.0.0.2:8000 had 3 in flight at ")
    assert str(failed.value).endswith(" (GET /a, GET /b, GET /c), limit 1")
    with pytest.raises(AssertionError, match=r"127.0.0.2:8000 had 3 in flight, limit 1 \(the request log does not"):
        assert_max_in_flight_per_host(statistics(max_in_flight={"127.0.0.2:8000": 3}), 1)
    with pytest.raises(ValueError, match="limit must be a whole number >= 1"):
        assert_max_in_flight_per_host(stats, 0)


def test_in_flight_assertion_holds_for_a_polite_crawl_and_fails_for_a_greedy_one() -> None:
    site = generate_site(pages=30, links_per_page=6, hosts=("127.0.0.1", "127.0.0.2"), seed=5)
    with serve_many(site, latency=0.01) as servers:
        assert servers.site is not None
        run_spider(Titles(servers.site.url()), per_host=2, concurrency=8, obey_robots=False)
        stats = servers.stats()
    assert stats.requests > 20
    assert_max_in_flight_per_host(stats, 2)

    barrier = threading.Barrier(3, timeout=10)  # answers only once three requests are in flight together

    def wait_for_three(_: RequestInfo) -> bytes:
        barrier.wait()
        return b"<title>together</title>"

    routes = {
        "/": b"".join(b"<a href='/%d'>x</a>" % n for n in range(3)),
        **{f"/{n}": wait_for_three for n in range(3)},
    }
    with LocalServer(routes) as server:
        result = run_spider(Titles(server.url("/")), per_host=3, obey_robots=False)
        assert [item["title"] for item in result.items].count("together") == 3
        with pytest.raises(AssertionError, match=rf"^127\.0\.0\.1:{server.port} had 3 in flight at .*, limit 2$"):
            assert_max_in_flight_per_host(server.stats(), 2)


# -- assert_honoured_retry_after ---------------------------------------------------------------------------------


def busy_once(seconds: int) -> Any:
    """A route answering 503 with Retry-After the first time, then 200."""
    calls = iter(range(1_000_000))

    def answer(_: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        if next(calls) == 0:
            return 503, {"Retry-After": str(seconds), "Content-Type": "text/plain"}, b"busy"
        return 200, {"Content-Type": "text/html"}, b"<title>done</title>"

    return answer


@pytest.mark.parametrize("backend", BACKENDS)
def test_retry_after_assertion_holds_for_the_crawler(backend: str) -> None:
    with LocalServer({"/": b"<a href='/busy'>busy</a><title>Home</title>", "/busy": busy_once(1)}) as server:
        result = run_spider(Titles(server.url("/")), backend=backend, obey_robots=False)  # type: ignore[arg-type]
        stats = server.stats()
    assert sorted(item["title"] for item in result.items) == ["Home", "done"]
    assert_honoured_retry_after(stats, "/busy", 1)
    assert_honoured_retry_after(stats, server.url("/busy"), 1)
    with pytest.raises(AssertionError, match=r"came \d+\.\d+ s later"):
        assert_honoured_retry_after(stats, "/busy", 60)  # it did not wait a minute


def test_retry_after_assertion_fails_for_a_client_that_ignores_it() -> None:
    with LocalServer({"/busy": busy_once(2)}) as server:
        with httpx.Client() as client:
            assert client.get(server.url("/busy")).status_code == 503
            assert client.get(server.url("/busy")).status_code == 200  # at once, Retry-After or not
        stats = server.stats()
    with pytest.raises(AssertionError) as failed:
        assert_honoured_retry_after(stats, "/busy", 2)
    message = str(failed.value)
    assert message.startswith(f"GET 127.0.0.1:{server.port}/busy was answered 503 at ")
    assert "with Retry-After 2 s, and GET " in message and " s later, at " in message


def test_retry_after_assertion_needs_a_refusal_and_a_retry() -> None:
    ok = statistics(record("/x", 10.0, 10.1))
    with pytest.raises(
        AssertionError, match=r"no 429/503 answer to /x in the request log \(1 requests, statuses: 200\)"
    ):
        assert_honoured_retry_after(ok, "/x", 1)
    with pytest.raises(AssertionError, match=r"no 429/503 answer to /nowhere .*\(0 requests, statuses: none\)"):
        assert_honoured_retry_after(ok, "/nowhere", 1)
    given_up = statistics(record("/x", 10.0, 10.1, status=503))
    with pytest.raises(AssertionError, match=r"GET 127.0.0.2:8000/x was answered 503 at .* and never requested again"):
        assert_honoured_retry_after(given_up, "/x", 1)
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        assert_honoured_retry_after(given_up, "/x", -1)


def test_retry_after_assertion_host_wide_and_by_url() -> None:
    stats = statistics(
        record("/x", 10.0, 10.1, status=429),
        record("/other", 10.3, 10.4),  # same host, not waiting
        record("/x", 11.2, 11.3),
        record("/x", 10.2, 10.3, host="127.0.0.3:8000", status=429),  # another host, retried too soon
        record("/x", 10.4, 10.5, host="127.0.0.3:8000"),
    )
    assert_honoured_retry_after(stats, "http://127.0.0.2:8000/x", 1)
    with pytest.raises(AssertionError, match=r"127.0.0.3:8000/x was answered 429 .* GET 127.0.0.3:8000/x came 0.100 s"):
        assert_honoured_retry_after(stats, "/x", 1)
    with pytest.raises(AssertionError, match=r"and GET 127.0.0.2:8000/other came 0.200 s later"):
        assert_honoured_retry_after(stats, "http://127.0.0.2:8000/x", 1, host_wide=True)
    with pytest.raises(AssertionError, match="no 503 answer"):
        assert_honoured_retry_after(stats, "http://127.0.0.2:8000/x", 1, statuses=(503,))


# -- the pytest plugin, as a user's project uses it --------------------------------------------------------------

USER_CONFTEST = """
import pytest

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

USER_SPIDER = """
from crawler import Spider

class Titles(Spider):
    name = "titles"
    start_urls = [{start!r}]

    async def parse(self, response):
        yield {{"url": response.url, "title": response.title}}
        for request in response.follow_all():
            yield request
"""


def test_plugin_fixtures_in_a_users_project(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(USER_CONFTEST)  # the project's own anyio_backend: no clash with the plugin
    pytester.makepyfile(
        test_user="""
        import socket
        import pytest
        from crawler import Spider
        from crawler.testing import LocalServer, ServerGroup, FakeClock, assert_max_in_flight_per_host

        class Titles(Spider):
            name = "titles"
            def __init__(self, start):
                super().__init__()
                self.start_urls = [start]
            async def parse(self, response):
                yield {"title": response.title, "host": response.request.host}
                for request in response.follow_all():
                    yield request

        ROUTES = {"/": b"<title>Home</title><a href='/a'>a</a>", "/a": b"<title>A</title>"}
        SEEN = []

        def test_sync(serve, crawl):
            server = serve(ROUTES)
            assert isinstance(server, LocalServer)
            result = crawl(Titles(server.url("/")), max_pages=5)
            assert sorted(item["title"] for item in result.items) == ["A", "Home"]
            assert result.settings.crawl.backend == "asyncio"
            assert_max_in_flight_per_host(server.stats(), 2)
            SEEN.append(server.port)

        def test_servers_were_stopped():
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", SEEN[0]), timeout=2).close()

        def test_sync_on_each_backend(serve, crawl, anyio_backend):
            server = serve(ROUTES)
            assert crawl(Titles(server.url("/"))).settings.crawl.backend == anyio_backend

        @pytest.mark.anyio
        async def test_async(serve, crawl, anyio_backend):
            group = serve(ROUTES, hosts=("127.0.0.1", "127.0.0.2"))
            assert isinstance(group, ServerGroup)
            result = await crawl(Titles(group.url("/", host="127.0.0.2")))
            assert {item["host"] for item in result.items} == {f"127.0.0.2:{group.port}"}
            assert result.settings.crawl.backend == anyio_backend
            assert set(group.stats().hits) == {f"127.0.0.2:{group.port}"}

        def test_folder_and_site(serve, crawl, tmp_path):
            from crawler.testing import generate_site
            (tmp_path / "index.html").write_bytes(b"<title>Folder</title>")
            assert crawl(Titles(serve(tmp_path).url("/"))).items[0]["title"] == "Folder"
            site = generate_site(pages=5, hosts=("127.0.0.1", "127.0.0.2"))
            group = serve(site)
            assert isinstance(group, ServerGroup) and len(group.hosts) == 2

        def test_fake_clock(fake_clock):
            assert isinstance(fake_clock, FakeClock) and fake_clock() == 1_700_000_000.0
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=8)


def test_plugin_works_without_the_anyio_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        def test_plain(serve, crawl):
            from crawler import Spider
            class One(Spider):
                name = "one"
                async def parse(self, response):
                    yield {"status": response.status}
            spider = One()
            spider.start_urls = [serve({"/": b"hi"}).url("/")]
            assert crawl(spider).items == [{"status": 200}]
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:anyio")
    result.assert_outcomes(passed=1)


def test_a_missing_cassette_fails_saying_how_to_record_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_offline="""
        import pytest

        def test_replayed(crawl, cassette):
            raise AssertionError("never reached")

        @pytest.mark.cassette("shared")
        def test_named(cassette):
            raise AssertionError("never reached")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(errors=2)
    folder = pytester.path / "cassettes"
    result.stdout.fnmatch_lines(
        [
            f"*no cassette for test_offline.py::test_replayed at {folder / 'test_replayed'}: record it once, "
            "against the real target, with*",
            "*pytest --record-cassettes test_offline.py::test_replayed*",
            f"*no cassette for test_offline.py::test_named at {folder / 'shared'}*",
        ]
    )
    assert "never reached" not in result.stdout.str()
    assert not folder.exists()


def test_record_cassettes_option_is_offered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--record-cassettes*"])


def test_a_cassette_is_recorded_once_then_replayed_offline(pytester: pytest.Pytester) -> None:
    with LocalServer(ROUTES) as server:
        pytester.makeconftest(USER_CONFTEST)
        pytester.makepyfile(spider=USER_SPIDER.format(start=server.url("/")))
        pytester.makepyfile(
            test_recorded="""
            import pytest
            from spider import Titles

            EXPECTED = ["A", "B", "Home"]

            def test_titles(crawl, cassette, anyio_backend):
                result = crawl(Titles(), retry__max_attempts=1)
                assert sorted(item["title"] for item in result.items) == EXPECTED
                assert [error["status"] for error in result.errors] == [500]

            @pytest.mark.anyio
            async def test_titles_async(crawl, cassette):
                result = await crawl(Titles(), retry__max_attempts=1)
                assert sorted(item["title"] for item in result.items) == EXPECTED
            """
        )
        recorded = pytester.runpytest("-p", "no:cacheprovider", "--record-cassettes")
        recorded.assert_outcomes(passed=4)
        hits = server.stats().hits_by_url()
    # test_titles[asyncio] and test_titles_async[asyncio] recorded; their trio runs replayed what was recorded
    assert hits == {server.url(p): 2 for p in ("/robots.txt", "/", "/a", "/b", "/broken")}
    cassettes = pytester.path / "cassettes"
    assert sorted(p.name for p in cassettes.iterdir()) == ["test_titles", "test_titles_async"]
    assert all(any(folder.iterdir()) for folder in cassettes.iterdir())

    saved = {path: path.read_bytes() for path in cassettes.rglob("*") if path.is_file()}

    offline = pytester.runpytest("-p", "no:cacheprovider")  # the server is gone: answers come from the cassettes
    offline.assert_outcomes(passed=4)
    rerecord = pytester.runpytest("-p", "no:cacheprovider", "--record-cassettes", "-k", "test_titles_async")
    rerecord.assert_outcomes(failed=2, deselected=2)  # recording needs the real target, which is down
    assert {path: path.read_bytes() for path in cassettes.rglob("*") if path.is_file()} == saved  # kept
    assert sorted(p.name for p in cassettes.iterdir()) == ["test_titles", "test_titles_async"]
