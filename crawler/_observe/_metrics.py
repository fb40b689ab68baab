"""The crawl's metrics: one table of definitions, and a reader that takes them from a running engine when a
backend asks (a Prometheus scrape, an OpenTelemetry collection), so that the crawl itself updates nothing.

The engine's state (its stats, frontier and politeness) belongs to the event loop's thread, and scrapes arrive
on other threads: :class:`CrawlMetrics` reads it on the loop's thread, through the loop's thread-safe
"call soon" (trio's ``TrioToken.run_sync_soon``, asyncio's ``loop.call_soon_threadsafe``), waiting at most
:data:`READ_TIMEOUT` seconds.  When the crawl ends it keeps its last reading, which later collections report.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs

if TYPE_CHECKING:
    from crawler._engine import Engine

__all__ = ["METRICS", "PROMETHEUS_LABELS", "CrawlMetrics", "MetricSpec", "Reading"]

#: Seconds a reading from another thread waits for the event loop before it reports the last reading again.
READ_TIMEOUT = 5.0

#: A reading: for each metric name, its samples as (attributes, value).
Reading = dict[str, list[tuple[dict[str, str], float]]]


@attrs.frozen(kw_only=True)
class MetricSpec:
    """One metric: its OpenTelemetry ``name`` and ``unit`` (UCUM: ``By``, ``s``, ``{request}``), its Prometheus
    name (``prometheus``; counters get ``_total`` appended), ``kind`` (a monotonic ``counter`` or a ``gauge``)
    and the attributes its samples carry (``labels``, OpenTelemetry names)."""

    name: str
    prometheus: str
    kind: Literal["counter", "gauge"]
    unit: str
    description: str
    labels: tuple[str, ...] = ()


#: Every metric, in the order they are exported.  Each sample also carries ``crawler.spider``.
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        name="crawler.requests",
        prometheus="crawler_requests",
        kind="counter",
        unit="{request}",
        description="HTTP requests sent (every attempt, retries included; robots.txt excluded)",
    ),
    MetricSpec(
        name="crawler.responses",
        prometheus="crawler_responses",
        kind="counter",
        unit="{response}",
        description="HTTP responses received, by status code",
        labels=("http.response.status_code",),
    ),
    MetricSpec(
        name="crawler.response.bytes",
        prometheus="crawler_response_bytes",
        kind="counter",
        unit="By",
        description="Bytes of response bodies received (decoded)",
    ),
    MetricSpec(
        name="crawler.pages",
        prometheus="crawler_pages",
        kind="counter",
        unit="{page}",
        description="Responses handed to a callback",
    ),
    MetricSpec(
        name="crawler.items",
        prometheus="crawler_items",
        kind="counter",
        unit="{item}",
        description="Items yielded by callbacks",
    ),
    MetricSpec(
        name="crawler.errors",
        prometheus="crawler_errors",
        kind="counter",
        unit="{error}",
        description="Errors, by type: requests that gave up (exception name or http_STATUS), callback errors "
        "(callback:NAME), bad items",
        labels=("error.type",),
    ),
    MetricSpec(
        name="crawler.retries",
        prometheus="crawler_retries",
        kind="counter",
        unit="{retry}",
        description="Requests queued again for another attempt",
    ),
    MetricSpec(
        name="crawler.requests.in_flight",
        prometheus="crawler_requests_in_flight",
        kind="gauge",
        unit="{request}",
        description="Requests claimed from the frontier and not fully processed",
    ),
    MetricSpec(
        name="crawler.frontier.queued",
        prometheus="crawler_frontier_queued",
        kind="gauge",
        unit="{request}",
        description="Requests waiting in the frontier (ready or delayed)",
    ),
    MetricSpec(
        name="crawler.frontier.delayed",
        prometheus="crawler_frontier_delayed",
        kind="gauge",
        unit="{request}",
        description="Requests in the frontier waiting for their not-before time (retries, backoff)",
    ),
    MetricSpec(
        name="crawler.host.delay",
        prometheus="crawler_host_delay_seconds",
        kind="gauge",
        unit="s",
        description="Seconds between request starts to a host (politeness: configured, robots.txt, adaptive)",
        labels=("server.address",),
    ),
    MetricSpec(
        name="crawler.host.limit",
        prometheus="crawler_host_limit",
        kind="gauge",
        unit="{request}",
        description="Requests allowed in flight to a host (politeness)",
        labels=("server.address",),
    ),
)

#: Prometheus label names for the OpenTelemetry attribute names (dots are not allowed in Prometheus labels).
PROMETHEUS_LABELS = {
    "crawler.spider": "spider",
    "http.response.status_code": "status_code",
    "error.type": "error_type",
    "server.address": "host",
}


def _loop_scheduler() -> Callable[[Callable[[], None]], object]:
    """The running event loop's thread-safe "call this soon"."""
    import trio

    try:
        return trio.lowlevel.current_trio_token().run_sync_soon
    except RuntimeError:  # not in trio: asyncio
        return asyncio.get_running_loop().call_soon_threadsafe


class CrawlMetrics:
    """Reads one crawl's metrics (see :data:`METRICS`) from its engine.

    :meth:`start` is called on the event loop when the crawl starts, :meth:`stop` when it ends (the last
    reading is kept, the engine let go).  :meth:`read` may be called from any thread.  ``requests`` is counted by
    the observer; ``max_hosts`` bounds the per-host series (the hosts with the longest delays are kept).
    """

    def __init__(self, engine: Engine, *, max_hosts: int) -> None:
        self.spider: str = engine.spider.name
        self.requests = 0
        self._engine: Engine | None = engine
        self._max_hosts = max_hosts
        self._schedule: Callable[[Callable[[], None]], object] | None = None
        self._thread: int | None = None
        self._last: Reading = {}

    def start(self) -> None:
        """Note the event loop the crawl runs on (call it on that loop)."""
        self._schedule = _loop_scheduler()
        self._thread = threading.get_ident()

    def stop(self) -> None:
        """Take the final reading and let go of the engine (call it on the event loop)."""
        if self._engine is not None:
            self._last = self._read()
            self._engine = None
        self._schedule = None

    def read(self) -> Reading:
        """The metrics now, from any thread; after :meth:`stop`, the final reading."""
        schedule = self._schedule
        if self._engine is None:
            return self._last
        if schedule is None or threading.get_ident() == self._thread:
            return self._read()
        future: concurrent.futures.Future[Reading] = concurrent.futures.Future()

        def on_loop() -> None:
            try:
                future.set_result(self._read() if self._engine is not None else self._last)
            except BaseException as exc:
                future.set_exception(exc)

        try:
            schedule(on_loop)
            return future.result(timeout=READ_TIMEOUT)
        except (RuntimeError, concurrent.futures.TimeoutError):  # the loop is gone or busy
            return self._last

    def _read(self) -> Reading:
        engine = self._engine
        assert engine is not None
        stats = engine.stats
        frontier = engine.frontier.statistics()
        hosts = sorted(
            ((host, policy.snapshot(), policy.limit) for host, policy in engine.politeness.hosts().items()),
            key=lambda entry: (-float(entry[1].get("delay", 0.0)), entry[0]),
        )[: self._max_hosts]
        reading: Reading = {
            "crawler.requests": [({}, self.requests)],
            "crawler.responses": [
                ({"http.response.status_code": str(status)}, n) for status, n in sorted(stats.statuses.items())
            ],
            "crawler.response.bytes": [({}, getattr(stats, "bytes", 0))],
            "crawler.pages": [({}, stats.counts["pages"])],
            "crawler.items": [({}, stats.counts["items"])],
            "crawler.errors": [({"error.type": kind}, n) for kind, n in sorted(stats.errors.items())],
            "crawler.retries": [({}, stats.counts["retries"])],
            "crawler.requests.in_flight": [({}, engine.in_flight)],
            "crawler.frontier.queued": [({}, frontier.queued)],
            "crawler.frontier.delayed": [({}, frontier.delayed)],
            "crawler.host.delay": [({"server.address": host}, _number(snap.get("delay"))) for host, snap, _ in hosts],
            "crawler.host.limit": [({"server.address": host}, limit) for host, _, limit in hosts],
        }
        self._last = reading
        return reading


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
