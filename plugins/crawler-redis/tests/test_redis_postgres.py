"""The whole distributed story, as a user runs it: three ``crawler crawl`` processes share a Redis frontier and
write to one PostgreSQL table; one is killed with SIGKILL mid-crawl; every page ends in PostgreSQL exactly once,
and the served hosts never saw more than their per-host limit in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO

import pytest

from crawler.testing import generate_site, serve_many

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
POSTGRES = os.environ.get("CRAWLER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres() -> object:
    """A connection to the test PostgreSQL, or a skip (a failure under CI=true) naming what is missing."""
    try:
        import crawler_postgres  # noqa: F401 - the sink must be installed for -o postgresql://
        import psycopg
    except ImportError as exc:
        reason = f"the PostgreSQL plugin is not installed ({exc}); pip install -e plugins/crawler-postgres"
    else:
        try:
            return psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            reason = f"no PostgreSQL at {POSTGRES} ({exc}); set CRAWLER_TEST_POSTGRES"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def test_three_workers_one_killed_every_page_once_in_postgres(redis_url: str, crawl_id: str, tmp_path: Path) -> None:
    conn = postgres()
    table = f"items_{uuid.uuid4().hex[:12]}"
    site = generate_site(pages=90, links_per_page=6, hosts=HOSTS, seed=5)
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []
    try:
        with serve_many(site, latency=0.03) as servers:
            bound = servers.site
            assert bound is not None
            starts = [bound.url("/index.html", host) for host in bound.hosts]
            expected = bound.reachable_urls(starts)
            try:
                for n in range(3):
                    command = [sys.executable, "-m", "crawler", "crawl", *starts, "--frontier", redis_url]
                    command += ["--crawl-id", crawl_id, "--per-host", "2", "-o", f"{POSTGRES}?table={table}"]
                    command += ["--errors", f"{POSTGRES}?table={table}_errors"]
                    command += ["--no-progress", "-s", "crawl.lease=2", "--log-format", "json"]
                    command += ["--backend", "trio" if n == 2 else "asyncio"]
                    log = open(tmp_path / f"worker-{n}.log", "wb")  # noqa: SIM115 - closed below
                    logs.append(log)
                    processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=tmp_path))
                deadline = time.monotonic() + 30.0
                while servers.stats().requests < len(expected) // 3:
                    assert time.monotonic() < deadline, "the crawl made no progress"
                    assert processes[0].poll() is None, (tmp_path / "worker-0.log").read_text()[-3000:]
                    time.sleep(0.005)
                processes[0].send_signal(signal.SIGKILL)
                processes[0].wait()
                killed_at = servers.stats().requests
                for n, process in enumerate(processes[1:], 1):
                    assert process.wait(timeout=90.0) == 0, (tmp_path / f"worker-{n}.log").read_text()[-3000:]
            finally:
                for process in processes:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
                for log in logs:
                    log.close()
            served = servers.stats()

        assert killed_at < len(expected)  # killed mid-crawl
        rows = conn.execute(f"SELECT item->>'url', count(*) FROM {table} GROUP BY 1").fetchall()  # type: ignore[attr-defined]
        assert {url: n for url, n in rows if n > 1} == {}  # exactly once
        assert {url for url, _ in rows} == expected  # every page
        assert max(served.max_in_flight.values()) <= 2  # the shared per-host limit held across the processes
        hits = {url: n for url, n in served.hits_by_url().items() if not url.endswith("/robots.txt")}
        assert set(hits) == expected
        assert (
            sum(n - 1 for n in hits.values()) <= 16
        )  # fetched again: at most what the dead worker held (its concurrency)
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {table}, {table}_errors")  # type: ignore[attr-defined]
        conn.close()  # type: ignore[attr-defined]
