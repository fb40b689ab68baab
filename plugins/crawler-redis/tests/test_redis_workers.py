"""Worker processes: three ``python -m crawler crawl`` processes (two on asyncio, one on trio) share one crawl
through Redis; one is killed (SIGKILL) mid-crawl, and the survivors finish the site, fetching again what the dead
one held."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import redis

from crawler.testing import generate_site, serve_many
from crawler_redis import key_prefix

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
LEASE = 2.0


def worker_owner(log: Path) -> str | None:
    """The worker id a process logged when it joined the crawl."""
    for line in log.read_text(errors="replace").splitlines():
        if '"frontier joined"' in line:
            return str(json.loads(line)["worker"])
    return None


def leases(client: redis.Redis, prefix: str) -> dict[str, tuple[str, str, bool, str]]:
    """Lease id -> (url, host, freed, owner), read from the frontier's keys."""
    found: dict[str, tuple[str, str, bool, str]] = {}
    for lid, record in client.hgetall(prefix + "lease").items():
        request_id, host, freed, owner, _token = record.split("\t")
        value = client.hget(prefix + "req", request_id)
        if value is not None:
            found[lid] = (json.loads(value.split("\t", 2)[2])["url"], host, freed == "1", owner)
    return found


def test_a_killed_worker_loses_nothing(redis_url: str, crawl_id: str, tmp_path: Path) -> None:
    site = generate_site(pages=100, links_per_page=6, hosts=HOSTS, seed=21)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = key_prefix(crawl_id)
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []
    with serve_many(site, latency=0.03) as servers:
        bound = servers.site
        assert bound is not None
        starts = [bound.url("/index.html", host) for host in bound.hosts]
        expected = bound.reachable_urls(starts)
        try:
            for n in range(3):
                command = [sys.executable, "-m", "crawler", "crawl", *starts, "--frontier", redis_url]
                command += ["--crawl-id", crawl_id, "--per-host", "2", "-o", f"sqlite:///{tmp_path}/items-{n}.db"]
                command += ["--no-progress", "-s", f"crawl.lease={LEASE}", "--log-format", "json"]
                command += ["--log-level", "info", "--backend", "trio" if n == 2 else "asyncio"]
                log = open(tmp_path / f"worker-{n}.log", "wb")  # noqa: SIM115 - closed below
                logs.append(log)
                processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=tmp_path))

            # kill worker 0 once the crawl is under way and it holds leases
            victim = processes[0]
            deadline = time.monotonic() + 30.0
            while True:
                assert time.monotonic() < deadline, "worker 0 never held a lease"
                assert victim.poll() is None, "worker 0 ended before it could be killed"
                owner = worker_owner(tmp_path / "worker-0.log")
                busy = owner is not None and servers.stats().requests >= 60
                if busy and any(o == owner for _, _, _, o in leases(client, prefix).values()):
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    break
                time.sleep(0.005)
            killed_at = servers.stats().requests
            held = {lid: lease for lid, lease in leases(client, prefix).items() if lease[3] == owner}
            assert held

            for process in processes[1:]:
                assert process.wait(timeout=60.0) == 0, (tmp_path / "worker-1.log").read_text()[-3000:]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            for log in logs:
                log.close()
        served = servers.stats()
    client.close()

    # every page in the outputs, once by key
    items: dict[str, str] = {}
    for n in range(3):
        with sqlite3.connect(tmp_path / f"items-{n}.db") as db:
            items.update(dict(db.execute("SELECT key, url FROM items")))
    assert sorted(items.values()) == sorted(expected)
    assert killed_at < len(expected)  # killed mid-crawl

    # politeness held across the processes, through the kill
    assert max(served.max_in_flight.values()) <= 2

    # what the dead worker held went back to the queues and was fetched again; nothing else was fetched twice
    hits = {url: n for url, n in served.hits_by_url().items() if not url.endswith("/robots.txt")}
    assert set(hits) == expected
    held_urls = {url for url, _, _, _ in held.values()}
    twice = {url for url, n in hits.items() if n > 1}
    assert twice <= held_urls, twice - held_urls
    assert all(hits[url] <= 2 for url in held_urls)
    fetched_by_the_dead = {url for url, _, freed, _ in held.values() if freed}
    assert all(hits[url] == 2 for url in fetched_by_the_dead)
    survivors = "".join((tmp_path / f"worker-{n}.log").read_text() for n in (1, 2))
    assert "expired leases reclaimed" in survivors
    assert not os.path.exists(tmp_path / "site.db")  # the outputs were the ones given
