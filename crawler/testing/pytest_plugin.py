"""The pytest plugin of the testing kit, registered by entry point (``pytest11: crawler``): installing crawler
makes these fixtures available to every test, with nothing to import.

- ``crawl``: :func:`crawler.testing.run_spider` bound to the test.  In a sync test ``crawl(spider, **settings)``
  runs on the test's ``anyio_backend`` if it uses that fixture, else on asyncio; in an ``async def`` test,
  ``await crawl(spider, ...)`` runs in the test's event loop.  In a test that also uses ``cassette``, the crawl
  replays (or records) that cassette unless given ``replay=`` or ``record=``.
- ``serve``: ``serve(content, hosts=None, **options)`` starts a :class:`~crawler.testing.LocalServer` for a folder
  or a routes mapping, or a :class:`~crawler.testing.ServerGroup` for a :class:`~crawler.testing.Site` or when
  ``hosts`` names several loopback addresses (``("127.0.0.1", "127.0.0.2")``); both have ``.url(path)`` and
  ``.stats()``.  Every server is stopped when the test ends.
- ``fake_clock``: a :class:`crawler.testing.FakeClock`.
- ``cassette``: a :class:`Cassette`, the folder ``<test file's folder>/cassettes/<test name>`` (a parametrized
  test shares one; ``@pytest.mark.cassette("name")`` picks another).  It is replayed, with no network, and must
  exist; ``pytest --record-cassettes`` records it instead, against the real target, once per session (later
  tests that use the same cassette in that session replay it), and keeps the recording only if the test passes.
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import attrs
import pytest

if TYPE_CHECKING:
    from crawler._spider import Spider
    from crawler.testing._kit import CrawlResult, FakeClock
    from crawler.testing._server import LocalServer, RouteValue, ServerGroup
    from crawler.testing._site import Site

__all__ = ["Cassette", "Serve", "cassette", "crawl", "fake_clock", "serve"]

_RECORDED = pytest.StashKey[set[Path]]()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crawler", "crawler testing kit")
    group.addoption(
        "--record-cassettes",
        action="store_true",
        default=False,
        help="crawler: record the cassettes of the tests that use the cassette fixture, against the real targets "
        "(default: replay them, with no network).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cassette(name): crawler: the cassette folder name under cassettes/ (default: the test's name)"
    )
    config.stash[_RECORDED] = set()


# -- cassette ----------------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Cassette:
    """A test's cassette: the folder ``path`` and the ``mode``, ``"replay"`` (no network; answers come from the
    folder) or ``"record"`` (real requests, every exchange stored in the folder).  ``os.fspath(cassette)`` is the
    folder, so ``crawl(spider, replay=cassette)`` works too."""

    path: Path
    mode: Literal["replay", "record"]

    @property
    def recording(self) -> bool:
        return self.mode == "record"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def settings(self) -> dict[str, str]:
        """The crawl settings for this cassette: ``{"crawl.replay": DIR}`` or ``{"crawl.record": DIR}``."""
        return {f"crawl.{self.mode}": os.fspath(self.path)}


def _record_command(request: pytest.FixtureRequest) -> str:
    nodeid = request.node.nodeid.split("[", 1)[0]
    return f"pytest --record-cassettes {nodeid!r}" if " " in nodeid else f"pytest --record-cassettes {nodeid}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item: the cassette fixture keeps a recording only if the test passed."""
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture
def cassette(request: pytest.FixtureRequest) -> Iterator[Cassette]:
    """This test's cassette folder, ``<test file's folder>/cassettes/<test name>``, replayed unless pytest runs
    with ``--record-cassettes``.  Fails the test, saying how to record it, when the folder is missing.

    A recording goes to a temporary folder next to it (``cassettes/.<name>.recording``), which replaces the
    cassette only when the test passes: a failed recording (the target down, a changed site) keeps the old one."""
    marker = request.node.get_closest_marker("cassette")
    name = str(marker.args[0]) if marker and marker.args else request.node.originalname
    path = request.path.parent / "cassettes" / name
    recorded = request.config.stash[_RECORDED]
    if request.config.getoption("record_cassettes") and path not in recorded:
        recording = path.with_name(f".{name}.recording")
        if recording.exists():
            shutil.rmtree(recording)
        recording.mkdir(parents=True)
        try:
            yield Cassette(path=recording, mode="record")
        finally:
            call = request.node.stash.get(_REPORTS, {}).get("call")
            if call is not None and call.passed:
                if path.is_dir():
                    shutil.rmtree(path)
                recording.rename(path)
                recorded.add(path)  # the session's later users of this cassette replay it
            else:
                shutil.rmtree(recording, ignore_errors=True)
        return
    if not path.is_dir():
        pytest.fail(
            f"no cassette for {request.node.nodeid} at {path}: record it once, against the real target, with\n"
            f"    {_record_command(request)}\n"
            f"(or: crawler crawl SPIDER --record {path}), and commit the folder",
            pytrace=False,
        )
    yield Cassette(path=path, mode="replay")


# -- crawl -------------------------------------------------------------------------------------------------------


def _backend(request: pytest.FixtureRequest) -> str:
    if "anyio_backend" not in request.fixturenames:
        return "asyncio"
    value = request.getfixturevalue("anyio_backend")
    return str(value[0] if isinstance(value, tuple) else value)


@pytest.fixture
def crawl(request: pytest.FixtureRequest) -> Callable[..., CrawlResult] | Callable[..., Awaitable[CrawlResult]]:
    """Run a spider to the end: ``crawl(spider, *, replay=None, record=None, settings=None, **overrides)``, the
    arguments of :func:`crawler.testing.run_spider`, returning its :class:`~crawler.testing.CrawlResult`; awaited
    in an ``async def`` test.  Uses the test's ``cassette`` if it has one."""
    from crawler.testing._kit import arun_spider, run_spider

    used: Cassette | None = request.getfixturevalue("cassette") if "cassette" in request.fixturenames else None

    def with_cassette(kwargs: dict[str, Any]) -> dict[str, Any]:
        if used is not None and kwargs.get("replay") is None and kwargs.get("record") is None:
            kwargs[used.mode] = used.path
        return kwargs

    if inspect.iscoroutinefunction(getattr(request, "function", None)):

        async def acrawl(spider: Spider | type[Spider], **kwargs: Any) -> CrawlResult:
            return await arun_spider(spider, **with_cassette(kwargs))

        return acrawl

    backend = _backend(request)

    def crawl(spider: Spider | type[Spider], **kwargs: Any) -> CrawlResult:
        kwargs.setdefault("backend", backend)
        return run_spider(spider, **with_cassette(kwargs))

    return crawl


# -- serve -------------------------------------------------------------------------------------------------------


class Serve:
    """The ``serve`` fixture: start servers on loopback for this test; all are stopped when it ends."""

    def __init__(self) -> None:
        self.started: list[LocalServer | ServerGroup] = []

    @overload
    def __call__(
        self,
        content: Site,
        *,
        hosts: Sequence[str] | None = None,
        latency: float | Mapping[str, float] = 0.0,
        error_rate: float = 0.0,
        error_status: int = 500,
        seed: int = 0,
    ) -> ServerGroup: ...

    @overload
    def __call__(
        self,
        content: Mapping[str, RouteValue] | str | os.PathLike[str],
        *,
        hosts: None = None,
        latency: float | Mapping[str, float] = 0.0,
        error_rate: float = 0.0,
        error_status: int = 500,
        seed: int = 0,
    ) -> LocalServer: ...

    @overload
    def __call__(
        self,
        content: Mapping[str, RouteValue] | str | os.PathLike[str],
        *,
        hosts: Sequence[str],
        latency: float | Mapping[str, float] = 0.0,
        error_rate: float = 0.0,
        error_status: int = 500,
        seed: int = 0,
    ) -> ServerGroup: ...

    def __call__(
        self,
        content: Site | Mapping[str, RouteValue] | str | os.PathLike[str],
        *,
        hosts: Sequence[str] | None = None,
        latency: float | Mapping[str, float] = 0.0,
        error_rate: float = 0.0,
        error_status: int = 500,
        seed: int = 0,
    ) -> LocalServer | ServerGroup:
        """Serve ``content``: a folder (``str`` or path), a routes mapping (see :class:`crawler.testing.LocalServer`)
        or a :class:`crawler.testing.Site`.  A folder or routes without ``hosts``: one LocalServer on 127.0.0.1 and a
        free port.  A Site (on its hosts unless ``hosts`` says otherwise) or ``hosts`` (bare loopback addresses):
        a ServerGroup, one port for all.  ``latency`` (seconds), ``error_rate``, ``error_status`` and ``seed`` are
        LocalServer's.  Raises what LocalServer and serve_many raise (OSError, NotADirectoryError)."""
        from crawler.testing._server import LocalServer, serve_many
        from crawler.testing._site import Site

        options: dict[str, Any] = {
            "latency": latency,
            "error_rate": error_rate,
            "error_status": error_status,
            "seed": seed,
        }
        server: LocalServer | ServerGroup
        if isinstance(content, Site) or hosts is not None:
            server = serve_many(content, hosts, **options)
        else:
            server = LocalServer(content, **options).start()
        self.started.append(server)
        return server

    def stop(self) -> None:
        """Stop every server started, newest first."""
        while self.started:
            self.started.pop().stop()


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(content, hosts=None, **options)``: a running LocalServer or ServerGroup, stopped at teardown."""
    factory = Serve()
    try:
        yield factory
    finally:
        factory.stop()


# -- fake_clock --------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`crawler.testing.FakeClock` at 1_700_000_000.0 (epoch seconds)."""
    from crawler.testing._kit import FakeClock

    return FakeClock()
