"""What only the persistent frontier does (the shared contract is in test_frontier.py): state that survives a
close and a ``kill -9``, one process at a time, a bounded memory buffer per host, requests stored as JSON
(:func:`request_to_dict`), unreadable rows, :func:`open_frontier` dispatch, and a crawl resumed by the engine."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

import crawler._frontier
from crawler import (
    Engine,
    FrontierError,
    FrontierStatistics,
    MemoryFrontier,
    Politeness,
    Request,
    Response,
    Spider,
    SqliteFrontier,
    load_settings,
    open_frontier,
    request_from_dict,
    request_to_dict,
)
from crawler._sqlite_frontier import BUFFER
from crawler.testing import LocalServer, generate_site

pytestmark = pytest.mark.anyio

T0 = 1_000_000.0  # a fake "now", seconds since the epoch


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "frontier.db"


@pytest.fixture
async def opened() -> AsyncIterator[Any]:
    """``await opened(path, per_host=...)`` gives an opened SqliteFrontier, closed at the end of the test."""
    made: list[SqliteFrontier] = []

    async def make(path: Path, per_host: int = 100) -> SqliteFrontier:
        front = SqliteFrontier(f"sqlite:///{path}", Politeness(per_host=per_host, jitter=0.0))
        await front.open()
        made.append(front)
        return front

    try:
        yield make
    finally:
        for front in made:
            await front.close()


async def drain(front: SqliteFrontier, now: float = T0) -> list[Request]:
    """Claim, complete and finish until nothing is claimable at ``now``; return the requests in claim order."""
    got = []
    while (request := await front.claim(now)) is not None:
        got.append(request)
        await front.complete(request, now)
        await front.finish(request)
    return got


def queued_rows(path: Path) -> list[tuple[str, int]]:
    """(url, state) of every row of the requests table, read with sqlite3 directly."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT data, state FROM requests ORDER BY id").fetchall()
    return [(json.loads(data)["url"], state) for data, state in rows]


# -- surviving a close -----------------------------------------------------------------------------------------


async def test_reopen_keeps_queue_delays_priorities_and_seen(db: Path, opened: Any) -> None:
    front = await opened(db, per_host=1)
    await front.add(
        [
            Request(url="http://a.test/low", priority=-1),
            Request(url="http://a.test/high", priority=5),
            Request(url="http://a.test/mid", priority=2),
            Request(url="http://b.test/done"),
            Request(url="http://c.test/later", not_before=T0 + 50.0),
        ]
    )
    leased = await front.claim(T0)  # claimed, fetched, never finished: the process stops
    done = await front.claim(T0)
    assert leased is not None and leased.url == "http://a.test/high"
    assert done is not None and done.url == "http://b.test/done"
    await front.complete(leased, T0)
    await front.complete(done, T0)
    await front.finish(done)
    await front.close()

    again = await opened(db, per_host=1)
    assert again.statistics() == FrontierStatistics(queued=4, delayed=1, in_flight=0, seen=5, hosts=1)
    assert not await again.exhausted()
    # the seen set survived: neither a queued, nor a finished, nor a delayed request is queued twice
    urls = ["http://a.test/low", "http://b.test/done", "http://c.test/later", "http://a.test/high"]
    assert await again.add([Request(url=url) for url in urls]) == 0

    order = [r.url for r in await drain(again, T0)]
    assert order == ["http://a.test/high", "http://a.test/mid", "http://a.test/low"]  # the lease came back first
    assert await again.next_wakeup(T0) == T0 + 50.0  # not_before survived
    assert await again.claim(T0 + 49.0) is None
    later = await again.claim(T0 + 50.0)
    assert later is not None and later.url == "http://c.test/later" and later.not_before == T0 + 50.0
    await again.complete(later, T0 + 50.0)
    await again.finish(later)
    assert await again.exhausted()
    await again.close()

    empty = await opened(db)
    assert empty.statistics() == FrontierStatistics(queued=0, delayed=0, in_flight=0, seen=5, hosts=0)
    assert await empty.exhausted()
    assert queued_rows(db) == []


async def test_reopen_keeps_a_delayed_retry(db: Path, opened: Any) -> None:
    front = await opened(db)
    await front.add([Request(url="http://a.test/x")])
    request = await front.claim(T0)
    assert request is not None
    await front.complete(request, T0)
    await front.finish(request, request.replace(attempt=2, not_before=T0 + 30.0))
    await front.close()

    again = await opened(db)
    assert again.statistics() == FrontierStatistics(queued=1, delayed=1, in_flight=0, seen=1, hosts=0)
    assert await again.next_wakeup(T0) == T0 + 30.0
    retry = await again.claim(T0 + 30.0)
    assert retry is not None and retry.attempt == 2


async def test_lease_of_a_stopped_process_comes_back_once(db: Path, opened: Any) -> None:
    front = await opened(db)
    await front.add([Request(url=f"http://a.test/{i}") for i in range(3)])
    claimed = [await front.claim(T0) for _ in range(3)]
    assert all(r is not None for r in claimed)
    await front.close()  # nothing finished

    again = await opened(db)
    assert again.statistics().queued == 3
    assert sorted(r.url for r in await drain(again)) == [f"http://a.test/{i}" for i in range(3)]
    assert await again.exhausted()


# -- surviving kill -9 -----------------------------------------------------------------------------------------

CRASH = """
import os, signal, sys
import anyio
from crawler import Politeness, Request, SqliteFrontier

async def main(uri):
    front = SqliteFrontier(uri, Politeness(per_host=100))
    await front.open()
    await front.add([Request(url=f"http://a.test/{i}") for i in range(10)])
    await front.add([Request(url="http://b.test/later", not_before=2_000_000.0)])
    claimed = [await front.claim(1_000_000.0) for _ in range(10)]
    for request in claimed[:4]:  # these produce a child each and are finished
        await front.complete(request, 1_000_000.0)
        await front.add([Request(url=request.url + "/child")])
        await front.finish(request)
    await front.complete(claimed[4], 1_000_000.0)  # fetched, not finished
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

anyio.run(main, sys.argv[1])
"""


async def test_kill_9_loses_nothing_and_repeats_nothing_finished(db: Path, opened: Any) -> None:
    db.parent.mkdir(parents=True)
    result = await anyio.run_process([sys.executable, "-c", CRASH, f"sqlite:///{db}"], check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    assert result.stdout == b"ready\n"

    front = await opened(db)
    unfinished = {f"http://a.test/{i}" for i in range(4, 10)}
    children = {f"http://a.test/{i}/child" for i in range(4)}
    stats = front.statistics()
    assert stats == FrontierStatistics(queued=len(unfinished | children) + 1, delayed=1, in_flight=0, seen=15, hosts=1)
    assert {r.url for r in await drain(front)} == unfinished | children
    later = await front.claim(2_000_000.0)
    assert later is not None and later.url == "http://b.test/later"
    # the finished ones are gone for good: not queued, and still known as seen
    assert await front.add([Request(url=f"http://a.test/{i}") for i in range(4)]) == 0


# -- one process at a time -------------------------------------------------------------------------------------


async def test_a_second_frontier_on_the_same_file_is_refused(db: Path, opened: Any) -> None:
    first = await opened(db)
    await first.add([Request(url="http://a.test/x")])
    uri = f"sqlite:///{db}"
    for spelling in (uri, str(db)):
        second = SqliteFrontier(spelling, Politeness())
        with pytest.raises(FrontierError, match="in use by another crawl") as caught:
            await second.open()
        assert spelling in str(caught.value)
    assert await first.claim(T0) is not None  # the first is unharmed
    await first.close()

    second = await opened(db)
    assert second.statistics().queued == 1


async def test_open_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are not the rows you are looking for\n" * 100)
    front = SqliteFrontier(str(path), Politeness())
    with pytest.raises(FrontierError, match=r"notes\.db"):
        await front.open()
    await front.close()
    again = SqliteFrontier(str(path), Politeness())  # the failed open released the lock
    with pytest.raises(FrontierError, match="cannot open"):
        await again.open()


# -- the memory buffer and the order it allows -----------------------------------------------------------------
#
# The order guarantee of one host's queue in the SQLite frontier, as these tests check it:
#
# - requests of equal priority are claimed in arrival order;
# - a request is never overtaken by a request of lower priority that arrived after it;
# - it may be overtaken by requests of lower priority that arrived before it: only by those already in the
#   memory buffer when it arrived, so by at most BUFFER of them.
#
# In particular, with everything added before the first claim, the first BUFFER requests added are claimed first
# (by priority, then arrival, among themselves), then all the others by priority, then arrival.  The in-memory
# frontier has no such window: it is exact.


def heap_size(front: SqliteFrontier, host: str) -> int:
    queue = front._hosts.get(host)
    return 0 if queue is None else len(queue.heap)


async def test_buffer_bounds_memory_and_order_after_it_is_exact(db: Path, opened: Any) -> None:
    front = await opened(db, per_host=1)
    rng = random.Random(11)
    priorities = [rng.randint(-3, 3) for _ in range(5000)]
    for i, priority in enumerate(priorities):
        await front.add([Request(url=f"http://a.test/{i}", priority=priority)])
        assert heap_size(front, "a.test") <= BUFFER
    assert front.statistics().queued == 5000

    order = []
    while (request := await front.claim(T0)) is not None:
        assert heap_size(front, "a.test") <= BUFFER
        order.append(int(request.url.rsplit("/", 1)[1]))
        await front.complete(request, T0)

    def best_first(indices: range) -> list[int]:
        return sorted(indices, key=lambda i: (-priorities[i], i))

    assert order == best_first(range(BUFFER)) + best_first(range(BUFFER, 5000))
    assert front.statistics().queued == 0


async def test_buffer_order_with_adds_and_claims_interleaved(db: Path, opened: Any) -> None:
    front = await opened(db, per_host=1)
    rng = random.Random(5)
    priority: dict[int, int] = {}
    pending: set[int] = set()
    overtaken: dict[int, int] = {}  # request -> lower-priority requests claimed while it waited
    claimed: list[int] = []
    next_index = 0
    while next_index < 1500 or pending:
        if next_index < 1500 and rng.random() < 0.5:
            for _ in range(min(rng.randint(1, 60), 1500 - next_index)):
                priority[next_index] = rng.randint(-2, 2)
                await front.add([Request(url=f"http://a.test/{next_index}", priority=priority[next_index])])
                pending.add(next_index)
                overtaken[next_index] = 0
                next_index += 1
                assert heap_size(front, "a.test") <= BUFFER
        for _ in range(rng.randint(1, 60)):
            request = await front.claim(T0)
            if request is None:
                break
            assert heap_size(front, "a.test") <= BUFFER
            await front.complete(request, T0)
            got = int(request.url.rsplit("/", 1)[1])
            pending.remove(got)
            claimed.append(got)
            for waiting in pending:
                assert (priority[waiting], -waiting) <= (priority[got], -got) or waiting > got, (
                    f"{got} overtook {waiting}, a better request that arrived before it"
                )
                if priority[waiting] > priority[got]:
                    overtaken[waiting] += 1
    assert sorted(claimed) == list(range(1500))
    assert max(overtaken.values()) <= BUFFER
    for p in range(-2, 3):  # equal priorities: arrival order
        same = [i for i in claimed if priority[i] == p]
        assert same == sorted(same)


# -- requests stored as JSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["meta", "cb_kwargs"])
async def test_a_request_that_is_not_json_is_refused_whole(db: Path, opened: Any, field: str) -> None:
    front = await opened(db)
    await front.add([Request(url="http://a.test/ok")])
    before = front.statistics()
    bad = Request(url="http://a.test/bad", **{field: {"when": object()}})  # type: ignore[arg-type]
    with pytest.raises(FrontierError, match=field) as caught:
        await front.add([bad])
    assert "http://a.test/bad" in str(caught.value)
    assert front.statistics() == before
    # not half-stored: its fingerprint is not marked seen, so a storable version is queued
    assert await front.add([Request(url="http://a.test/bad", **{field: {"when": "now"}})]) == 1  # type: ignore[arg-type]
    await front.close()

    again = await opened(db)
    assert sorted(r.url for r in await drain(again)) == ["http://a.test/bad", "http://a.test/ok"]


async def test_a_batch_with_a_request_that_is_not_json_leaves_the_frontier_consistent(db: Path, opened: Any) -> None:
    front = await opened(db)
    batch = [Request(url="http://a.test/0"), Request(url="http://a.test/1", meta={"x": {1, 2}})]
    with pytest.raises(FrontierError, match="meta"):
        await front.add([*batch, Request(url="http://a.test/2")])
    # what was queued before the bad request is queued for good, and counted; nothing after it is
    queued = front.statistics().queued
    assert front.statistics().seen == queued
    assert len(await drain(front)) == queued
    await front.close()
    again = await opened(db)
    assert again.statistics().queued == 0 and await again.exhausted()


async def test_a_lone_surrogate_in_meta_is_stored_or_refused(db: Path, opened: Any) -> None:
    front = await opened(db)
    # json.loads accepts "\\ud83d" (half an emoji, as a truncating API may send it), so meta can hold one
    meta = json.loads('{"cursor": "abc\\ud83d"}')
    try:
        added = await front.add([Request(url="http://a.test/x", meta=meta)])
    except FrontierError:
        added = 0
    if added:
        claimed = await front.claim(T0)
        assert claimed is not None and claimed.meta == meta
    else:  # refused whole: the frontier knows nothing of it
        assert front.statistics() == FrontierStatistics(queued=0, delayed=0, in_flight=0, seen=0, hosts=0)
        assert await front.exhausted()


async def test_finish_with_a_retry_that_is_not_json_keeps_the_lease(db: Path, opened: Any) -> None:
    front = await opened(db)
    await front.add([Request(url="http://a.test/x")])
    request = await front.claim(T0)
    assert request is not None
    await front.complete(request, T0)
    with pytest.raises(FrontierError, match="meta"):
        await front.finish(request, request.replace(meta={"session": object()}))
    await front.finish(request)  # the lease is still there to end
    assert await front.exhausted()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
# zero is left out of not_before and timeout: see test_zero_not_before_and_timeout_survive_the_round_trip
positive_times = st.floats(min_value=1e-3, max_value=4e9, allow_nan=False)

requests = st.builds(
    Request,
    url=st.sampled_from(["http://a.test/", "https://b.test:8443/p?q=1&r=%C3%A9", "http://[::1]:8080/x/y"]),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "patch", "HEAD"]),
    headers=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=3),
    body=st.none() | st.binary(max_size=64),
    callback=st.none() | st.sampled_from(["parse", "parse_item"]),
    errback=st.none() | st.just("failed"),
    cb_kwargs=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    meta=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    priority=st.integers(-(2**40), 2**40),
    depth=st.integers(0, 100),
    attempt=st.integers(0, 10),
    not_before=st.none() | positive_times,
    dont_filter=st.booleans(),
    timeout=st.none() | positive_times,
    retry_non_idempotent=st.booleans(),
)

ROUND_TRIPPED = (
    "url",
    "method",
    "headers",
    "body",
    "callback",
    "errback",
    "cb_kwargs",
    "meta",
    "priority",
    "depth",
    "attempt",
    "not_before",
    "dont_filter",
    "timeout",
    "retry_non_idempotent",
)


def round_trip(request: Request) -> Request:
    """Through JSON text, as the SQLite frontier stores a request."""
    return request_from_dict(json.loads(json.dumps(request_to_dict(request), ensure_ascii=False)))


@settings(max_examples=150, deadline=None)
@given(request=requests)
def test_request_dict_round_trip(request: Request) -> None:
    back = round_trip(request)
    for name in ROUND_TRIPPED:
        assert getattr(back, name) == getattr(request, name), name
    assert back.fingerprint == request.fingerprint
    assert back.host == request.host


def test_zero_not_before_and_timeout_survive_the_round_trip() -> None:
    request = Request(url="http://a.test/", timeout=0.0, not_before=0.0)
    back = round_trip(request)
    assert (back.timeout, back.not_before) == (0.0, 0.0)


# -- unreadable rows -------------------------------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as logs:
        yield logs


@pytest.mark.parametrize(
    "data",
    [
        pytest.param('{"url": "http://a.test/2", "meth', id="truncated"),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param('{"method": "GET"}', id="no-url"),
        pytest.param('{"url": "ftp://a.test/2"}', id="bad-url"),
        pytest.param('{"url": "http://a.test/2", "callback": 7}', id="bad-callback"),
        pytest.param(
            '{"url": 2}',
            id="url-not-a-string",
        ),
    ],
)
async def test_an_unreadable_row_is_dropped_and_the_rest_claimed(
    db: Path, opened: Any, captured: list[dict[str, Any]], data: str
) -> None:
    front = await opened(db, per_host=1)
    await front.add([Request(url=f"http://a.test/{i}") for i in range(5)])
    await front.close()
    with sqlite3.connect(db) as conn:
        (row,) = conn.execute("SELECT id FROM requests WHERE data LIKE '%a.test/2%'").fetchone()
        conn.execute("UPDATE requests SET data = ? WHERE id = ?", (data, row))

    again = await opened(db, per_host=1)
    assert again.statistics().queued == 5
    claimed = []
    while (request := await again.claim(T0)) is not None:
        claimed.append(request)
        await again.complete(request, T0)
        assert not await again.exhausted()
    assert [r.url for r in claimed] == [f"http://a.test/{i}" for i in (0, 1, 3, 4)]
    assert again.statistics().queued == 0
    dropped = [e for e in captured if e["event"] == "unreadable request dropped from the frontier"]
    assert len(dropped) == 1 and dropped[0]["log_level"] == "error" and dropped[0]["row"] == row
    for request in claimed:
        await again.finish(request)
    assert await again.exhausted()
    await again.close()
    assert [url for url, _ in queued_rows(db)] == []  # the unreadable row is gone too


# -- open_frontier ---------------------------------------------------------------------------------------------


def frontier_for(uri: str | None) -> Any:
    return open_frontier(uri, politeness=Politeness(), crawl_id="test")


def test_open_frontier_dispatch(tmp_path: Path) -> None:
    assert isinstance(frontier_for(None), MemoryFrontier)
    assert isinstance(frontier_for("memory"), MemoryFrontier)
    assert isinstance(frontier_for("memory://"), MemoryFrontier)
    for uri, path in [
        ("sqlite:///x.db", "x.db"),
        (f"sqlite:///{tmp_path}/x.db", f"{tmp_path}/x.db"),
        ("x.db", "x.db"),
        ("state/x.sqlite3", "state/x.sqlite3"),
    ]:
        front = frontier_for(uri)
        assert isinstance(front, SqliteFrontier) and front.path == path and front.uri == uri


@pytest.mark.parametrize("uri", ["nope://x", "x.txt"])
def test_open_frontier_names_the_schemes_it_knows(uri: str) -> None:
    with pytest.raises(FrontierError) as caught:
        frontier_for(uri)
    message = str(caught.value)
    assert repr(uri) in message
    assert "memory" in message and "sqlite:///PATH.db" in message


def test_open_frontier_without_a_path() -> None:
    with pytest.raises(FrontierError, match="no database path"):
        frontier_for("sqlite://")


def test_open_frontier_finds_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, dict[str, Any]]] = []

    class Plugin:
        name = "fake"

        def load(self) -> Any:
            def factory(uri: str, **kwargs: Any) -> MemoryFrontier:
                made.append((uri, kwargs))
                return MemoryFrontier(kwargs["politeness"])

            return factory

    monkeypatch.setattr(
        crawler._frontier, "entry_points", lambda group: [Plugin()] if group == "crawler.frontiers" else []
    )
    politeness = Politeness()
    front = open_frontier("fake://host/0", politeness=politeness, crawl_id="books", settings="S")
    assert isinstance(front, MemoryFrontier)
    assert made == [("fake://host/0", {"politeness": politeness, "crawl_id": "books", "settings": "S"})]
    with pytest.raises(FrontierError, match="fake://"):
        frontier_for("other://x")


# -- a crawl resumed by the engine -----------------------------------------------------------------------------


class FollowAll(Spider):
    """One item per page; follows the links to pages of the site."""

    name = "resume"
    allowed_domains = ("127.0.0.1",)

    def __init__(self, start: str) -> None:
        super().__init__()
        self.start_urls = [start]  # type: ignore[misc]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}
        for request in response.follow_all():
            if request.url.endswith(".html"):
                yield request


async def test_an_interrupted_crawl_resumes_where_it_stopped(tmp_path: Path) -> None:
    items = tmp_path / "items.db"

    def settings(**extra: Any) -> Any:
        cli = {"crawl.state": str(tmp_path / "state"), "output.uris": (f"sqlite:///{items}",), **extra}
        return load_settings(environ={}, cli=cli, config_dir=Path("/nonexistent"))

    with LocalServer(generate_site(pages=120)) as server:
        site = server.site
        assert site is not None
        expected = site.reachable_urls()
        first = await Engine(FollowAll(site.url()), settings(**{"crawl.max_pages": 40})).run()
        first_hits = server.stats().hits_by_url()
        second = await Engine(FollowAll(site.url()), settings()).run()
        hits = server.stats().hits_by_url()

    pages = {url: n for url, n in hits.items() if not url.endswith("/robots.txt")}
    assert first.reason == "max_pages" and second.reason == "finished"
    assert sum(n for url, n in first_hits.items() if url in expected) == first.counts["pages"] == 40
    assert set(pages) == expected and len(expected) == 120
    assert all(n == 1 for n in pages.values()), {url: n for url, n in pages.items() if n != 1}
    assert first.counts["pages"] + second.counts["pages"] == 120
    with sqlite3.connect(items) as conn:
        rows = conn.execute("SELECT url FROM items").fetchall()
    assert sorted(url for (url,) in rows) == sorted(expected)
