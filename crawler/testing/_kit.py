"""The testing kit for spiders: run a spider to the end in a test and get its items, errors and stats back
(:func:`run_spider`, :func:`arun_spider`), a :class:`FakeClock` for policies, and assertions over what a
:class:`~crawler.testing.LocalServer` saw (:func:`assert_max_in_flight_per_host`,
:func:`assert_honoured_retry_after`)::

    with LocalServer({"/": b"<a href='/a'>a</a>", "/a": b"<title>A</title>"}) as server:
        result = run_spider(MySpider(start_url=server.url("/")), max_pages=10)
        assert_max_in_flight_per_host(server.stats(), 2)
    assert result.items == [...] and not result.errors
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import attrs
import sniffio

from crawler._engine import Engine
from crawler._items import ItemRecord
from crawler._settings import Settings, load_settings
from crawler._spider import Spider
from crawler.testing._server import RequestRecord, ServerStatistics

__all__ = [
    "CrawlResult",
    "FakeClock",
    "arun_spider",
    "assert_honoured_retry_after",
    "assert_max_in_flight_per_host",
    "run_spider",
]

Backend = Literal["asyncio", "trio"]
_GROUPS = ("crawl", "retry", "auth", "output", "log")


# -- running a spider --------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CrawlResult:
    """What a crawl produced: ``items`` (plain dicts, in the order the sinks received them), ``errors`` (the error
    records of requests that gave up or callbacks that raised: ``url``, ``method``, ``attempts``, ``status``,
    ``error``, ``callback``, ``failed_at``), ``stats`` (the final :meth:`crawler.Stats.snapshot`: ``reason``,
    ``pages``, ``items``, ``statuses``, ``errors``, ``counts``, ...) and the ``settings`` the crawl ran with."""

    items: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    stats: dict[str, Any]
    settings: Settings


class _MemorySink:
    """A sink that keeps the records it is given, in order."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.records: list[ItemRecord] = []

    async def open(self) -> None:
        return None

    async def write(self, batch: Sequence[ItemRecord]) -> None:
        self.records.extend(batch)

    async def close(self) -> None:
        return None


def _dotted(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``{"crawl": {"delay": 1}}`` (shaped like crawler.toml) or ``{"crawl.delay": 1}`` -> ``{"crawl.delay": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if key in _GROUPS and isinstance(value, Mapping):
            flat.update({f"{key}.{name}": inner for name, inner in value.items()})
        else:
            flat[key] = value
    return flat


def _cassette_layer(replay: str | os.PathLike[str] | None, record: str | os.PathLike[str] | None) -> dict[str, str]:
    if replay is not None and record is not None:
        raise ValueError("run_spider: give replay= or record=, not both")
    if replay is not None:
        return {"crawl.replay": os.fspath(replay)}
    if record is not None:
        return {"crawl.record": os.fspath(record)}
    return {}


def _spider_settings(
    spider: Spider,
    *,
    replay: str | os.PathLike[str] | None,
    record: str | os.PathLike[str] | None,
    settings: Mapping[str, Any] | None,
    backend: str | None,
    overrides: Mapping[str, Any],
    caller: str,
) -> Settings:
    extra: list[tuple[str, Mapping[str, Any]]] = []
    if settings:
        extra.append((f"{caller}(settings=...)", _dotted(settings)))
    if overrides:
        extra.append((f"{caller}(**overrides)", {key.replace("__", "."): value for key, value in overrides.items()}))
    cassette = _cassette_layer(replay, record)
    if cassette:
        extra.append((f"{caller}(replay/record=...)", cassette))
    if backend is not None:
        extra.append((f"{caller}(backend=...)", {"crawl.backend": backend}))
    return load_settings(
        config_dir=False, environ={}, spider=(type(spider).__name__, spider.custom_settings), extra=extra
    )


async def _run(spider: Spider, settings: Settings) -> CrawlResult:
    items, errors = _MemorySink("memory:items"), _MemorySink("memory:errors")
    engine = Engine(spider, settings, sinks=[items], error_sinks=[errors])
    stats = await engine.run()
    return CrawlResult(
        items=[record.item for record in items.records],
        errors=[record.item for record in errors.records],
        stats=stats.snapshot(spider=spider.name),
        settings=settings,
    )


def _instance(spider: Spider | type[Spider]) -> Spider:
    return spider() if isinstance(spider, type) else spider


def run_spider(
    spider: Spider | type[Spider],
    *,
    replay: str | os.PathLike[str] | None = None,
    record: str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    backend: Backend | None = None,
    **overrides: Any,
) -> CrawlResult:
    """Run ``spider`` (an instance, or a class made with no arguments) to the end in a new event loop and return
    its :class:`CrawlResult`.  Items and error records are kept in memory: nothing is written to the current
    directory (``output.uris`` and ``output.errors`` are ignored).

    Settings, lowest layer first: the defaults, the spider's ``custom_settings``, ``settings`` (a mapping shaped
    like crawler.toml, ``{"crawl": {"delay": 0.5}}``, or with dotted keys, ``{"crawl.delay": 0.5}``), then
    ``overrides``: keyword arguments naming a setting by its key (``max_pages=5``), its dotted key
    (``**{"crawl.max_pages": 5}``) or with ``__`` for the dot (``crawl__max_pages=5``).  ``crawler.toml`` and the
    ``CRAWLER_*`` environment variables are not read, so a test sees the same settings everywhere.
    ``replay=DIR`` sets ``crawl.replay`` (answer from the cassette in DIR, no network); ``record=DIR`` sets
    ``crawl.record`` (fetch, and store every exchange in DIR).  ``backend`` (``asyncio`` or ``trio``) sets
    ``crawl.backend``, the event loop the crawl runs on (default: the settings', asyncio unless they say otherwise).

    Raises :class:`crawler.SettingsError` for a bad setting (naming it and the layer it came from), ValueError
    for both ``replay`` and ``record``, and what :meth:`crawler.Engine.run` raises.  Inside a running event loop,
    use :func:`arun_spider`.
    """
    instance = _instance(spider)
    resolved = _spider_settings(
        instance,
        replay=replay,
        record=record,
        settings=settings,
        backend=backend,
        overrides=overrides,
        caller="run_spider",
    )
    return anyio.run(functools.partial(_run, instance, resolved), backend=resolved.crawl.backend)


async def arun_spider(
    spider: Spider | type[Spider],
    *,
    replay: str | os.PathLike[str] | None = None,
    record: str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> CrawlResult:
    """:func:`run_spider` inside the running event loop (asyncio or trio, which sets ``crawl.backend``)."""
    instance = _instance(spider)
    resolved = _spider_settings(
        instance,
        replay=replay,
        record=record,
        settings=settings,
        backend=sniffio.current_async_library(),
        overrides=overrides,
        caller="arun_spider",
    )
    return await _run(instance, resolved)


# -- a fake clock ------------------------------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told to: call it for the time (seconds, like :func:`time.time`), :meth:`advance`
    it, or set :attr:`now`.  Pass it where a policy or :class:`crawler.Stats` takes ``now`` or a clock.

    It starts at ``now`` (default 1_700_000_000.0, 2023-11-14 22:13:20 UTC: epoch seconds, so that headers with an
    epoch reset, such as GitHub's ``X-RateLimit-Reset``, read sensibly)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move forward ``seconds`` (>= 0) and return the new time; raises ValueError for a negative step."""
        if seconds < 0:
            raise ValueError(f"FakeClock.advance: a clock does not go back ({seconds} s)")
        self.now += seconds
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r})"


# -- assertions over a server's statistics -----------------------------------------------------------------------


def _wall(monotonic: float) -> str:
    """A :func:`time.monotonic` reading as local wall-clock time, ``12:00:01.234``."""
    stamp = datetime.fromtimestamp(time.time() - time.monotonic() + monotonic)
    return stamp.strftime("%H:%M:%S.%f")[:-3]


def _busiest(log: Sequence[RequestRecord], host: str, limit: int) -> tuple[float, list[RequestRecord]] | None:
    """The first moment, from the request log, when the most requests to ``host`` were in flight, and those
    requests; None unless that is more than ``limit``.  Answers at the same instant as arrivals count first, so
    that touching requests never overlap."""
    events = sorted(
        [(r.started, 1, i) for i, r in enumerate(log) if r.host == host]
        + [(r.finished, 0, i) for i, r in enumerate(log) if r.host == host]
    )
    open_: dict[int, RequestRecord] = {}
    busiest: tuple[float, list[RequestRecord]] | None = None
    for moment, arrives, index in events:
        if not arrives:
            open_.pop(index, None)
            continue
        open_[index] = log[index]
        if len(open_) > max(limit, len(busiest[1]) if busiest else 0):
            busiest = moment, sorted(open_.values(), key=lambda r: r.started)
    return busiest


def assert_max_in_flight_per_host(stats: ServerStatistics, limit: int) -> None:
    """Assert that no host had more than ``limit`` requests in flight at once (received and not yet answered,
    per Host header) since the server started or was reset.

    Raises AssertionError naming each host over the limit, its peak and, from the request log, when it happened
    and which requests were in flight then.  Raises ValueError for a ``limit`` below 1.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"assert_max_in_flight_per_host: limit must be a whole number >= 1, got {limit!r}")
    problems = []
    for host, peak in sorted(stats.max_in_flight.items()):
        if peak <= limit:
            continue
        found = _busiest(stats.log, host, limit)
        if found is None:
            problems.append(f"{host} had {peak} in flight, limit {limit} (the request log does not say when)")
            continue
        moment, requests = found
        shown = ", ".join(f"{r.method} {r.path}" for r in requests[:5]) + (", ..." if len(requests) > 5 else "")
        problems.append(f"{host} had {peak} in flight at {_wall(moment)} ({shown}), limit {limit}")
    if problems:
        raise AssertionError("; ".join(problems))


def _matches(path_or_url: str) -> tuple[str | None, str]:
    """``http://h:p/x?y`` -> (``h:p``, ``/x?y``); ``/x?y`` -> (None, ``/x?y``)."""
    if "://" not in path_or_url:
        return None, path_or_url
    parts = urlsplit(path_or_url)
    return parts.netloc, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def assert_honoured_retry_after(
    stats: ServerStatistics,
    path_or_url: str,
    seconds: float,
    *,
    statuses: Collection[int] = (429, 503),
    host_wide: bool = False,
) -> None:
    """Assert that after each answer with a status in ``statuses`` (429 Too Many Requests, RFC 6585 §4; 503
    Service Unavailable, RFC 9110 §15.6.4) to ``path_or_url``, which said ``Retry-After: seconds`` (RFC 9110
    §10.2.3), the next request for it arrived at least ``seconds`` after that answer, and that at least one such
    retry happened.  ``path_or_url`` is a path with its query, as the server logs it (``"/items?page=2"``: on any
    host), or an absolute URL (that host only).  With ``host_wide``, every later request to the same host must
    have waited too, not only the retry.  Times come from the server's request log (:attr:`ServerStatistics.log`).

    Raises AssertionError saying what was seen: which request came how soon after which answer, or that no such
    answer or no retry was seen.  Raises ValueError for a negative ``seconds``.
    """
    if seconds < 0:
        raise ValueError(f"assert_honoured_retry_after: seconds must be >= 0, got {seconds!r}")
    host, path = _matches(path_or_url)
    log = sorted(stats.log, key=lambda r: r.started)
    targeted = [r for r in log if r.path == path and (host is None or r.host == host)]
    refusals = [r for r in targeted if r.status in statuses]
    wanted = "/".join(str(s) for s in sorted(statuses))
    if not refusals:
        seen = ", ".join(str(r.status) for r in targeted[:10]) or "none"
        raise AssertionError(
            f"no {wanted} answer to {path_or_url} in the request log ({len(targeted)} requests, statuses: {seen}); "
            "nothing to honour"
        )
    retried = False
    for refusal in refusals:
        later = [
            r
            for r in log
            if r.started > refusal.started
            and r.host == refusal.host
            and (host_wide or r.path == refusal.path)
            and r is not refusal
        ]
        if not later:
            continue
        retried = retried or any(r.path == refusal.path for r in later)
        checked = later if host_wide else later[:1]
        for following in checked:
            gap = following.started - refusal.finished
            if gap < seconds:
                raise AssertionError(
                    f"{refusal.method} {refusal.host}{refusal.path} was answered {refusal.status} at "
                    f"{_wall(refusal.finished)} with Retry-After {seconds:g} s, and {following.method} "
                    f"{following.host}{following.path} came {gap:.3f} s later, at {_wall(following.started)}"
                )
    if not retried:
        first = refusals[0]
        raise AssertionError(
            f"{first.method} {first.host}{first.path} was answered {first.status} at {_wall(first.finished)} and "
            "never requested again: no retry to check"
        )
