"""Observability: OpenTelemetry spans and metrics, and a Prometheus endpoint, both off unless the settings
(group ``metrics``) turn them on.

::

    Engine ──► Observer ──► RequestSpan / CallbackSpan ──► the global TracerProvider (the application's)
                  │
                  └──► CrawlMetrics.read() ◄── OtelMetrics (observable instruments, read at collection)
                                           ◄── CrawlCollector (prometheus-client, read at scrape)

Nothing here imports OpenTelemetry or prometheus-client until a setting asks for it; a missing package is a
:class:`crawler.SettingsError` with the command that installs it.  With both off, :func:`build_observer` returns
None and the engine uses :data:`NO_SPAN`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crawler._observe._metrics import METRICS, CrawlMetrics, MetricSpec
from crawler._observe._span import NO_SPAN, Span

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from crawler._engine import Engine
    from crawler._observe._prometheus import PrometheusEndpoint
    from crawler._request import Request
    from crawler._response import Response

__all__ = ["METRICS", "NO_SPAN", "CrawlMetrics", "MetricSpec", "Observer", "Span", "build_observer"]


class Observer:
    """One crawl's observability: its spans (``metrics.otel``), its metrics for OpenTelemetry (``metrics.otel``)
    and its Prometheus endpoint (``metrics.port``).  The engine builds it with :func:`build_observer`, calls
    :meth:`start` and :meth:`aclose` on its event loop around the crawl, and :meth:`request` and
    :meth:`callback` for each request and callback run."""

    def __init__(self, engine: Engine) -> None:
        settings = engine.settings.metrics
        self.spider = engine.spider.name
        self.metrics = CrawlMetrics(engine, max_hosts=settings.max_hosts)
        self._tracer: Tracer | None = None
        self.prometheus: PrometheusEndpoint | None = None
        self._log = engine.log
        if settings.otel:
            from crawler._observe import _otel

            _otel.require()
            self._tracer = _otel.tracer()
            _otel.OtelMetrics.for_current_provider().add(self.metrics)
        if settings.port is not None:
            from crawler._observe import _prometheus

            _prometheus.require()
            self.prometheus = _prometheus.PrometheusEndpoint(settings.host, settings.port, self.metrics)

    def request(self, request: Request) -> Span:
        """The span around one request's middleware and transport (counts the request too)."""
        self.metrics.requests += 1
        if self._tracer is None:
            return NO_SPAN
        from crawler._observe._otel import RequestSpan

        return RequestSpan(self._tracer, request, self.spider)

    def callback(self, callback: Any, request: Request, response: Response | None) -> Span:
        """The span around one callback or errback run."""
        if self._tracer is None:
            return NO_SPAN
        from crawler._observe._otel import CallbackSpan

        url = response.url if response is not None else request.url
        return CallbackSpan(self._tracer, callback, url, self.spider)

    async def start(self) -> None:
        """The crawl starts: note its event loop and serve the Prometheus endpoint."""
        self.metrics.start()
        if self.prometheus is not None:
            self.prometheus.start()
            self._log.info("metrics endpoint started", url=self.prometheus.url)

    async def aclose(self) -> None:
        """The crawl ended: keep its final metrics and stop the endpoint.  Never raises (it runs at shutdown)."""
        try:
            self.metrics.stop()
        except Exception as exc:
            self._log.error("final metrics not read", error=f"{type(exc).__name__}: {exc}")
        if self.prometheus is not None:
            try:
                await self.prometheus.aclose()
            except Exception as exc:
                self._log.error("metrics endpoint not closed", error=f"{type(exc).__name__}: {exc}")


def build_observer(engine: Engine) -> Observer | None:
    """The engine's observer, or None when ``metrics.otel`` is off and ``metrics.port`` unset (the default).

    Raises :class:`crawler.SettingsError` when a package is missing or the Prometheus port cannot be bound."""
    settings = engine.settings.metrics
    if not settings.otel and settings.port is None:
        return None
    return Observer(engine)


def configure_otel_from_env() -> None:
    """For the command line: set up the OpenTelemetry SDK from ``OTEL_*`` (see
    :func:`crawler._observe._otel.configure_from_env`)."""
    from crawler._observe._otel import configure_from_env

    configure_from_env()
