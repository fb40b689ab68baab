"""One ``crawler bench`` point, from both ends: the built-in local target, which the parent serves from threads;
:func:`run_point`, which the parent calls; and :func:`measure_point`, the measured crawl in the child process.

::

    parent                                                      child: a fresh process per point
    run_point(spec) ─► launcher (python -I -S) ─ fork, exec ─► main() ─► measure_point(spec)
       ▲ ◄── progress: "crawler-bench-pages N" lines on stdout ──┤      Engine ─► MeasuringTransport ─► httpx
       │ ◄── USAGE.json: wait4's CPU seconds and peak RSS         │
       └─ point_result() ─► PointResult ◄── RESULT.json ◄─────────┘
    LocalTarget (threads of the parent) ◄──────── HTTP ──────── the child's crawl

The child runs in a fresh process so that its CPU seconds and peak RSS are the crawl's own.  On Linux a process's
``ru_maxrss`` is at least the RSS of the process that forked it (the forked copy of the parent's memory counts
until exec), and the parent may hold a whole generated site: so the child is forked from a bare interpreter
(``benchmarks/spawn_measured.py`` does the same).  POSIX only (fork, wait4).
"""

from __future__ import annotations

import json
import math
import random
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Self, TextIO

import anyio
import attrs
import cattrs

from crawler._engine import Engine, default_transport
from crawler._generic import SiteSpider
from crawler._loader import load_spider_class
from crawler._log import configure_logging
from crawler._request import Request
from crawler._response import Response
from crawler._settings import Settings, load_settings
from crawler._spider import Spider
from crawler._transport import Transport
from crawler.testing import LocalServer, RateLimit, Reply, RequestCounter, RequestInfo, generate_site

__all__ = [
    "COLUMNS",
    "PROGRESS_PREFIX",
    "TRANSPORTS",
    "FixedWindowLimiter",
    "LocalTarget",
    "MeasuringTransport",
    "PointResult",
    "PointSpec",
    "TransportKind",
    "failed_point",
    "main",
    "make_spider",
    "measure_point",
    "percentile",
    "point_result",
    "point_settings",
    "run_point",
]

#: What the child prints before its page count on each progress line.
PROGRESS_PREFIX = "crawler-bench-pages"
_PROGRESS_INTERVAL = 0.25  # seconds between progress lines
_STARTUP_ALLOWANCE = 60.0  # seconds a point may take beyond its duration and grace before it is killed

# Run as ``python -I -S -c _LAUNCHER USAGE.json TIMEOUT COMMAND...``: fork and exec COMMAND, kill it after TIMEOUT
# seconds, write its wait4 rusage.  Ctrl-C reaches COMMAND (same process group); the launcher outlives it.
_LAUNCHER = """\
import json, os, signal, sys
usage_path, timeout, *command = sys.argv[1:]
pid = os.fork()
if pid == 0:
    try:
        os.execv(command[0], command)
    finally:
        os._exit(127)
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
signal.setitimer(signal.ITIMER_REAL, float(timeout))
_, status, usage = os.wait4(pid, 0)
signal.setitimer(signal.ITIMER_REAL, 0)
with open(usage_path, "w") as file:
    json.dump({"exit_code": os.waitstatus_to_exitcode(status), "user_s": usage.ru_utime,
               "sys_s": usage.ru_stime, "maxrss": usage.ru_maxrss}, file)
"""
_CHILD = "from crawler._bench_target import main; main()"


# -- transports --------------------------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class TransportKind:
    """A transport that ``crawler bench --transport`` can sweep: its ``name``, how to ``build`` it from the crawl's
    settings, and the event-loop ``backends`` it runs on."""

    name: str
    build: Callable[[Settings], Transport]
    backends: frozenset[str] = frozenset({"asyncio", "trio"})


def _named(name: Literal["auto", "httpx", "aiohttp"]) -> Callable[[Settings], Transport]:
    def build(settings: Settings) -> Transport:
        """The transport ``name``, configured as :class:`crawler.Engine` configures its default one."""
        return default_transport(attrs.evolve(settings, crawl=attrs.evolve(settings.crawl, transport=name)))

    return build


#: The transports known by name: the one list that ``--transport`` is checked against (``crawl.transport``).
TRANSPORTS: Mapping[str, TransportKind] = MappingProxyType(
    {
        "auto": TransportKind(name="auto", build=_named("auto")),
        "aiohttp": TransportKind(name="aiohttp", build=_named("aiohttp"), backends=frozenset({"asyncio"})),
        "httpx": TransportKind(name="httpx", build=_named("httpx")),
    }
)


class MeasuringTransport:
    """Wraps a transport and records every fetch: ``latencies`` (seconds from sending the request to holding the
    whole body, one per response of any status), ``statuses`` (count per status code) and ``exceptions`` (count
    per exception class name, for fetches that raised).  A cancelled fetch is not recorded."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.exceptions: Counter[str] = Counter()

    async def fetch(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await self.inner.fetch(request)
        except Exception as exc:
            self.exceptions[type(exc).__name__] += 1
            raise
        self.latencies.append(time.perf_counter() - started)
        self.statuses[response.status] += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0 < q <= 100) of ``values`` by the nearest-rank method (the smallest value with at
    least q % of the values at or below it), so p50 <= p95 <= p99 always; None when ``values`` is empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# -- the built-in local target -----------------------------------------------------------------------------------------
class FixedWindowLimiter:
    """``limit.quota`` requests per ``limit.window`` seconds in fixed windows that follow each other from the first
    request (window k is ``[t0 + k*window, t0 + (k+1)*window)``).  Thread-safe; times are :func:`time.monotonic`
    seconds.  Headers follow ``limit.dialect``: ``ietf`` (draft-ietf-httpapi-ratelimit-headers:
    ``RateLimit-Policy: "default";q=Q;w=W`` and ``RateLimit: "default";r=R;t=T`` on every answer) or ``none``;
    a refused request gets ``Retry-After`` (RFC 9110 §10.2.3, whole seconds until the window ends) either way.
    Other dialects raise ValueError."""

    def __init__(self, limit: RateLimit) -> None:
        if limit.dialect not in ("ietf", "none"):
            raise ValueError(f"unsupported rate-limit dialect {limit.dialect!r}: use 'ietf' or 'none'")
        self.limit = limit
        self._lock = threading.Lock()
        self._start: float | None = None
        self._admitted = 0

    def admit(self, now: float) -> tuple[bool, list[tuple[str, str]]]:
        """Count a request arriving at ``now``: (admitted, the headers to add to its answer)."""
        quota, window = self.limit.quota, self.limit.window
        with self._lock:
            if self._start is None or now >= self._start + window:
                start = now if self._start is None else self._start + (now - self._start) // window * window
                self._start, self._admitted = start, 0
            admitted = self._admitted < quota
            if admitted:
                self._admitted += 1
            remaining, reset = quota - self._admitted, self._start + window - now
        headers: list[tuple[str, str]] = []
        if self.limit.dialect == "ietf":
            w = str(int(window)) if float(window).is_integer() else f"{window:.3f}"
            t = max(0, math.ceil(reset))
            headers += [
                ("RateLimit-Policy", f'"default";q={quota};w={w}'),
                ("RateLimit", f'"default";r={remaining};t={t}'),
            ]
        if not admitted:
            headers.append(("Retry-After", str(max(1, math.ceil(reset)))))
        return admitted, headers

    def reset(self) -> None:
        """Forget the windows: the next request starts a new one."""
        with self._lock:
            self._start, self._admitted = None, 0


class _TargetServer(LocalServer):
    """A :class:`LocalServer` whose pages (all but ``/robots.txt``, so that no host is disallowed by a failed
    robots.txt) fail with 500 at ``error_rate`` and go through ``limiter``."""

    def __init__(
        self, content: Any, *, error_rate: float, seed: int, limiter: FixedWindowLimiter | None, **options: Any
    ) -> None:
        super().__init__(content, seed=seed, **options)
        self.limiter, self.error_rate = limiter, error_rate
        self._failures = random.Random(seed)
        self._failures_lock = threading.Lock()

    def respond(self, request: RequestInfo) -> Reply:
        if request.path == "/robots.txt":
            return super().respond(request)
        fields: list[tuple[str, str]] = []
        if self.limiter is not None:
            admitted, fields = self.limiter.admit(time.monotonic())
            if not admitted:
                return 429, [("Content-Type", "text/plain"), *fields], b"too many requests\n"
        if self.error_rate > 0.0:
            with self._failures_lock:
                failed = self._failures.random() < self.error_rate
            if failed:
                return 500, [("Content-Type", "text/plain"), *fields], b"injected error\n"
        status, headers, body = super().respond(request)
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        return status, [*pairs, *fields], body


class LocalTarget:
    """The built-in target of ``crawler bench``: a site of ``pages`` generated HTML pages (see
    :func:`crawler.testing.generate_site`) on ``host`` (127.0.0.1) at a free port, served from threads of this
    process.  Each answer waits ``latency`` seconds; ``error_rate`` (0..1) of the requests answer 500; with
    ``rate_limit`` (a :class:`crawler.testing.RateLimit`, dialect ``ietf`` or ``none``) pages beyond the quota
    answer 429 (see :class:`FixedWindowLimiter`).  ``/robots.txt`` (there is none: 404) is neither failed nor
    limited.  Use it as a context manager; :meth:`reset` between points."""

    def __init__(
        self,
        *,
        pages: int = 1000,
        latency: float = 0.0,
        error_rate: float = 0.0,
        rate_limit: RateLimit | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.limiter = FixedWindowLimiter(rate_limit) if rate_limit is not None else None
        self.server = _TargetServer(
            generate_site(pages=pages, hosts=(host,), seed=seed),
            host=host,
            latency=latency,
            error_rate=error_rate,
            seed=seed,
            counter=RequestCounter(log_requests=False),
            limiter=self.limiter,
        )

    @property
    def start_url(self) -> str:
        """``http://127.0.0.1:PORT/index.html``."""
        return self.server.url("/index.html")

    def reset(self) -> None:
        """Start afresh: a new rate-limit window, zeroed request counts."""
        if self.limiter is not None:
            self.limiter.reset()
        self.server.reset()

    def __enter__(self) -> Self:
        self.server.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.server.stop()


# -- one measured point (the child process) ----------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class PointSpec:
    """What the child crawls: ``target`` (start URLs, or one spider: file, ``module:Class`` or name) with
    ``spider_args``; the command-line settings ``cli`` (dotted keys, as :func:`crawler.load_settings` takes) and
    ``pairs`` (``-s KEY=VALUE``); the ``transport`` name; ``duration`` seconds before dispatching stops, and
    ``grace`` seconds more for the requests in flight."""

    target: tuple[str, ...]
    spider_args: dict[str, str] = attrs.field(factory=dict)
    cli: dict[str, Any] = attrs.field(factory=dict)
    pairs: tuple[str, ...] = ()
    transport: str = "httpx"
    duration: float = 20.0
    grace: float = 5.0


def make_spider(target: Sequence[str], spider_args: Mapping[str, str]) -> Spider:
    """The spider of a target: :class:`crawler.SiteSpider` for start URLs, else the spider class ``target[0]``
    names, built with ``spider_args``.  Raises :class:`crawler.SpiderLoadError` when it cannot be loaded."""
    if all(t.lower().startswith(("http://", "https://")) for t in target):
        return SiteSpider(list(target))
    return load_spider_class(target[0])(**spider_args)


def point_settings(spider: Spider, cli: Mapping[str, Any], pairs: Sequence[str]) -> Settings:
    """The settings of one point, from every layer as ``crawler crawl`` builds them.  Raises
    :class:`crawler.SettingsError` naming the key and the layer."""
    return load_settings(spider=(type(spider).__name__, type(spider).custom_settings), cli=cli, cli_pairs=list(pairs))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_point(spec: PointSpec, progress: TextIO | None = None) -> dict[str, Any]:
    """Crawl ``spec`` in this process with the real engine (items go nowhere) and return its figures: the
    effective ``concurrency``, ``per_host``, ``backend`` and ``transport``; ``pages``, ``elapsed_s``,
    ``stop_reason``; ``statuses``, ``exceptions`` and ``requests`` (fetches, robots.txt included);
    ``latency_p50_s``, ``latency_p95_s``, ``latency_p99_s``; ``cpu_s`` (this process's user + system seconds
    during the crawl, imports excluded).  Progress lines go to ``progress`` when given."""
    spider = make_spider(spec.target, spec.spider_args)
    settings = point_settings(spider, spec.cli, spec.pairs)
    transport = MeasuringTransport(TRANSPORTS[spec.transport].build(settings))
    engine = Engine(spider, settings, transport=transport, sinks=[], error_sinks=[])
    cpu = _cpu_seconds()
    anyio.run(_crawl, engine, spec, progress, backend=settings.crawl.backend)
    cpu = _cpu_seconds() - cpu
    latencies = transport.latencies
    return {
        "concurrency": settings.crawl.concurrency,
        "per_host": settings.crawl.per_host,
        "backend": settings.crawl.backend,
        "transport": spec.transport,
        "pages": engine.stats.counts["pages"],
        "elapsed_s": engine.stats.elapsed,
        "stop_reason": engine.stats.reason,
        "requests": len(latencies) + sum(transport.exceptions.values()),
        "statuses": {str(status): n for status, n in sorted(transport.statuses.items())},
        "exceptions": dict(transport.exceptions),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_p99_s": percentile(latencies, 99),
        "cpu_s": cpu,
    }


async def _crawl(engine: Engine, spec: PointSpec, progress: TextIO | None) -> None:
    async def stop_after_duration() -> None:
        await anyio.sleep(spec.duration)
        engine.stop("duration", deadline=spec.grace)

    async def report() -> None:
        assert progress is not None
        while True:
            progress.write(f"{PROGRESS_PREFIX} {engine.stats.counts['pages']}\n")
            progress.flush()
            await anyio.sleep(_PROGRESS_INTERVAL)

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_after_duration)
        if progress is not None:
            tg.start_soon(report)
        await engine.run()
        tg.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    """The child's entry point: ``SPEC.json RESULT.json``.  Logs (warnings and errors, JSON) go to stderr."""
    spec_path, result_path = argv if argv is not None else sys.argv[1:]
    spec = cattrs.structure(json.loads(Path(spec_path).read_text(encoding="utf-8")), PointSpec)
    configure_logging("json", "warning")
    result = measure_point(spec, progress=sys.stdout)
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")


# -- one point's figures, and running it from the parent ---------------------------------------------------------------
@attrs.frozen(kw_only=True)
class PointResult:
    """The figures of one point.  Rates are fractions of ``requests`` (every fetch, robots.txt included);
    ``errors`` are fetches that raised (timeouts, refused connections, ...) or answered 5xx; latency is seconds
    from sending a request to holding its whole body, over every response; ``cpu_s`` is the crawl's CPU seconds
    (user + system, imports excluded) and ``process_cpu_s`` the whole child process's; ``peak_rss_mb`` is its peak
    resident memory in MiB.  ``failure`` says why a point could not be measured (its figures are then zero)."""

    concurrency: int
    per_host: int
    backend: str
    transport: str
    pages: int = 0
    requests: int = 0
    elapsed_s: float = 0.0
    pages_per_s: float = 0.0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    errors: int = 0
    error_rate: float = 0.0
    status_429: int = 0
    rate_429: float = 0.0
    cpu_s: float = 0.0
    cpu_s_per_1k_pages: float | None = None
    process_cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    stop_reason: str = ""
    failure: str | None = None


#: The columns of ``--csv`` and of the rows of ``--json``: every field of :class:`PointResult`, then ``recommended``.
COLUMNS = (*(field.name for field in attrs.fields(PointResult)), "recommended")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def point_result(measured: dict[str, Any], usage: dict[str, Any], *, kib_per_maxrss: float = 1.0) -> PointResult:
    """Combine the child's figures (see :func:`measure_point`) and the launcher's rusage
    (``user_s``, ``sys_s``, ``maxrss`` in KiB, or in bytes with ``kib_per_maxrss=1/1024`` as on macOS)."""
    statuses = {int(status): n for status, n in measured["statuses"].items()}
    requests = measured["requests"]
    errors = sum(measured["exceptions"].values()) + sum(n for status, n in statuses.items() if status >= 500)
    pages, elapsed = measured["pages"], measured["elapsed_s"]
    return PointResult(
        concurrency=measured["concurrency"],
        per_host=measured["per_host"],
        backend=measured["backend"],
        transport=measured["transport"],
        pages=pages,
        requests=requests,
        elapsed_s=round(elapsed, 3),
        pages_per_s=round(pages / elapsed, 2) if elapsed > 0 else 0.0,
        latency_p50_s=_round(measured["latency_p50_s"], 6),
        latency_p95_s=_round(measured["latency_p95_s"], 6),
        latency_p99_s=_round(measured["latency_p99_s"], 6),
        errors=errors,
        error_rate=round(errors / requests, 4) if requests else 0.0,
        status_429=statuses.get(429, 0),
        rate_429=round(statuses.get(429, 0) / requests, 4) if requests else 0.0,
        cpu_s=round(measured["cpu_s"], 3),
        cpu_s_per_1k_pages=round(measured["cpu_s"] * 1000 / pages, 3) if pages else None,
        process_cpu_s=round(usage["user_s"] + usage["sys_s"], 3),
        peak_rss_mb=round(usage["maxrss"] * kib_per_maxrss / 1024, 1),
        stop_reason=measured["stop_reason"],
    )


def _maxrss_scale() -> float:
    return 1 / 1024 if sys.platform == "darwin" else 1.0  # macOS reports ru_maxrss in bytes, Linux in KiB


def failed_point(spec: PointSpec, why: str) -> PointResult:
    """The result of a point that could not be measured, ``why`` in :attr:`PointResult.failure`."""
    return PointResult(
        concurrency=spec.cli["crawl.concurrency"],
        per_host=spec.cli["crawl.per_host"],
        backend=spec.cli["crawl.backend"],
        transport=spec.transport,
        failure=why,
    )


def run_point(spec: PointSpec, workdir: Path, on_pages: Callable[[int], None]) -> PointResult:
    """Run one point in a child process forked from a bare launcher (see the module docstring) and read its
    figures; files go to ``workdir``; ``on_pages(n)`` is called as the child reports progress.  A child that fails
    or runs out of time gives a :func:`failed_point`."""
    spec_path, result_path, usage_path = workdir / "spec.json", workdir / "result.json", workdir / "usage.json"
    for path in (result_path, usage_path):
        path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(attrs.asdict(spec)), encoding="utf-8")
    timeout = spec.duration + spec.grace + _STARTUP_ALLOWANCE
    child = [sys.executable, "-c", _CHILD, str(spec_path), str(result_path)]
    stderr_path = workdir / "stderr.log"
    with stderr_path.open("w", encoding="utf-8") as stderr:
        launcher = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(usage_path), str(timeout), *child],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            assert launcher.stdout is not None
            for line in launcher.stdout:
                name, _, count = line.partition(" ")
                if name == PROGRESS_PREFIX and count.strip().isdigit():
                    on_pages(int(count))
        finally:
            launcher.wait()
    if not usage_path.is_file():
        return failed_point(spec, "the measuring launcher failed")
    usage = json.loads(usage_path.read_text(encoding="utf-8"))
    if usage["exit_code"] != 0 or not result_path.is_file():
        tail = stderr_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        if usage["exit_code"] == -9:
            tail = [f"killed after {timeout:g} s"]
        return failed_point(spec, f"exit status {usage['exit_code']}: {' | '.join(tail) or 'no message'}")
    measured = json.loads(result_path.read_text(encoding="utf-8"))
    return point_result(measured, usage, kib_per_maxrss=_maxrss_scale())
