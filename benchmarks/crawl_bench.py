"""Crawl a generated static site with crawler and with a raw httpx loop; compare speed, CPU and memory.

    .venv/bin/python benchmarks/crawl_bench.py [--pages 5000] [--concurrency 64] [--per-host 64] [--out FILE]

The site is served by nginx (or, without nginx, by ``crawler serve``) pinned to one core; each client runs in its
own subprocess pinned to the other core, so CPU time and peak RSS are the client's alone.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

from bench_server import crawler_command, free_port, server_requests, start_server, write_site

from crawler.testing import generate_site

HERE = Path(__file__).resolve().parent
BASELINE = "raw-httpx"


class Args(argparse.Namespace):
    pages: int
    concurrency: int
    per_host: int
    out: Path | None
    timeout: float
    strip_malformed: bool
    client_core: int | None = None  # set by main()
    server_core: int | None = None


@dataclass
class Result:
    client: str
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
    """Count warning and error lines on a client's stderr (crawler's JSON logs, raw_httpx's "error:" lines)."""
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


def run_client(name: str, cmd: list[str], output: Path, expected: set[str], port: int, args: Args) -> Result:
    """Run one client through spawn_measured.py (pinned, measured by wait4) and check its output."""
    print(f"-- {name}: {' '.join(cmd)}", flush=True)
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
        log_problems=log_problems(stderr),
        stderr_tail="\n".join(stderr.splitlines()[-15:]),
    )


def clients(start: str, tmp: Path, args: Args) -> list[tuple[str, list[str], Path]]:
    """(name, command, output file) of each client, the baseline first."""
    c = str(args.concurrency)
    common = ["--concurrency", c, "--per-host", str(args.per_host), "--ignore-robots", "--no-progress"]
    common += ["--log-level", "warning", "--log-format", "json"]
    crawl = [*crawler_command(), "crawl"]
    spider = [str(HERE / "bench_spider.py"), "-a", f"start_url={start}"]
    runs = [
        (BASELINE, [sys.executable, str(HERE / "raw_httpx.py"), start, "--concurrency", c]),
        ("crawl-asyncio", [*crawl, start, *common, "--backend", "asyncio"]),
        ("crawl-trio", [*crawl, start, *common, "--backend", "trio"]),
        ("spider-asyncio", [*crawl, *spider, *common, "--backend", "asyncio"]),
    ]
    return [(name, [*cmd, "-o", str(tmp / f"{name}.jsonl")], tmp / f"{name}.jsonl") for name, cmd in runs]


def print_table(results: list[Result]) -> None:
    base = next(r for r in results if r.client == BASELINE)
    head = f"{'client':<16}{'pages':>6}{'reqs':>6}{'wall s':>8}{'pages/s':>8}{'CPU s':>7}{'CPU s/1k':>9}"
    head += f"{'RSS MB':>7}{'other%':>7}{'x pages/s':>10}{'x CPU/1k':>9}{'x RSS':>6}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in results:
        reqs = "-" if r.server_requests is None else str(r.server_requests)
        other = "-" if r.other_pct is None else str(r.other_pct)
        print(
            f"{r.client:<16}{r.pages:>6}{reqs:>6}{r.wall_s:>8.2f}{r.pages_per_s:>8.0f}{r.cpu_s:>7.2f}"
            f"{r.cpu_s_per_1k:>9.3f}{r.rss_mb:>7.1f}{other:>7}{r.pages_per_s / max(base.pages_per_s, 1e-9):>10.2f}"
            f"{r.cpu_s_per_1k / max(base.cpu_s_per_1k, 1e-9):>9.2f}{r.rss_mb / max(base.rss_mb, 1e-9):>6.2f}"
        )
    print("pages: distinct expected URLs in the output; reqs: requests the server saw; other%: CPU other processes")
    print(f"took on the client core (noise); x: ratio to {BASELINE} in this run (pages/s: higher is better)")
    if any((r.other_pct or 0) > 5 for r in results):
        print("WARNING: other processes used the client core during the run; wall-clock figures are disturbed")


def report_problems(results: list[Result], expected: int) -> None:
    for r in results:
        if r.ok and not r.log_problems:
            continue
        mark = "ok" if r.ok else "!! FAILED"
        print(f"\n{mark} {r.client}: exit {r.exit_code}, {r.pages}/{expected} pages, {r.missing} missing", end="")
        print(f", {r.lines} output lines, {r.server_requests} server requests")
        for problem, count in sorted(r.log_problems.items(), key=lambda kv: -kv[1]):
            print(f"   {count:>6} x {problem}")
        if r.exit_code:
            print("   stderr (last lines):\n   " + r.stderr_tail.replace("\n", "\n   "))


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=5000, help="pages in the generated site [5000]")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight [64]")
    parser.add_argument("--per-host", type=int, default=64, help="requests in flight per host (crawler) [64]")
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
    cores = sorted(os.sched_getaffinity(0))
    args.server_core, args.client_core = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    server_core = args.server_core
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    if server_core is None:
        print("WARNING: fewer than 2 usable cores: server and clients are not pinned and share one core")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "_results" / f"crawl-{stamp}.json"
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
            results = [run_client(n, cmd, o, expected, port, args) for n, cmd, o in clients(start, tmp, args)]
        finally:
            server.terminate()
            server.wait(timeout=10)
    print_table(results)
    report_problems(results, len(expected))
    report = {
        "timestamp": stamp,
        "params": {"pages": args.pages, "concurrency": args.concurrency, "per_host": args.per_host},
        "strip_malformed": stripped if args.strip_malformed else None,
        "expected_pages": len(expected),
        "server": kind,
        "pinning": {"server_core": server_core, "client_core": args.client_core},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "loadavg_at_end": os.getloadavg(),
        "versions": {p: version(p) for p in ("crawler", "httpx", "anyio", "trio")},
        "results": [asdict(r) for r in results],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {out}")
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()
