"""The ``crawler`` command as a user runs it: subprocesses against real servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html
import pytest

from crawler import ASSET_EXTENSIONS
from crawler.testing import LocalServer, generate_site, serve_many

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("CRAWLER_")}
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def reachable_docs(root: Path, start: str) -> set[str]:
    """HTML pages reachable from ``start`` on the served docs, by a breadth-first walk with lxml (independent
    of crawler's own link extraction)."""
    host = urlsplit(start).netloc
    seen: set[str] = set()
    found: set[str] = set()
    queue = [start]
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        parts = urlsplit(url)
        if parts.netloc != host:
            continue
        ext = parts.path.rsplit(".", 1)[-1].lower() if "." in parts.path.rsplit("/", 1)[-1] else ""
        if ext in ASSET_EXTENSIONS or ext in ("txt", "zip", "bz2"):
            continue
        path = root / parts.path.lstrip("/")
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file() or path.suffix != ".html":
            continue
        found.add(url)
        for element, attribute, link, _ in lxml.html.fromstring(path.read_bytes()).iterlinks():
            if element.tag in ("a", "area") and attribute == "href" and not link.startswith(("mailto:", "javascript:")):
                try:
                    queue.append(urldefrag(urljoin(url, link)).url)
                except ValueError:
                    continue
    return found


@pytest.fixture(scope="module")
def docs_server(pydocs: Path) -> Iterator[LocalServer]:
    with LocalServer(pydocs) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_crawl_python_docs_every_page_once(
    docs_server: LocalServer, pydocs: Path, backend: str, tmp_path: Path
) -> None:
    docs_server.reset()
    start = docs_server.url("/index.html")
    result = run_cli(
        "crawl",
        start,
        "-o",
        "pages.jsonl",
        "--backend",
        backend,
        "--per-host",
        "8",
        "--concurrency",
        "16",
        "--stats-file",
        "stats.json",
        "--log-format",
        "json",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "pages.jsonl").read_text().splitlines()]
    urls = [r["url"] for r in records]
    assert len(urls) == len(set(urls))  # one record per page
    expected = reachable_docs(pydocs, start)
    assert len(expected) > 450
    assert set(urls) == expected
    hits = {u: n for u, n in docs_server.stats().hits_by_url().items() if not u.endswith("/robots.txt")}
    assert all(n == 1 for n in hits.values()), [u for u, n in hits.items() if n > 1]
    first = next(r for r in records if r["url"] == start)
    assert first["status"] == 200 and first["depth"] == 0 and first["links"] > 10
    assert first["title"].endswith("Documentation") and first["content_type"] == "text/html"
    assert isinstance(first["elapsed"], float)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["pages"] >= len(expected) and stats["items"] == len(expected)
    assert "crawl finished" in result.stderr


@pytest.mark.slow
def test_pydocs_example_spider(docs_server: LocalServer, tmp_path: Path) -> None:
    start = docs_server.url("/library/json.html")  # an API page first, whatever order the rest comes in
    result = run_cli(
        "crawl",
        str(EXAMPLES / "pydocs.py"),
        "-a",
        f"start_url={start}",
        "-o",
        "docs.jsonl",
        "--max-pages",
        "60",
        "--log-format",
        "json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pages = [json.loads(line) for line in (tmp_path / "docs.jsonl").read_text().splitlines()]
    assert len(pages) == 60
    json_page = next(p for p in pages if p["url"] == start)
    names = {o["name"] for o in json_page["objects"]}
    assert {"json.dump", "json.loads", "json.JSONDecoder"} <= names
    with_objects = [p for p in pages if p["objects"]]
    obj = with_objects[0]["objects"][0]
    assert obj["kind"] in ("function", "class", "method", "attribute", "exception", "data", "module")
    assert obj["url"].startswith(with_objects[0]["url"] + "#")
    assert all(p["title"] and p["headings"] for p in pages)


def test_default_output_is_sqlite_and_stdout_output(tmp_path: Path) -> None:
    site = generate_site(pages=10, links_per_page=3, hosts=("127.0.0.1",))
    with serve_many(site) as servers:
        start = servers.url("/index.html")
        result = run_cli("crawl", start, "--log-format", "json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        rows = sqlite3.connect(tmp_path / "site.db").execute("select count(*) from items").fetchone()[0]
        result = run_cli("crawl", start, "-o", "-", "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stdout_records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert rows == len(stdout_records) == 10


def test_bad_setting_exits_2_naming_key_and_layer(tmp_path: Path) -> None:
    result = run_cli("crawl", "http://127.0.0.1:9/", "-s", "crawl.concurency=3", cwd=tmp_path)
    assert result.returncode == 2
    assert "crawl.concurency" in result.stderr and "command line" in result.stderr
    (tmp_path / "crawler.toml").write_text("[crawl]\nper_host = 'two'\n")
    result = run_cli("crawl", "http://127.0.0.1:9/", cwd=tmp_path)
    assert result.returncode == 2
    assert "crawl.per_host" in result.stderr and "crawler.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_broken_spider_file_gets_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    result = run_cli("crawl", "broken.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "broken.py" in result.stderr and "no_such_module_here" in result.stderr
    assert "Traceback" not in result.stderr


def test_dead_host_is_logged_and_counted(tmp_path: Path) -> None:
    result = run_cli("crawl", "http://127.0.0.1:9/", "--stats-file", "s.json", "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["errors"] and stats["pages"] == 0
    assert "127.0.0.1:9" in result.stderr


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_ctrl_c_finishes_in_flight_flushes_and_exits_130(tmp_path: Path, backend: str) -> None:
    site = generate_site(pages=400, links_per_page=5, hosts=("127.0.0.1",))
    with serve_many(site, latency=0.05) as servers:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "crawler",
                "crawl",
                servers.url("/index.html"),
                "-o",
                "out.jsonl",
                "--log-format",
                "json",
                "--stats-file",
                "s.json",
                "--backend",
                backend,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out = tmp_path / "out.jsonl"
        deadline = time.monotonic() + 60
        while (not out.exists() or len(out.read_text().splitlines()) < 5) and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for progress, not measuring time
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        served = servers.stats()
        fetched = sum(n for url, n in served.hits_by_url().items() if not url.endswith("/robots.txt"))
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["reason"] == "interrupted"
    lines = out.read_text().splitlines()
    # every page fetched before the stop was parsed and its item written
    assert len(lines) == stats["items"] >= 5
    assert fetched == stats["pages"]
    assert stats["pages"] < 400
