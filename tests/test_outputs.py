"""The outputs writer: checkpoints after the records queued before them, batching, error records, back-pressure,
sink retries within ``retry_for``, a sink that fails for good; and through the engine, a crawl whose sink fails
keeps the requests of unwritten items in its persistent frontier."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import pytest
import structlog

import crawler._outputs
from crawler import Engine, Politeness, Response, SinkError, Spider, SqliteFrontier, load_settings
from crawler._items import ItemRecord
from crawler._outputs import Outputs
from crawler.testing import LocalServer

pytestmark = pytest.mark.anyio


def record(key: str) -> ItemRecord:
    return ItemRecord(key=key, item={"key": key}, spider="test", url=f"http://a.test/{key}", fetched_at=0.0)


class RecordingLog:
    """A stand-in for the structlog logger Outputs is given: keeps ``(level, event, fields)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.events.append(("error", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append(("warning", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.events.append(("info", event, fields))

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.events if name == event]


class MemorySink:
    """A sink (test double of an external store) that keeps each batch it was given; ``trace``, when given, is
    a list shared with the test's checkpoints, to check the order of writes and callbacks."""

    def __init__(self, uri: str = "memory:items", trace: list[Any] | None = None) -> None:
        self.uri = uri
        self.batches: list[list[str]] = []
        self.urls: list[str] = []  # of the records written
        self.attempts: list[float] = []  # anyio.current_time() of every write attempt
        self.trace = trace if trace is not None else []

    @property
    def keys(self) -> list[str]:
        return [key for batch in self.batches for key in batch]

    async def open(self) -> None:
        return None

    def failing(self) -> bool:
        return False

    async def before_failing(self) -> None:
        return None

    async def write(self, batch: Sequence[ItemRecord]) -> None:
        self.attempts.append(anyio.current_time())
        if self.failing():
            await self.before_failing()
            raise SinkError(f"cannot write to {self.uri!r}: the store is down")
        keys = [r.key for r in batch]
        self.batches.append(keys)
        self.urls.extend(r.url for r in batch)
        self.trace.append(("write", self.uri, keys))

    async def close(self) -> None:
        return None


class FlakySink(MemorySink):
    """Fails its first ``failures`` write attempts, then works."""

    def __init__(self, failures: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures

    def failing(self) -> bool:
        return len(self.attempts) <= self.failures


class BrokenSink(MemorySink):
    """Takes its first ``accept`` batches, then fails for good; ``failed`` is set at the first failure, which
    waits for ``hold`` (when given) before raising."""

    def __init__(self, accept: int = 0, *, hold: anyio.Event | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accept = accept
        self.failed = anyio.Event()
        self.hold = hold

    async def before_failing(self) -> None:
        if self.hold is not None:
            await self.hold.wait()

    def failing(self) -> bool:
        if len(self.batches) < self.accept:
            return False
        self.failed.set()
        return True


class Harness:
    """An Outputs with a recording log, its ``on_failure`` calls and the checkpoints that ran."""

    def __init__(
        self,
        sinks: Sequence[MemorySink],
        error_sinks: Sequence[MemorySink] = (),
        *,
        batch_size: int = 10,
        retry_for: float = 1.0,
    ) -> None:
        self.log = RecordingLog()
        self.failures: list[str] = []
        self.failed = anyio.Event()
        self.ran: list[str] = []
        self.trace: list[Any] = sinks[0].trace if sinks else []
        self.outputs = Outputs(
            sinks,
            error_sinks,
            batch_size=batch_size,
            log=self.log,
            on_failure=self._on_failure,
            retry_for=retry_for,
        )

    def _on_failure(self, reason: str) -> None:
        self.failures.append(reason)
        self.failed.set()

    async def checkpoint(self, name: str, hold: anyio.Event | None = None) -> anyio.Event:
        """Queue a checkpoint recording its run; its callback waits for ``hold``, if given.  Returns an event
        set when the callback starts."""
        started = anyio.Event()

        async def callback() -> None:
            self.ran.append(name)
            self.trace.append(("checkpoint", name))
            started.set()
            if hold is not None:
                await hold.wait()

        await self.outputs.checkpoint(callback)
        return started

    async def items(self, *keys: str) -> None:
        for key in keys:
            await self.outputs.item(record(key))

    def unwritten(self) -> list[tuple[str, str]]:
        return [(fields["sink"], fields["key"]) for fields in self.log.named("unwritten record")]


async def run(harness: Harness, body: Callable[[], Awaitable[None]] | None = None) -> None:
    """Start the writer, run ``body()`` (if any) beside it, then close the channel and wait for the writer."""
    async with anyio.create_task_group() as tg:
        harness.outputs.start(tg)
        if body is not None:
            await body()
        await harness.outputs.close()


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries 20 ms after a failed write, then 40, 80... (the writer's backoff is 0.5 s, doubled)."""
    monkeypatch.setattr(crawler._outputs, "SINK_BACKOFF", 0.02)


# -- checkpoints and batches -----------------------------------------------------------------------------------


async def test_checkpoints_run_after_their_records_in_order_and_do_not_split_batches() -> None:
    sink = MemorySink()
    h = Harness([sink], batch_size=10)
    for n in "123":  # queued before the writer starts: one batch of six entries
        await h.items(f"r{n}")
        await h.checkpoint(f"c{n}")
    await run(h)
    assert h.trace == [
        ("write", "memory:items", ["r1", "r2", "r3"]),
        ("checkpoint", "c1"),
        ("checkpoint", "c2"),
        ("checkpoint", "c3"),
    ]


async def test_a_checkpoint_with_nothing_before_it_runs() -> None:
    sink = MemorySink()
    h = Harness([sink])
    await h.checkpoint("alone")
    await run(h)
    assert h.ran == ["alone"]
    assert sink.batches == []  # no empty write


async def test_checkpoints_follow_their_records_in_a_stream() -> None:
    written: list[str] = []

    class SlowSink(MemorySink):
        async def write(self, batch: Sequence[ItemRecord]) -> None:
            await anyio.sleep(0.001)  # the producer fills the channel meanwhile
            await super().write(batch)
            written.extend(r.key for r in batch)

    sink = SlowSink()
    h = Harness([sink], batch_size=4)

    async def check(n: int) -> None:
        assert f"r{n}" in written  # its record is written...
        assert h.ran == [f"c{i}" for i in range(n)]  # ...and the checkpoints before it ran, in order
        h.ran.append(f"c{n}")

    async def produce() -> None:
        for n in range(50):
            await h.items(f"r{n}")
            await h.outputs.checkpoint(lambda n=n: check(n))

    await run(h, produce)
    assert h.ran == [f"c{n}" for n in range(50)]
    assert sink.keys == [f"r{n}" for n in range(50)]  # each once, in order
    assert all(len(batch) <= 4 for batch in sink.batches)
    assert len(sink.batches) < 50  # batched: checkpoints do not force a write per record


async def test_a_slow_sink_holds_the_producer_back() -> None:
    release = anyio.Event()

    class BlockedSink(MemorySink):
        async def write(self, batch: Sequence[ItemRecord]) -> None:
            await release.wait()
            await super().write(batch)

    sink = BlockedSink()
    h = Harness([sink], batch_size=2)
    sent = 0

    async def produce() -> None:
        nonlocal sent
        for n in range(20):
            await h.items(f"r{n}")
            sent += 1

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            await anyio.wait_all_tasks_blocked()
            assert sent <= 2 * 2  # one batch in the writer's hands, one channel's worth queued: memory is bounded
            release.set()

    await run(h, body)
    assert sent == 20
    assert sink.keys == [f"r{n}" for n in range(20)]


# -- error records ---------------------------------------------------------------------------------------------


async def test_error_records_go_to_the_error_sinks() -> None:
    trace: list[Any] = []
    items, errors = MemorySink("memory:items", trace), MemorySink("memory:errors", trace)
    h = Harness([items], [errors], batch_size=10)
    await h.items("r1")
    await h.outputs.error(record("e1"))
    await h.items("r2")
    await h.checkpoint("c")
    await run(h)
    assert items.batches == [["r1", "r2"]]
    assert errors.batches == [["e1"]]
    assert trace == [
        ("write", "memory:items", ["r1", "r2"]),
        ("write", "memory:errors", ["e1"]),
        ("checkpoint", "c"),
    ]


async def test_without_error_sinks_error_records_are_not_queued() -> None:
    items = MemorySink()
    h = Harness([items])
    await h.outputs.error(record("e1"))
    await h.items("r1")
    await run(h)
    assert items.batches == [["r1"]]
    assert h.log.events == []


# -- a failing sink --------------------------------------------------------------------------------------------


async def test_a_sink_that_fails_twice_then_recovers_loses_nothing(quick_backoff: None) -> None:
    sink = FlakySink(failures=2)
    h = Harness([sink], retry_for=1.0)
    await h.items("r1")
    await h.checkpoint("c1")
    await h.items("r2")
    await h.checkpoint("c2")
    await run(h)

    assert len(sink.attempts) == 3
    assert sink.attempts[2] - sink.attempts[0] >= 0.02 + 0.04  # the writer waited between attempts
    assert sink.trace == [("write", "memory:items", ["r1", "r2"]), ("checkpoint", "c1"), ("checkpoint", "c2")]
    assert h.failures == []
    assert [f["attempt"] for f in h.log.named("sink write failed, retrying")] == [1, 2]
    assert h.unwritten() == []


async def test_a_sink_that_never_recovers(quick_backoff: None) -> None:
    """The first batch is written; the second fails for good: the crawl is told once, the checkpoints of the
    records that were not written never run, and those records are in the log; so are those queued later."""
    failing = anyio.Event()
    sink = BrokenSink(accept=1, hold=failing)
    h = Harness([sink], retry_for=0.3)
    resume = anyio.Event()
    await h.items("r1")
    c1 = await h.checkpoint("c1", hold=resume)  # holds the writer until the next batch is queued

    async def body() -> None:
        await c1.wait()
        await h.items("r2")
        await h.checkpoint("c2")
        await h.items("r3")
        await h.checkpoint("c3")
        resume.set()
        await sink.failed.wait()  # the writer is writing [r2, r3]: what comes now is the next batch
        await h.items("r4")
        await h.checkpoint("c4")
        failing.set()

    await run(h, body)
    assert sink.batches == [["r1"]]
    assert h.ran == ["c1"]
    assert h.failures == ["sink failed"]
    assert len(sink.attempts) >= 3  # one success, then at least one retry of the failed batch
    assert len(h.log.named("sink failed for good; its batch goes to this log")) == 1
    assert h.unwritten() == [("memory:items", "r2"), ("memory:items", "r3"), ("(stopped)", "r4")]


async def test_no_checkpoint_runs_after_a_sink_failed_for_good() -> None:
    sink = BrokenSink()
    h = Harness([sink], retry_for=0.0)

    async def body() -> None:
        await h.items("r1")  # the writer takes it alone and fails at once
        await h.failed.wait()
        await h.checkpoint("c1")  # the checkpoint of r1's request, queued after its item

    await run(h, body)
    assert h.unwritten() == [("memory:items", "r1")]
    assert h.ran == []


async def test_error_records_of_a_failed_batch_are_not_lost_silently() -> None:
    items, errors = BrokenSink(uri="memory:items"), MemorySink("memory:errors")
    h = Harness([items], [errors], retry_for=0.0)
    await h.items("r1")
    await h.outputs.error(record("e1"))  # queued before the writer starts: the same batch as r1
    await run(h)
    assert h.failures == ["sink failed"]
    assert ("memory:items", "r1") in h.unwritten()
    assert "e1" in errors.keys or any(key == "e1" for _, key in h.unwritten())


@pytest.mark.parametrize(("retry_for", "attempts"), [(0.0, 1), (0.1, 1), (1.2, 3)])
async def test_retry_for_bounds_the_retries(monkeypatch: pytest.MonkeyPatch, retry_for: float, attempts: int) -> None:
    """With a 0.25 s backoff, doubled, attempts start at 0, 0.25, 0.75, 1.75 s: the writer sleeps only when the
    next attempt starts within ``retry_for`` of the first."""
    monkeypatch.setattr(crawler._outputs, "SINK_BACKOFF", 0.25)
    sink = BrokenSink()
    h = Harness([sink], retry_for=retry_for)
    await h.items("r1")
    await run(h)
    gave_up = anyio.current_time()
    assert len(sink.attempts) == attempts
    assert h.failures == ["sink failed"]
    assert gave_up - sink.attempts[0] <= retry_for + 1.0  # never waits past the budget (loose: a slow machine)
    if attempts == 3:
        assert sink.attempts[2] - sink.attempts[0] >= 0.25 + 0.5


# -- through the engine ----------------------------------------------------------------------------------------

PAGES = [f"/p{i}" for i in range(6)]


class OnePerPage(Spider):
    """One item per page, then some more work in the callback (say, a slow parse)."""

    name = "outputs"
    work = 0.0

    def __init__(self, urls: list[str]) -> None:
        super().__init__()
        self.start_urls = urls  # type: ignore[misc]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}
        await anyio.sleep(self.work)


class Crawled(NamedTuple):
    stats: Any
    urls: set[str]  # the start URLs
    fetched: set[str]  # the URLs the server answered
    queued: set[str]  # the URLs queued when the frontier is reopened


async def crawl_with(sink: MemorySink, state: Path, *, work: float = 0.0) -> Crawled:
    """Crawl PAGES one request at a time into ``sink``, with the frontier in ``state``."""
    settings = load_settings(
        environ={},
        config_dir=Path("/nonexistent"),
        cli={
            "crawl.state": str(state),
            "crawl.concurrency": 1,
            "crawl.per_host": 1,
            "crawl.obey_robots": False,
            "output.sink_retry_for": 0.0,
        },
    )
    routes = {path: b"<html><body>page</body></html>" for path in PAGES}
    with LocalServer(routes) as server:
        urls = [server.url(path) for path in PAGES]
        spider = OnePerPage(urls)
        spider.work = work
        stats = await Engine(spider, settings, sinks=[sink], error_sinks=[]).run()
        fetched = set(server.stats().hits_by_url())
    front = SqliteFrontier(str(state / "frontier.db"), Politeness(per_host=100))
    await front.open()
    queued = set()
    while (request := await front.claim(2e9)) is not None:
        queued.add(request.url)
    await front.close()
    return Crawled(stats, set(urls), fetched, queued)


async def test_engine_stops_when_a_sink_fails_for_good(tmp_path: Path) -> None:
    sink = BrokenSink()
    with structlog.testing.capture_logs() as logs:
        crawled = await crawl_with(sink, tmp_path / "state")
    assert crawled.stats.reason == "sink failed"
    assert sink.batches == []
    unwritten = [e for e in logs if e["event"] == "unwritten record"]
    assert unwritten and {e["item"]["url"] for e in unwritten} <= crawled.fetched
    assert crawled.fetched < crawled.urls  # stopped early
    assert crawled.urls - crawled.fetched <= crawled.queued  # what was never fetched is still queued


async def test_engine_keeps_the_requests_of_unwritten_items_queued(tmp_path: Path) -> None:
    sink = BrokenSink(accept=2)
    crawled = await crawl_with(sink, tmp_path / "state", work=0.05)
    assert crawled.stats.reason == "sink failed"
    assert len(sink.urls) == 2
    assert crawled.queued == crawled.urls - set(sink.urls)
