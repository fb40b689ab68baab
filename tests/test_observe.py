"""Observability: OpenTelemetry spans and metrics (the SDK's in-memory exporter and reader) and the Prometheus
endpoint (scraped on 127.0.0.1 and parsed with prometheus-client's parser), on real crawls of local servers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from crawler import Engine, Request, Response, Settings, SettingsError, Spider, load_settings
from crawler._observe import METRICS
from crawler._observe._metrics import CrawlMetrics
from crawler._observe._prometheus import PrometheusEndpoint
from crawler.testing import LocalServer, generate_site

SECRET_PARAM = "s3cr3t-in-the-spider-url"
SECRET_KEY = "k3y-added-by-the-middleware"
SECRET_MESSAGE = "t0ken-in-an-exception"

# -- OpenTelemetry: the SDK with in-memory exporters, set once per process (global providers cannot be replaced)
_SPANS = InMemorySpanExporter()
_READER = InMemoryMetricReader()


@pytest.fixture(scope="module")
def otel() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    tracer_provider = trace.get_tracer_provider()
    if isinstance(tracer_provider, trace.ProxyTracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_SPANS))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    assert isinstance(metrics.get_meter_provider(), MeterProvider)
    return _SPANS, _READER


@pytest.fixture
def spans(otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> Iterator[InMemorySpanExporter]:
    otel[0].clear()
    yield otel[0]
    otel[0].clear()


def otel_values(reader: InMemoryMetricReader, spider: str) -> dict[str, dict[tuple[tuple[str, Any], ...], float]]:
    """{metric name: {other attributes: value}} for one spider's samples, from a collection now."""
    data = reader.get_metrics_data()
    found: dict[str, dict[tuple[tuple[str, Any], ...], float]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attributes = dict(point.attributes or {})
                    if attributes.pop("crawler.spider", None) == spider:
                        found.setdefault(metric.name, {})[tuple(sorted(attributes.items()))] = point.value  # type: ignore[union-attr]
    return found


def prometheus_values(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {labels without spider: value}} from the text exposition format."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            labels.pop("spider", None)
            found.setdefault(sample.name, {})[tuple(sorted(labels.items()))] = sample.value
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def record_reading_threads(engine: Engine) -> set[int]:
    """Make the engine's frontier note the threads its statistics are read on."""
    threads: set[int] = set()
    statistics = engine.frontier.statistics

    def noting() -> Any:
        threads.add(threading.get_ident())
        return statistics()

    engine.frontier.statistics = noting  # type: ignore[method-assign]
    return threads


def settings(**values: Any) -> Settings:
    return load_settings(environ={}, config_dir=Path("/nonexistent"), cli=values)


class Collect:
    """A sink that keeps records in memory."""

    uri = "memory:"

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    async def open(self) -> None:
        return None

    async def write(self, batch: Any) -> None:
        self.items.extend(record.item for record in batch)

    async def close(self) -> None:
        return None


ROUTES = {
    "/start": b"<html><body>start</body></html>",
    "/probe": b"<html><body>probe</body></html>",
    "/boom": b"<html><body>boom</body></html>",
}


class Observed(Spider):
    """start: three items and the probe; probe: reads the metrics (``probe_with``), then a 404, a callback that
    raises, and a closed port (retried once)."""

    name = "observed"

    def __init__(self, base: str, closed: str, probe_with: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self.start_urls = [f"{base}/start?api_key={SECRET_PARAM}&page=1"]  # type: ignore[misc]
        self.base, self.closed, self.probe_with = base, closed, probe_with

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        for n in range(3):
            yield {"n": n}
        yield Request(url=f"{self.base}/probe", callback="probe")

    async def probe(self, response: Response) -> AsyncIterator[Any]:
        await self.probe_with()
        yield Request(url=f"{self.base}/missing")
        yield Request(url=f"{self.base}/boom", callback="boom")
        yield Request(url=f"{self.closed}/nothing-listens")

    async def boom(self, response: Response) -> AsyncIterator[Any]:
        yield {"n": 3}
        raise ValueError(f"bad answer from {self.base}/boom?token={SECRET_MESSAGE}")

    async def errback(self, failure: Any) -> None:
        return None


def observed_settings(**values: Any) -> Settings:
    return settings(
        **{
            "crawl.obey_robots": False,
            "crawl.concurrency": 4,
            "retry.max_attempts": 2,
            "retry.backoff_base": 0.0,
            "auth.kind": "api_key",
            "auth.secret": "env:OBSERVE_TEST_KEY",
            "auth.query_param": "k",
            "auth.hosts": ("127.0.0.1",),
            **values,
        }
    )


def all_span_text(finished: tuple[ReadableSpan, ...]) -> str:
    return "\n".join(span.to_json() for span in finished)


# -- OpenTelemetry ------------------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_spans_and_metrics_of_a_crawl(
    spans: InMemorySpanExporter,
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OBSERVE_TEST_KEY", SECRET_KEY)
    reader = otel[1]
    during: dict[str, Any] = {}

    async def probe() -> None:
        during["loop"] = otel_values(reader, "observed")  # collected on the event loop's thread
        during["thread"] = await anyio.to_thread.run_sync(otel_values, reader, "observed")  # from another thread

    sink, errors = Collect(), Collect()
    with LocalServer(ROUTES) as server:
        closed = f"http://127.0.0.1:{free_port()}"
        spider = Observed(server.base_url, closed, probe)
        engine = Engine(spider, observed_settings(**{"metrics.otel": True}), sinks=[sink], error_sinks=[errors])
        threads = record_reading_threads(engine)
        stats = await engine.run()
        hits = server.stats().hits_by_url()

    assert any(SECRET_KEY in url for url in hits)  # the middleware did add the key to what was sent
    assert [item["n"] for item in sink.items] == [0, 1, 2, 3]
    assert threads == {threading.get_ident()}  # read on the event loop's thread, even when collected elsewhere
    finished = spans.get_finished_spans()
    text = all_span_text(finished)
    assert SECRET_PARAM not in text and SECRET_KEY not in text and SECRET_MESSAGE not in text

    requests = [s for s in finished if s.kind == SpanKind.CLIENT]
    by_path: dict[str, list[ReadableSpan]] = {}
    for span in requests:
        assert span.name == "GET"
        assert span.attributes is not None
        path = str(span.attributes["url.full"]).split("/", 3)[3].split("?")[0]
        by_path.setdefault(path, []).append(span)
    assert sorted(by_path) == ["boom", "missing", "nothing-listens", "probe", "start"]

    start = by_path["start"][0]
    assert start.attributes is not None
    assert start.attributes["url.full"] == f"{server.base_url}/start?api_key=***&page=1"
    assert start.attributes["http.request.method"] == "GET"
    assert start.attributes["server.address"] == "127.0.0.1"
    assert start.attributes["server.port"] == server.port
    assert start.attributes["http.response.status_code"] == 200
    assert start.attributes["http.response.body.size"] == len(ROUTES["/start"])
    assert "http.request.resend_count" not in start.attributes
    assert start.status.status_code == StatusCode.UNSET

    missing = by_path["missing"][0]
    assert missing.attributes is not None
    assert missing.attributes["http.response.status_code"] == 404
    assert missing.attributes["error.type"] == "404"
    assert missing.status.status_code == StatusCode.ERROR

    attempts = sorted(by_path["nothing-listens"], key=lambda s: s.start_time or 0)
    assert len(attempts) == 2
    first, second = (s.attributes for s in attempts)
    assert first is not None and second is not None
    assert "http.request.resend_count" not in first and second["http.request.resend_count"] == 1
    assert all(s.attributes is not None and s.attributes["error.type"] == "ConnectError" for s in attempts)
    assert all(s.status.status_code == StatusCode.ERROR for s in attempts)
    assert all("http.response.status_code" not in (s.attributes or {}) for s in attempts)

    callbacks = {s.name: s for s in finished if s.kind == SpanKind.INTERNAL}
    assert set(callbacks) == {"observed.parse", "observed.probe", "observed.boom", "observed.errback"}
    parse = callbacks["observed.parse"].attributes
    assert parse is not None
    assert parse["crawler.spider"] == "observed" and parse["crawler.callback"] == "parse"
    assert parse["crawler.items"] == 3
    assert parse["url.full"] == f"{server.base_url}/start?api_key=***&page=1"
    probe_span = callbacks["observed.probe"].attributes
    assert probe_span is not None and probe_span["crawler.items"] == 0
    boom = callbacks["observed.boom"]
    assert boom.attributes is not None and boom.attributes["crawler.items"] == 1
    assert boom.attributes["error.type"] == "ValueError"
    assert boom.status.status_code == StatusCode.ERROR
    (event,) = boom.events
    assert event.name == "exception" and event.attributes is not None
    assert event.attributes["exception.message"] == f"bad answer from {server.base_url}/boom?token=***"

    # mid-crawl, from the probe: two pages, three items, the probe in flight
    for where in ("loop", "thread"):
        seen = during[where]
        assert seen["crawler.requests"] == {(): 2}, where
        assert seen["crawler.pages"] == {(): 2}
        assert seen["crawler.items"] == {(): 3}
        assert seen["crawler.responses"] == {(("http.response.status_code", "200"),): 2}
        assert seen["crawler.requests.in_flight"][()] >= 1
        assert seen["crawler.frontier.queued"] == {(): 0}

    # after the crawl: the final reading stays
    final = otel_values(reader, "observed")
    assert set(final) == {spec.name for spec in METRICS}
    assert final["crawler.requests"] == {(): 6}
    assert final["crawler.responses"] == {
        (("http.response.status_code", "200"),): 3,
        (("http.response.status_code", "404"),): 1,
    }
    assert final["crawler.items"] == {(): stats.counts["items"]} == {(): 4}
    assert final["crawler.pages"] == {(): 3}
    assert final["crawler.retries"] == {(): 1}
    assert final["crawler.response.bytes"] == {(): stats.bytes}
    assert final["crawler.errors"] == {(("error.type", k),): n for k, n in stats.errors.items()}
    assert {k for (((_, k),), _) in final["crawler.errors"].items()} >= {"ConnectError", "http_404"}
    assert final["crawler.requests.in_flight"] == {(): 0}
    hosts = {dict(labels)["server.address"] for labels in final["crawler.host.delay"]}
    assert hosts == {server.authority, closed.removeprefix("http://")}
    assert set(final["crawler.host.limit"].values()) == {2}


@pytest.mark.anyio
async def test_host_delay_metric_follows_the_politeness(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    site = generate_site(pages=5, links_per_page=2, seed=1)
    with LocalServer(site) as server:

        class Site(Spider):
            name = "delayed"
            start_urls = (server.url("/index.html"),)

            async def parse(self, response: Response) -> AsyncIterator[Any]:
                yield {"url": response.url}

        engine = Engine(
            Site(),
            settings(**{"crawl.obey_robots": False, "crawl.delay": 0.25, "crawl.jitter": 0.0, "metrics.otel": True}),
            sinks=[Collect()],
            error_sinks=[Collect()],
        )
        await engine.run()

    values = otel_values(otel[1], "delayed")
    ((labels, delay),) = values["crawler.host.delay"].items()
    assert dict(labels) == {"server.address": server.authority}
    assert delay >= 0.25


def test_per_host_series_are_bounded() -> None:
    engine = _bare_engine()
    for n, delay in enumerate([0.5, 3.0, 1.0, 0.0]):
        engine.politeness.get(f"host{n}.test").delay = delay
    reading = CrawlMetrics(engine, max_hosts=2).read()
    assert reading["crawler.host.delay"] == [
        ({"server.address": "host1.test"}, 3.0),
        ({"server.address": "host2.test"}, 1.0),
    ]


# -- Prometheus ---------------------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_prometheus_endpoint_during_the_crawl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVE_TEST_KEY", SECRET_KEY)
    port = free_port()
    scraped: list[str] = []

    async def probe() -> None:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        scraped.append(response.text)

    with LocalServer(ROUTES) as server:
        spider = Observed(server.base_url, f"http://127.0.0.1:{free_port()}", probe)
        engine = Engine(spider, observed_settings(**{"metrics.port": port}), sinks=[Collect()], error_sinks=[Collect()])
        threads = record_reading_threads(engine)
        await engine.run()

    (text,) = scraped
    assert threads == {threading.get_ident()}  # the scrape, on the server's thread, read on the event loop's
    values = prometheus_values(text)
    assert values["crawler_requests_total"] == {(): 2}
    assert values["crawler_pages_total"] == {(): 2}
    assert values["crawler_items_total"] == {(): 3}
    assert values["crawler_responses_total"] == {(("status_code", "200"),): 2}
    assert values["crawler_response_bytes_total"] == {(): len(ROUTES["/start"]) + len(ROUTES["/probe"])}
    assert values["crawler_frontier_queued"] == {(): 0}
    assert values["crawler_requests_in_flight"][()] >= 1
    assert values["crawler_host_limit"] == {(("host", server.authority),): 2}
    assert (("host", server.authority),) in values["crawler_host_delay_seconds"]
    assert "process_resident_memory_bytes" in values or sys.platform != "linux"
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["crawler_requests"].type == "counter"
    assert families["crawler_requests_in_flight"].type == "gauge"
    assert all(s.labels["spider"] == "observed" for s in families["crawler_items"].samples)
    assert SECRET_PARAM not in text and SECRET_KEY not in text

    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):  # the endpoint stops with the crawl
            await client.get(f"http://127.0.0.1:{port}/metrics")


@pytest.mark.anyio
async def test_prometheus_endpoint_on_any_free_port() -> None:
    engine = _bare_engine(**{"metrics.port": 0})
    observer = engine._observer
    assert observer is not None and observer.prometheus is not None
    endpoint = observer.prometheus
    assert endpoint.port > 0 and endpoint.url == f"http://127.0.0.1:{endpoint.port}/metrics"
    await observer.start()
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(endpoint.url)).text
    finally:
        await observer.aclose()
    assert prometheus_values(text)["crawler_items_total"] == {(): 0}


def test_a_port_in_use_is_a_settings_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match=rf"metrics.port: cannot serve metrics on 127.0.0.1:{port}"):
            PrometheusEndpoint("127.0.0.1", port, CrawlMetrics(_bare_engine(), max_hosts=1))


def _bare_engine(**values: Any) -> Engine:
    """An engine never run, with ``values`` as settings."""
    return Engine(
        Observed("http://127.0.0.1:1", "http://127.0.0.1:2", anyio.lowlevel.checkpoint),
        settings(**values),
        sinks=[Collect()],
        error_sinks=[Collect()],
    )


# -- off by default, settings, missing packages ---------------------------------------------------------------------
def test_off_by_default_nothing_is_built_or_imported() -> None:
    assert _bare_engine()._observer is None
    code = (
        "import sys, crawler, crawler._cli\n"
        "e = crawler.Engine(crawler.Spider(), crawler.Settings(), sinks=[], error_sinks=[])\n"
        "assert e._observer is None\n"
        "print(sorted(m for m in sys.modules if m.startswith(('crawler._observe._', 'prometheus_client'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # OpenTelemetry itself may be imported by other libraries (redis-py does, when it is installed)
    assert done.stdout.strip() == "['crawler._observe._metrics', 'crawler._observe._span']"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics.port": 70000}, "metrics: 'port' must be <= 65535"),
        ({"metrics.port": -1}, "metrics: 'port' must be >= 0"),
        ({"metrics.port": "http"}, "metrics.port: expected a whole number"),
        ({"metrics.otel": "yes"}, "metrics.otel: expected true or false"),
        ({"metrics.max_hosts": -1}, "metrics: 'max_hosts' must be >= 0"),
        ({"metrics.host": ""}, "metrics: Length of 'host' must be >= 1"),
        ({"metrics.prot": 9000}, "did you mean 'port'"),
    ],
)
def test_invalid_metrics_settings(values: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings(**values)


def test_metrics_settings_from_the_environment() -> None:
    loaded = load_settings(
        environ={"CRAWLER_METRICS_PORT": "9464", "CRAWLER_METRICS_OTEL": "true"}, config_dir=Path("/nonexistent")
    )
    assert (loaded.metrics.port, loaded.metrics.otel, loaded.metrics.host) == (9464, True, "127.0.0.1")
    assert Settings().metrics.port is None and not Settings().metrics.otel


@pytest.mark.parametrize(
    ("setting", "modules", "hint"),
    [
        ({"metrics.otel": True}, ("opentelemetry", "opentelemetry.trace", "opentelemetry.metrics"), "crawler[otel]"),
        ({"metrics.port": 0}, ("prometheus_client",), "crawler[prometheus]"),
    ],
)
def test_a_missing_package_is_a_clear_error(
    setting: dict[str, Any], modules: tuple[str, ...], hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(SettingsError, match=f"is not installed .*pip install '{re.escape(hint)}'"):
        _bare_engine(**setting)


# -- the command line ----------------------------------------------------------------------------------------------
def _crawler(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CRAWLER_"))}
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args], capture_output=True, text=True, cwd=cwd, env={**environ, **env}
    )


def test_cli_otel_with_the_console_exporters(tmp_path: Path) -> None:
    site = generate_site(pages=4, links_per_page=2, seed=2)
    with LocalServer(site) as server:
        done = _crawler(
            [
                "crawl",
                server.url(f"/index.html?api_key={SECRET_PARAM}"),
                "--otel",
                "--ignore-robots",
                "--no-progress",
                "-o",
                "items.jsonl",
            ],
            tmp_path,
            OTEL_TRACES_EXPORTER="console",
            OTEL_METRICS_EXPORTER="console",
            OTEL_SERVICE_NAME="docs-crawl",
        )
    assert done.returncode == 0, done.stderr
    assert SECRET_PARAM not in done.stdout
    decoder, position, documents = json.JSONDecoder(), 0, []
    text = done.stdout
    while (start := text.find("{", position)) != -1:  # the console exporters print JSON documents one after another
        document, position = decoder.raw_decode(text, start)
        documents.append(document)
    spans = [d for d in documents if "kind" in d and "attributes" in d]
    assert {s["attributes"].get("url.full") for s in spans if s["kind"] == "SpanKind.CLIENT"} >= {
        server.url("/index.html?api_key=***")
    }
    assert all(s["resource"]["attributes"]["service.name"] == "docs-crawl" for s in spans)
    items = (tmp_path / "items.jsonl").read_text().count("\n")
    exported = [
        point["value"]
        for d in documents
        for resource in d.get("resource_metrics", ())
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
        if metric["name"] == "crawler.items"
        for point in metric["data"]["data_points"]
    ]
    assert exported and exported[-1] == items > 0


def test_cli_otel_names_a_missing_exporter(tmp_path: Path) -> None:
    done = _crawler(
        ["crawl", "http://127.0.0.1:1/", "--otel", "--no-progress"], tmp_path, OTEL_TRACES_EXPORTER="zipkin_json"
    )
    assert done.returncode == 2
    message = " ".join(done.stderr.split())  # rich wraps long lines
    assert "OTEL_TRACES_EXPORTER asks for the 'zipkin_json' exporter, which is not installed" in message


def test_cli_metrics_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _crawler(["crawl", "http://127.0.0.1:1/", "--metrics-port", str(port), "--no-progress"], tmp_path)
    assert done.returncode == 2
    assert f"metrics.port: cannot serve metrics on 127.0.0.1:{port}" in " ".join(done.stderr.split())
