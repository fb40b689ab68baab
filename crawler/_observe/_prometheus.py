"""The Prometheus endpoint: ``GET /metrics`` in the text exposition format, served by prometheus-client from a
daemon thread, with a collector that reads the crawl at scrape time (nothing is counted per request for it).

The registry is the endpoint's own (not prometheus-client's global one): the crawl's metrics (see
:data:`crawler._observe._metrics.METRICS`, each with a ``spider`` label) and the process, platform and garbage
collector metrics that prometheus-client provides.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import anyio

from crawler._exceptions import SettingsError
from crawler._observe._metrics import METRICS, PROMETHEUS_LABELS, CrawlMetrics

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["INSTALL_HINT", "CrawlCollector", "PrometheusEndpoint", "require"]

INSTALL_HINT = "pip install 'crawler[prometheus]'"


def require() -> None:
    """Raise :class:`crawler.SettingsError` unless prometheus-client can be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise SettingsError(
            f"metrics.port is set, but prometheus-client is not installed ({exc}): {INSTALL_HINT}"
        ) from None


class CrawlCollector:
    """A prometheus-client collector of one crawl's metrics, read when scraped."""

    def __init__(self, metrics: CrawlMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        reading = self._metrics.read()
        spider = self._metrics.spider
        for spec in METRICS:
            labels = ["spider", *(PROMETHEUS_LABELS[name] for name in spec.labels)]
            family_class = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            family = family_class(spec.prometheus, spec.description, labels=labels)
            for attributes, value in reading.get(spec.name, ()):
                family.add_metric([spider, *(attributes[name] for name in spec.labels)], value)
            yield family


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        return None


class PrometheusEndpoint:
    """Binds ``host:port`` (port 0: a free one) when built, serves from a daemon thread after :meth:`start`, and
    stops with :meth:`aclose`.  Raises :class:`crawler.SettingsError` naming ``metrics.port`` when the address
    cannot be bound."""

    def __init__(self, host: str, port: int, metrics: CrawlMetrics) -> None:
        from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
        from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

        registry = CollectorRegistry(auto_describe=True)
        registry.register(CrawlCollector(metrics))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

        class Server(ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        try:
            self._server = make_server(host, port, make_wsgi_app(registry), Server, handler_class=_QuietHandler)
        except OSError as exc:
            raise SettingsError(
                f"metrics.port: cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
                "choose another port (0: any free one) or metrics.host"
            ) from None
        self.host = host
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def port(self) -> int:
        """The bound port (the one chosen when 0 was asked for)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        """Serve from a daemon thread."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._server.serve_forever, name="crawler-metrics", daemon=True)
            self._thread.start()

    async def aclose(self) -> None:
        """Stop serving and close the socket (the wait for the serving thread happens in a worker thread)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            await anyio.to_thread.run_sync(self._server.shutdown)
            self._thread = None
        self._server.server_close()
