"""Crash-safe resume on one machine, as a user runs it: ``crawler crawl URL --state DIR`` killed with SIGKILL
mid-crawl, then run again, against a real server on 127.0.0.1; compared with an uninterrupted crawl."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from crawler.testing import LocalServer, generate_site

PAGES = 240
CONCURRENCY = 8
BATCH = 10


def crawl_command(url: str, state: Path, db: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "crawler",
        "crawl",
        url,
        "--state",
        str(state),
        "-o",
        f"sqlite:///{db}",
        "--concurrency",
        str(CONCURRENCY),
        "--per-host",
        str(CONCURRENCY),
        "--no-progress",
        "--log-format",
        "json",
        "-s",
        f"output.batch_size={BATCH}",
    ]


def items(db: Path) -> dict[str, dict[str, object]]:
    """The items of a sink, by page URL path (the port differs between servers), without timings."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT key, item FROM items").fetchall()
    found: dict[str, dict[str, object]] = {}
    for key, text in rows:
        item = json.loads(text)
        path = "/" + item["url"].split("/", 3)[3]
        assert path not in found, f"{path} is in the sink twice (keys {key})"
        item.pop("elapsed")
        item.pop("url")
        found[path] = item
    return found


def page_hits(server: LocalServer) -> Counter[str]:
    hits = server.stats().hits_by_url()
    return Counter({"/" + url.split("/", 3)[3]: n for url, n in hits.items() if not url.endswith("/robots.txt")})


def test_sigkill_then_resume_loses_nothing_and_refetches_only_what_was_in_flight(tmp_path: Path) -> None:
    site = generate_site(pages=PAGES, links_per_page=12, cross_host_ratio=0.0)
    # the uninterrupted crawl, for comparison
    with LocalServer(site) as server:
        done = subprocess.run(
            crawl_command(server.url("/index.html"), tmp_path / "ref-state", tmp_path / "ref.db"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        reference = items(tmp_path / "ref.db")
    assert len(reference) > PAGES // 2

    state, db = tmp_path / "state", tmp_path / "items.db"
    with LocalServer(site, latency=0.02) as server:
        process = subprocess.Popen(
            crawl_command(server.url("/index.html"), state, db),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while server.stats().requests < len(reference) // 3:
                assert process.poll() is None, "the crawl ended before it could be killed"
                assert time.monotonic() < deadline, "the crawl made no progress"
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == -signal.SIGKILL
        before = page_hits(server)
        assert 0 < sum(before.values()) < len(reference)
        server.reset()

        resumed = subprocess.run(
            crawl_command(server.url("/index.html"), state, db), capture_output=True, text=True, timeout=120
        )
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert "frontier resumed" in resumed.stderr
        after = page_hits(server)

    # every page is in the sink exactly once, with the same content as the uninterrupted crawl
    assert items(db) == {path: item for path, item in reference.items()}
    # every page was fetched; twice only if it was in flight (fetched, its item not yet written) at the kill
    fetched = before + after
    assert set(fetched) == set(reference)
    twice = [path for path, n in fetched.items() if n > 1]
    assert all(n <= 2 for n in fetched.values())
    assert len(twice) <= CONCURRENCY + BATCH, twice


def test_ctrl_c_is_a_clean_pause(tmp_path: Path) -> None:
    site = generate_site(pages=150, links_per_page=12, cross_host_ratio=0.0)
    state, db = tmp_path / "state", tmp_path / "items.db"
    with LocalServer(site, latency=0.02) as server:
        process = subprocess.Popen(
            crawl_command(server.url("/index.html"), state, db), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while server.stats().requests < 40:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr[-2000:]
        first = page_hits(server)
        server.reset()
        resumed = subprocess.run(
            crawl_command(server.url("/index.html"), state, db), capture_output=True, text=True, timeout=120
        )
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        second = page_hits(server)
    # a clean pause finishes or hands back what was in flight: nothing is fetched twice
    assert not set(first) & set(second)
    assert len(items(db)) == len(first) + len(second)
