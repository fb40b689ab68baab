"""Crawl a generated static site with crawler, bare httpx and aiohttp loops and Scrapy; compare speed, CPU, memory.

    .venv/bin/python benchmarks/crawl_bench.py [--pages 5000] [--concurrency 8,64,512] [--clients a,b,...]
                                               [--per-host N] [--out FILE]

The site is served by nginx (or, without nginx, by ``crawler serve``) pinned to one core; each client runs in its
own subprocess pinned to the other core, so CPU time and peak RSS are the client's alone.  Every client runs at each
concurrency; ratios are to the raw httpx loop at the same concurrency in the same run.  Scrapy is installed into
``benchmarks/_venvs/scrapy`` when missing.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench_server import crawler_command, free_port, server_requests, start_server, write_site

from crawler.testing import generate_site

HERE = Path(__file__).resolve().parent
BASELINE = "raw-httpx"
SCRAPY_VENV = HERE / "_venvs" / "scrapy"
#: Every client, in the order they run at each concurrency (the baseline first).
CLIENTS = (
    BASELINE,
    "raw-aiohttp",
    "spider-asyncio-aiohttp",
    "spider-asyncio-httpx",
    "spider-trio-httpx",
    "crawl-asyncio",
    "crawl-trio",
    "scrapy",
)
#: Clients that need aiohttp in the project's environment.
NEEDS_AIOHTTP = {"raw-aiohttp", "spider-asyncio-aiohttp"}
#: Scrapy's log lines: "2025-01-01 12:00:00 [scrapy.core.scraper] ERROR: Spider error processing ...".
SCRAPY_LOG = re.compile(r"^\S+ \S+ \[([^\]]+)\] (WARNING|ERROR|CRITICAL): (.*)$")
SCRAPY_REQUEST = re.compile(r"<[A-Z]+ [^>]*>|\(referer: [^)]*\)")


class Args(argparse.Namespace):
    pages: int
    concurrency: list[int]
    clients: list[str]
    per_host: int | None
    out: Path | None
    timeout: float
    strip_malformed: bool
    client_core: int | None = None  # set by main()
    server_core: int | None = None


@dataclass
class Result:
    client: str
    concurrency: int
    pages: int  # distinct expected URLs the client's output records with status 200
    missing: int  # expected URLs absent from the output
    lines: int  # output lines (one per page)
    server_requests: int | None  # requests nginx served during the run (stub_status); None without nginx
    wall_s: float
    pages_per_s: float
    cpu_s: float  # user + sys of the client process (wait4)
    cpu_s_per_1k: float
    rss_mb: float  # peak RSS of the client process (wait4 ru_maxrss)
    other_pct: int | None  # CPU used by other processes on the client's core during the run, % of wall time
    server_core_pct: int | None  # busy time of the server's core (server and any other process), % of wall time
    exit_code: int
    command: list[str] = field(default_factory=list)
    log_problems: dict[str, int] = field(default_factory=dict)  # warning/error log events -> count
    stderr_tail: str = ""

    @property
    def errors(self) -> int:
        return sum(n for key, n in self.log_problems.items() if not key.startswith("warning"))

    @property
    def ok(self) -> bool:
        """All expected pages fetched, exit status 0, no error logged (warnings are reported, not failures)."""
        return not (self.missing or self.exit_code or self.errors)


def log_problems(stderr: str) -> dict[str, int]:
    """Count warning and error lines on a client's stderr: crawler's JSON logs, the raw loops' "error:" lines,
    Scrapy's "[logger] LEVEL: message" lines and tracebacks."""
    counts: Counter[str] = Counter()
    for line in stderr.splitlines():
        if line.startswith(("error:", "Traceback")):
            counts[line.split(":", 1)[0]] += 1
        elif line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("level") in ("warning", "error", "critical"):
                counts[f"{event['level']}: {event.get('event')} {event.get('error', '')}".strip()] += 1
        elif match := SCRAPY_LOG.match(line):
            logger, level, message = match.groups()
            message = SCRAPY_REQUEST.sub("<request>", message)  # one count per kind of message, not per URL
            counts[f"{level.lower()}: [{logger}] {message[:120]}"] += 1
    return dict(counts)


def fetched_urls(output: Path) -> tuple[set[str], int]:
    """The URLs a client's JSON Lines output records with status 200, and its number of lines."""
    urls: set[str] = set()
    lines = 0
    if output.exists():
        with output.open(encoding="utf-8") as file:
            for line in file:
                lines += 1
                record = json.loads(line)
                if record.get("status") == 200:
                    urls.add(record["url"])
    return urls, lines


def core_busy_s(core: int | None) -> float:
    """Seconds core ``core`` has spent busy since boot (/proc/stat), 0.0 without pinning."""
    if core is None:
        return 0.0
    with open("/proc/stat", encoding="ascii") as stat:
        fields = next(line for line in stat if line.startswith(f"cpu{core} ")).split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_client(
    name: str, concurrency: int, cmd: list[str], output: Path, expected: set[str], port: int, args: Args
) -> Result:
    """Run one client through spawn_measured.py (pinned, measured by wait4) and check its output."""
    print(f"-- {name} C={concurrency}: {' '.join(cmd)}", flush=True)
    measured = output.with_suffix(".rusage.json")
    core = "-" if args.client_core is None else str(args.client_core)
    launcher = [sys.executable, "-I", "-S", str(HERE / "spawn_measured.py"), str(measured), core, str(args.timeout)]
    before, busy, server_busy = server_requests(port), core_busy_s(args.client_core), core_busy_s(args.server_core)
    stderr_path = output.with_suffix(".stderr")
    with stderr_path.open("wb") as err, output.with_suffix(".stdout").open("wb") as out:
        subprocess.run([*launcher, "--", *cmd], stdout=out, stderr=err, check=True)
    busy, server_busy = core_busy_s(args.client_core) - busy, core_busy_s(args.server_core) - server_busy
    after = server_requests(port)
    usage = json.loads(measured.read_text())
    urls, lines = fetched_urls(output)
    pages = len(urls & expected)
    wall, cpu = usage["wall_s"], usage["user_s"] + usage["sys_s"]
    stderr = stderr_path.read_text(errors="replace").strip()
    return Result(
        client=name,
        concurrency=concurrency,
        pages=pages,
        missing=len(expected - urls),
        lines=lines,
        server_requests=None if before is None or after is None else after - before - 1,  # minus the probe
        wall_s=round(wall, 3),
        pages_per_s=round(pages / wall, 1),
        cpu_s=round(cpu, 3),
        cpu_s_per_1k=round(cpu / max(pages, 1) * 1000, 3),
        rss_mb=round(usage["maxrss_kib"] / 1024, 1),
        other_pct=None if args.client_core is None else round(max(0.0, busy - cpu) / wall * 100),
        server_core_pct=None if args.server_core is None else round(server_busy / wall * 100),
        exit_code=usage["exit_code"],
        command=cmd,
        log_problems=log_problems(stderr),
        stderr_tail="\n".join(stderr.splitlines()[-15:]),
    )


# -- the clients ---------------------------------------------------------------------------------------------------


def client_command(name: str, start: str, concurrency: int, output: Path, args: Args) -> list[str]:
    """The command that runs client ``name`` at ``concurrency``, writing JSON Lines (url, status) to ``output``."""
    c = str(concurrency)
    if name == BASELINE:
        return [sys.executable, str(HERE / "raw_httpx.py"), start, "--concurrency", c, "-o", str(output)]
    if name == "raw-aiohttp":
        return [sys.executable, str(HERE / "raw_aiohttp.py"), start, "--concurrency", c, "-o", str(output)]
    if name == "scrapy":
        settings = [f"CONCURRENT_REQUESTS={c}", f"CONCURRENT_REQUESTS_PER_DOMAIN={c}"]
        return [
            str(SCRAPY_VENV / "bin" / "scrapy"),
            "runspider",
            str(HERE / "scrapy_spider.py"),
            "-a",
            f"start_url={start}",
            "--loglevel",
            "WARNING",  # from the start: the spider's LOG_LEVEL applies only once the spider is loaded
            *(arg for setting in settings for arg in ("-s", setting)),
            "-O",
            str(output),  # FEEDS: the .jsonl extension picks the JSON Lines exporter
        ]
    per_host = str(args.per_host or concurrency)
    common = ["--concurrency", c, "--per-host", per_host, "--ignore-robots", "--no-progress"]
    common += ["--log-level", "warning", "--log-format", "json", "-o", str(output)]
    crawl = [*crawler_command(), "crawl"]
    if name.startswith("crawl-"):  # crawl-asyncio, crawl-trio: the generic site crawl, transport auto
        return [*crawl, start, *common, "--backend", name.removeprefix("crawl-")]
    _, backend, transport = name.split("-")  # spider-BACKEND-TRANSPORT
    spider = [str(HERE / "bench_spider.py"), "-a", f"start_url={start}"]
    return [*crawl, *spider, *common, "--backend", backend, "-s", f"crawl.transport={transport}"]


def scrapy_versions() -> dict[str, str] | None:
    """Scrapy's and Twisted's versions in the Scrapy environment, or None when Scrapy is not installed there."""
    python = SCRAPY_VENV / "bin" / "python"
    if not (python.exists() and (SCRAPY_VENV / "bin" / "scrapy").exists()):
        return None
    code = "import platform, scrapy, twisted; print(scrapy.__version__, twisted.__version__, platform.python_version())"
    probe = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    if probe.returncode:
        return None
    scrapy, twisted, python_version = probe.stdout.split()
    return {"scrapy": scrapy, "twisted": twisted, "python": python_version}


def ensure_scrapy() -> tuple[dict[str, str] | None, str]:
    """Install Scrapy into benchmarks/_venvs/scrapy when it is not there yet.  Returns (versions, "") or
    (None, why it could not be installed)."""
    found = scrapy_versions()
    if found:
        return found, ""
    print(f"installing Scrapy into {SCRAPY_VENV} (python -m venv, pip install scrapy)")
    pip = [str(SCRAPY_VENV / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    steps = {
        "python -m venv": [sys.executable, "-m", "venv", str(SCRAPY_VENV)],
        "pip install scrapy": [*pip, "scrapy"],
    }
    for step, cmd in steps.items():
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{step}: {exc}"
        if done.returncode:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
            return None, f"{step} failed: {tail[0][:200]}"
    found = scrapy_versions()
    return (found, "") if found else (None, "Scrapy installed but `import scrapy` fails in its environment")


def available_clients(selected: list[str]) -> tuple[list[str], dict[str, str], dict[str, str] | None]:
    """(clients to run, {client: why it does not run}, Scrapy's versions or None)."""
    skipped: dict[str, str] = {}
    if NEEDS_AIOHTTP & set(selected) and importlib.util.find_spec("aiohttp") is None:
        skipped.update({name: "aiohttp is not installed" for name in NEEDS_AIOHTTP if name in selected})
    scrapy = None
    if "scrapy" in selected:
        scrapy, why = ensure_scrapy()
        if scrapy is None:
            skipped["scrapy"] = f"Scrapy could not be installed: {why}"
    return [name for name in selected if name not in skipped], skipped, scrapy


# -- machine description -------------------------------------------------------------------------------------------


def _read_first(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of ``path`` (/proc/cpuinfo, /proc/meminfo)."""
    try:
        with open(path, encoding="utf-8") as file:
            for line in file:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        return None
    return None


def describe_machine(scrapy: dict[str, str] | None) -> dict[str, object]:
    cpu = _read_first("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()
    mem_kib = (_read_first("/proc/meminfo", "MemTotal") or "0 kB").split()[0]
    versions: dict[str, str | None] = {}
    for package in ("crawler", "httpx", "aiohttp", "anyio", "trio"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    versions["scrapy"] = scrapy["scrapy"] if scrapy else None
    versions["twisted"] = scrapy["twisted"] if scrapy else None
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "ram_gib": round(int(mem_kib) / 1024**2, 1),
        "kernel": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "scrapy_python": scrapy["python"] if scrapy else None,
        "versions": versions,
    }


def print_machine(machine: dict[str, object]) -> None:
    print(f"machine: {machine['cpu_model']}, {machine['cores']} cores ({machine['usable_cores']} usable)", end="")
    print(f", {machine['ram_gib']} GiB RAM, {machine['kernel']}, {machine['python']}")
    versions = machine["versions"]
    assert isinstance(versions, dict)
    listed = ", ".join(f"{name} {v or '-'}" for name, v in versions.items())
    scrapy_python = f" (Scrapy on Python {machine['scrapy_python']})" if machine["scrapy_python"] else ""
    print(f"versions: {listed}{scrapy_python}")


# -- reports -------------------------------------------------------------------------------------------------------


def _ratio(value: float, base: float | None) -> float | None:
    return None if not base else value / base


def _fmt(value: float | None, width: int, spec: str = ".2f") -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def print_table(results: list[Result], concurrencies: list[int], skipped: dict[str, str]) -> None:
    width = max(len(name) for name in [*CLIENTS, "client"]) + 2
    head = f"{'client':<{width}}{'C':>4}{'pages':>6}{'reqs':>6}{'wall s':>8}{'pages/s':>8}{'CPU s':>7}"
    head += f"{'CPU s/1k':>9}{'RSS MB':>7}{'other%':>7}{'x pages/s':>10}{'x CPU/1k':>9}{'x RSS':>6}"
    print("\n" + head)
    for c in concurrencies:
        print("-" * len(head))
        rows = [r for r in results if r.concurrency == c]
        base = next((r for r in rows if r.client == BASELINE and r.ok), None)
        for r in rows:
            reqs = "-" if r.server_requests is None else str(r.server_requests)
            other = "-" if r.other_pct is None else str(r.other_pct)
            name = r.client if r.ok else f"{r.client} !"
            print(
                f"{name:<{width}}{c:>4}{r.pages:>6}{reqs:>6}{r.wall_s:>8.2f}{r.pages_per_s:>8.0f}{r.cpu_s:>7.2f}"
                f"{r.cpu_s_per_1k:>9.3f}{r.rss_mb:>7.1f}{other:>7}"
                f"{_fmt(_ratio(r.pages_per_s, base and base.pages_per_s), 10)}"
                f"{_fmt(_ratio(r.cpu_s_per_1k, base and base.cpu_s_per_1k), 9)}"
                f"{_fmt(_ratio(r.rss_mb, base and base.rss_mb), 6)}"
            )
        for name, why in skipped.items():
            print(f"{name:<{width}}{c:>4}  not run: {why}")
    print("pages: distinct expected URLs in the output; reqs: requests the server saw; other%: CPU other processes")
    print(f"took on the client core (noise); x: ratio to {BASELINE} at the same C in this run (pages/s: higher is")
    print("better; '-' when the baseline did not run or failed); '!': the client failed (see below)")
    if any((r.other_pct or 0) > 5 for r in results):
        print("WARNING: other processes used the client core during the run; wall-clock figures are disturbed")


def print_pivot(results: list[Result], clients: list[str], concurrencies: list[int], skipped: dict[str, str]) -> None:
    """pages/s, one row per client and one column per concurrency."""
    width = max(len(name) for name in [*clients, "pages/s"]) + 2
    head = f"{'pages/s':<{width}}" + "".join(f"{f'C={c}':>9}" for c in concurrencies)
    print("\n" + head + "\n" + "-" * len(head))
    by_key = {(r.client, r.concurrency): r for r in results}
    for name in clients:
        cells = []
        for c in concurrencies:
            r = by_key.get((name, c))
            cells.append("n/a" if r is None else f"{r.pages_per_s:.0f}" + ("" if r.ok else "!"))
        print(f"{name:<{width}}" + "".join(f"{cell:>9}" for cell in cells))
    if skipped:
        print("n/a: not run (" + "; ".join(f"{name}: {why}" for name, why in skipped.items()) + ")")
    if any(not r.ok for r in results):
        print("!: the client failed at that concurrency (see above)")


def report_problems(results: list[Result], expected: int) -> None:
    for r in results:
        if r.ok and not r.log_problems:
            continue
        mark = "ok" if r.ok else "!! FAILED"
        print(f"\n{mark} {r.client} C={r.concurrency}: exit {r.exit_code}, {r.pages}/{expected} pages", end="")
        print(f", {r.missing} missing, {r.lines} output lines, {r.server_requests} server requests")
        for problem, count in sorted(r.log_problems.items(), key=lambda kv: -kv[1]):
            print(f"   {count:>6} x {problem}")
        if r.exit_code or not r.ok:
            print("   stderr (last lines):\n   " + r.stderr_tail.replace("\n", "\n   "))


# -- main ----------------------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return list(dict.fromkeys(values))


def _client_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in CLIENTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown client(s) {unknown or text!r}; choose from {', '.join(CLIENTS)}")
    return [name for name in CLIENTS if name in names]  # run in the canonical order, the baseline first


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=5000, help="pages in the generated site [5000]")
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=[8, 64, 512],
        metavar="C,C,...",
        help="requests in flight, a list [8,64,512]",
    )
    parser.add_argument(
        "--clients",
        type=_client_list,
        default=list(CLIENTS),
        metavar="NAME,...",
        help=f"clients to run [all: {','.join(CLIENTS)}]",
    )
    parser.add_argument("--per-host", type=int, help="requests in flight per host (crawler) [the concurrency]")
    parser.add_argument("--out", type=Path, help="JSON results [benchmarks/_results/crawl-<timestamp>.json]")
    parser.add_argument("--timeout", type=float, default=600.0, help="kill a client after this many seconds [600]")
    parser.add_argument(
        "--strip-malformed",
        action="store_true",
        help='replace the malformed href="http://[bad" links the generated site plants with "#" (a workaround)',
    )
    return parser.parse_args(namespace=Args())


def main() -> None:
    args = parse_args()
    clients, skipped, scrapy = available_clients(args.clients)  # may install Scrapy: before anything is measured
    machine = describe_machine(scrapy)
    print_machine(machine)
    cores = sorted(os.sched_getaffinity(0))
    args.server_core, args.client_core = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    server_core = args.server_core
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    if server_core is None:
        print("WARNING: fewer than 2 usable cores: server and clients are not pinned and share one core")
    for name, why in skipped.items():
        print(f"NOTE: {name} does not run: {why}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "_results" / f"crawl-{stamp}.json"
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="crawl-bench-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)  # nginx workers run as nobody when started by root
        root, port = tmp / "site", free_port()
        site = generate_site(
            pages=args.pages, links_per_page=11, page_bytes=7680, hosts=(f"127.0.0.1:{port}",), asset_ratio=0.0
        )
        stripped = write_site(site, root, strip_malformed=args.strip_malformed)
        start = site.url("/index.html")
        expected = site.reachable_urls(start)
        print(f"site: {args.pages} pages, {len(expected)} reachable from {start}, written to {root}")
        if args.strip_malformed:
            print(f"NOTE: --strip-malformed replaced {stripped} malformed hrefs with '#'")
        server, kind = start_server(tmp, root, port, server_core)
        print(f"server: {kind} on core {server_core}; clients on core {args.client_core}")
        try:
            for c in args.concurrency:
                for client in clients:
                    output = tmp / f"{client}-c{c}.jsonl"
                    cmd = client_command(client, start, c, output, args)
                    results.append(run_client(client, c, cmd, output, expected, port, args))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print_table(results, args.concurrency, skipped)
    report_problems(results, len(expected))
    print_pivot(results, args.clients, args.concurrency, skipped)
    report = {
        "timestamp": stamp,
        "params": {
            "pages": args.pages,
            "concurrency": args.concurrency,
            "per_host": args.per_host or "= concurrency",
            "clients": args.clients,
        },
        "strip_malformed": stripped if args.strip_malformed else None,
        "expected_pages": len(expected),
        "server": kind,
        "pinning": {"server_core": server_core, "client_core": args.client_core},
        "machine": machine,
        "loadavg_at_end": os.getloadavg(),
        "versions": machine["versions"],
        "skipped": skipped,
        "results": [asdict(r) for r in results],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {out}")
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()
