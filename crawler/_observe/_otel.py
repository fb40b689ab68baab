"""OpenTelemetry: spans for requests and callbacks, and the crawl's metrics as observable instruments.

Only the OpenTelemetry API is used here, with the global providers (``opentelemetry.trace.set_tracer_provider``,
``opentelemetry.metrics.set_meter_provider``) that the application sets up.  :func:`configure_from_env` is for
the command line, which is an application: it sets SDK providers whose exporters the standard ``OTEL_*``
environment variables choose, unless something (``opentelemetry-instrument``, say) already set them.

Spans follow the HTTP client semantic conventions (https://opentelemetry.io/docs/specs/semconv/http/http-spans/):
a ``CLIENT`` span named after the method, with ``http.request.method``, ``url.full`` (credentials and secret
query parameters redacted by :func:`crawler.redact`; the spider's URL, never one a middleware added credentials
to), ``server.address``, ``server.port``, ``http.request.resend_count`` (on retries),
``http.response.status_code``, ``http.response.body.size``, and ``error.type`` (the exception's class name, or
the status code for a status >= 400, which also sets the span's status to ERROR).  A callback span is named
``SPIDER.CALLBACK`` and has ``crawler.spider``, ``crawler.callback``, ``code.function.name``, ``url.full`` and
``crawler.items`` (items yielded).
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Iterator
from importlib.metadata import entry_points
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from crawler._exceptions import CloseSpider, DropItem, IgnoreRequest, SettingsError
from crawler._log import redact
from crawler._observe._metrics import METRICS, CrawlMetrics, MetricSpec
from crawler._observe._span import Span
from crawler._settings import VERSION

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
    from opentelemetry.trace import Tracer

    from crawler._request import Request
    from crawler._response import Response

__all__ = ["CallbackSpan", "OtelMetrics", "RequestSpan", "configure_from_env", "require", "tracer"]

INSTALL_HINT = "pip install 'crawler[otel]'"
_SIGNALS = (CloseSpider, IgnoreRequest, DropItem)  # steer the crawl; not errors
_DEFAULT_PORTS = {"http": 80, "https": 443}


def require() -> None:
    """Raise :class:`crawler.SettingsError` unless the OpenTelemetry API can be imported."""
    try:
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise SettingsError(f"metrics.otel is on, but OpenTelemetry is not installed ({exc}): {INSTALL_HINT}") from None


def tracer() -> Tracer:
    """crawler's tracer, from the global tracer provider."""
    from opentelemetry import trace

    return trace.get_tracer("crawler", VERSION)


def _message(exc: BaseException, url: str) -> str:
    """The exception's message with no credentials: a URL a middleware added them to becomes the spider's."""
    text = str(exc)
    sent = getattr(exc, "url", None)
    if isinstance(sent, str) and sent and sent != url:
        text = text.replace(sent, url)
    return redact(text)


class _OtelSpan(Span):
    """Starts an OpenTelemetry span on enter and makes it current (callbacks' own spans nest under it); ends it on
    exit with the error, if any."""

    __slots__ = ("_attributes", "_kind", "_name", "_span", "_token", "_tracer", "_url")

    def __init__(self, tracer: Tracer, name: str, url: str, attributes: dict[str, Any], *, client: bool) -> None:
        super().__init__()
        self._tracer, self._name, self._url, self._attributes, self._kind = tracer, name, url, attributes, client
        self._span: Any = None
        self._token: object = None

    def __enter__(self) -> Span:
        from opentelemetry import context, trace

        kind = trace.SpanKind.CLIENT if self._kind else trace.SpanKind.INTERNAL
        self._span = self._tracer.start_span(
            self._name, kind=kind, attributes=self._attributes, record_exception=False, set_status_on_exception=False
        )
        self._token = context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        from opentelemetry import context

        try:
            self._finish(exc)
        finally:
            self._span.end()
            context.detach(self._token)  # type: ignore[arg-type]

    def _finish(self, exc: BaseException | None) -> None:
        if exc is not None:
            self._error(type(exc).__name__, _message(exc, self._url), exc)

    def _error(self, kind: str, message: str | None, exc: BaseException | None = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        span = self._span
        span.set_attribute("error.type", kind)
        if exc is not None:  # the SDK's own message and stack trace would carry secrets in clear
            trace_text = "".join(traceback.format_exception(exc))
            span.record_exception(
                exc, attributes={"exception.message": message or "", "exception.stacktrace": redact(trace_text)}
            )
        span.set_status(Status(StatusCode.ERROR, message))


class RequestSpan(_OtelSpan):
    """The span of one request: middleware and transport, ended when the response (or the error) is in."""

    __slots__ = ("_size", "_status")

    def __init__(self, tracer: Tracer, request: Request, spider: str) -> None:
        url = request.url
        parts = urlsplit(url)
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "url.full": redact(url),
            "server.address": parts.hostname or "",
            "server.port": parts.port or _DEFAULT_PORTS.get(parts.scheme, 0),
            "crawler.spider": spider,
        }
        if request.attempt:
            attributes["http.request.resend_count"] = request.attempt
        super().__init__(tracer, request.method, url, attributes, client=True)
        self._status: int | None = None
        self._size = 0

    def record(self, response: Response) -> None:
        self._status = response.status
        self._size = len(response.body)

    def _finish(self, exc: BaseException | None) -> None:
        if exc is not None or self._status is None:
            super()._finish(exc)
            return
        self._span.set_attribute("http.response.status_code", self._status)
        self._span.set_attribute("http.response.body.size", self._size)
        if self._status >= 400:
            self._error(str(self._status), None)


class CallbackSpan(_OtelSpan):
    """The span of one callback or errback run, with the items it yielded."""

    __slots__ = ()

    def __init__(self, tracer: Tracer, callback: Any, url: str, spider: str) -> None:
        name = getattr(callback, "__name__", "?")
        attributes = {
            "crawler.spider": spider,
            "crawler.callback": name,
            "code.function.name": getattr(callback, "__qualname__", name),
            "url.full": redact(url),
        }
        super().__init__(tracer, f"{spider}.{name}", url, attributes, client=False)

    def _finish(self, exc: BaseException | None) -> None:
        self._span.set_attribute("crawler.items", self.items)
        if isinstance(exc, _SIGNALS):
            self._span.set_attribute("crawler.signal", type(exc).__name__)
        else:
            super()._finish(exc)


class OtelMetrics:
    """The crawl metrics as observable instruments on one meter, created once per meter (instruments cannot be
    removed, and the SDK ignores the callbacks of a second instrument of the same name).  Their callbacks read
    every crawl added with :meth:`add` (shared by all meters, so that a crawl is reported even when its meter's
    instruments were ignored as duplicates), each sample tagged ``crawler.spider``; a finished crawl keeps
    reporting its final reading until a crawl of the same spider replaces it."""

    _by_meter: ClassVar[dict[int, tuple[Meter, OtelMetrics]]] = {}
    _sources: ClassVar[dict[str, CrawlMetrics]] = {}

    def __init__(self, meter: Meter) -> None:
        for spec in METRICS:
            create = meter.create_observable_counter if spec.kind == "counter" else meter.create_observable_gauge
            callback = functools.partial(self._observe, spec)
            create(spec.name, callbacks=[callback], unit=spec.unit, description=spec.description)

    @classmethod
    def for_current_provider(cls) -> OtelMetrics:
        """The instruments on crawler's meter of the global meter provider."""
        from opentelemetry import metrics

        meter = metrics.get_meter("crawler", VERSION)
        found = cls._by_meter.get(id(meter))
        if found is None or found[0] is not meter:
            found = cls._by_meter[id(meter)] = (meter, cls(meter))
        return found[1]

    def add(self, source: CrawlMetrics) -> None:
        """Report ``source`` (replacing an earlier crawl of the same spider)."""
        self._sources[source.spider] = source

    def _observe(self, spec: MetricSpec, options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        for spider, source in list(self._sources.items()):
            for attributes, value in source.read().get(spec.name, ()):
                yield Observation(value, {"crawler.spider": spider, **attributes})


# -- the command line's SDK set-up -------------------------------------------------------------------------------
def _exporter_names(signal: str) -> list[str]:
    """Exporter entry-point names for ``signal`` (``traces`` or ``metrics``) from ``OTEL_<SIGNAL>_EXPORTER``
    (default ``otlp``; ``none``: none); ``otlp`` picks the protocol from ``OTEL_EXPORTER_OTLP_[<SIGNAL>_]PROTOCOL``
    (``http/protobuf`` by default, or ``grpc``)."""
    value = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp").strip().lower()
    names = [] if value in ("", "none") else [name.strip() for name in value.split(",") if name.strip()]
    protocol = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    otlp = "otlp_proto_grpc" if protocol.strip().lower() == "grpc" else "otlp_proto_http"
    return [otlp if name == "otlp" else name for name in names]


def _load_exporters(signal: str) -> list[Any]:
    group = f"opentelemetry_{signal}_exporter"
    found = {ep.name: ep for ep in entry_points(group=group)}
    loaded = []
    for name in _exporter_names(signal):
        if name not in found:
            package = {
                "otlp_proto_http": "opentelemetry-exporter-otlp-proto-http",
                "otlp_proto_grpc": "opentelemetry-exporter-otlp-proto-grpc",
            }.get(name, "the package that provides it")
            raise SettingsError(
                f"OTEL_{signal.upper()}_EXPORTER asks for the {name!r} exporter, which is not installed "
                f"(installed: {', '.join(sorted(found)) or 'none'}): pip install {package}, or set "
                f"OTEL_{signal.upper()}_EXPORTER=console or none"
            )
        loaded.append(found[name].load())
    return loaded


def configure_from_env() -> None:
    """Set up the OpenTelemetry SDK for the command line from the standard environment variables, unless the
    global providers are already set (by ``opentelemetry-instrument``, for one) or ``OTEL_SDK_DISABLED=true``.

    ``OTEL_TRACES_EXPORTER`` and ``OTEL_METRICS_EXPORTER`` (``otlp`` by default, ``console``, ``none``, or any
    installed exporter's entry-point name) choose the exporters; the exporters read their own variables
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, ...), the resource reads ``OTEL_SERVICE_NAME`` (default ``crawler``) and
    ``OTEL_RESOURCE_ATTRIBUTES``, the metric reader ``OTEL_METRIC_EXPORT_INTERVAL``.  The providers flush at exit.

    Raises :class:`crawler.SettingsError` when the SDK or a named exporter is not installed.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise SettingsError(f"--otel needs the OpenTelemetry SDK ({exc}): {INSTALL_HINT}") from None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "crawler"}))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        tracer_provider = TracerProvider(resource=resource)
        for exporter in _load_exporters("traces"):
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter()))
        trace.set_tracer_provider(tracer_provider)
    if type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider":  # nothing set it yet
        readers = [
            cls() if isinstance(cls, type) and issubclass(cls, MetricReader) else PeriodicExportingMetricReader(cls())
            for cls in _load_exporters("metrics")
        ]
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
