"""Peak memory of a crawl whose frontier holds a million URLs (issue: bounded memory of the SQLite frontier).

A generated site is served on 127.0.0.1; ``crawler crawl benchmarks/frontier_spider.py`` fetches ``--pages``
pages, each of which queues ``--fanout`` synthetic links that are never fetched, so the frontier ends with about
pages x fanout queued URLs.  The crawl runs once with the SQLite frontier (``--state``) and, with ``--compare``,
once with the in-memory frontier; each is measured by ``spawn_measured.py`` (peak RSS from wait4).

    python benchmarks/frontier_memory.py                   # 1,000 pages x 1,000 links: 1,000,000 URLs
    python benchmarks/frontier_memory.py --compare         # and the in-memory frontier, for the ratio
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from crawler.testing import LocalServer, generate_site

HERE = Path(__file__).resolve().parent


def run(label: str, url: str, args: argparse.Namespace, work: Path, state: Path | None) -> dict[str, float]:
    result = work / f"{label}.json"
    command = [
        sys.executable,
        "-m",
        "crawler",
        "crawl",
        str(HERE / "frontier_spider.py"),
        "-a",
        f"start_url={url}",
        "-a",
        f"fanout={args.fanout}",
        "--max-pages",
        str(args.pages),
        "--concurrency",
        "16",
        "--per-host",
        "16",
        "--no-progress",
        "--log-level",
        "error",
        "-o",
        f"sqlite:///{work / (label + '-items.db')}",
    ]
    if state is not None:
        command += ["--state", str(state)]
    measured = [sys.executable, "-I", "-S", str(HERE / "spawn_measured.py"), str(result), "-", "3600", "--"]
    subprocess.run(measured + command, check=True)
    data = json.loads(result.read_text())
    if data["exit_code"] != 0:
        raise SystemExit(f"{label}: the crawl exited with {data['exit_code']}")
    out = {"wall_s": data["wall_s"], "max_rss_mb": data["maxrss_kib"] / 1024}
    if state is not None:
        with sqlite3.connect(state / "frontier.db") as db:
            out["queued"] = db.execute("SELECT count(*) FROM requests").fetchone()[0]
            out["seen"] = db.execute("SELECT count(*) FROM seen").fetchone()[0]
        out["state_mb"] = sum(p.stat().st_size for p in state.iterdir()) / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=1000, help="pages fetched [1000]")
    parser.add_argument("--fanout", type=int, default=1000, help="synthetic links queued per page [1000]")
    parser.add_argument("--compare", action="store_true", help="also run with the in-memory frontier")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="frontier-memory-"))
    try:
        site = generate_site(pages=args.pages * 2, links_per_page=12, cross_host_ratio=0.0, asset_ratio=0.0)
        with LocalServer(site) as server:
            url = server.url("/index.html")
            rows = {"sqlite": run("sqlite", url, args, work, work / "state")}
            if args.compare:
                rows["memory"] = run("memory", url, args, work, None)
        print(f"{args.pages} pages x {args.fanout} synthetic links")
        for label, row in rows.items():
            print(label, json.dumps({k: round(v, 1) for k, v in row.items()}))
        if "memory" in rows:
            print(f"peak RSS ratio sqlite/memory: {rows['sqlite']['max_rss_mb'] / rows['memory']['max_rss_mb']:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
