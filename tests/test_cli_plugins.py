"""Plugins as a user meets them from the command line: ``crawler plugins``, ``--middleware``, ``--frontier`` and
``--state`` errors; subprocesses against real servers on 127.0.0.1."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from crawler.testing import LocalServer

MIDDLEWARE = '''
from crawler import Request, Response


class Stamp:
    """Adds X-Stamp: <crawl.user_agent's first word> to every request."""

    def __init__(self, settings):
        self.value = settings.crawl.user_agent.split("/")[0]

    async def open(self, fetch):
        return None

    async def process_request(self, request: Request) -> Request:
        return request.replace(headers={**request.headers, "X-Stamp": self.value})

    async def process_response(self, request: Request, response: Response):
        return response


def broken(settings):
    raise RuntimeError("cannot start")
'''


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        cwd=cwd,
        env={**base, "COLUMNS": "250", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plugins_lists_every_installed_entry_point(tmp_path: Path) -> None:
    done = run_cli("plugins", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "built in:" in done.stdout
    installed = [
        ep for group in ("crawler.sinks", "crawler.frontiers", "crawler.middleware") for ep in entry_points(group=group)
    ]
    for ep in installed:
        assert ep.name in done.stdout and ep.value in done.stdout
    if not installed:
        assert "no plugins installed" in done.stdout


def test_middleware_from_a_module_path_changes_what_is_sent(tmp_path: Path) -> None:
    (tmp_path / "stamp.py").write_text(MIDDLEWARE, encoding="utf-8")
    seen: list[str | None] = []

    def page(request: object) -> bytes:
        seen.append(request.headers.get("x-stamp"))  # type: ignore[attr-defined]
        return b"<html><title>ok</title></html>"

    with LocalServer({"/index.html": page}) as server:
        done = run_cli(
            "crawl",
            server.url("/index.html"),
            "--middleware",
            "stamp:Stamp",
            "--user-agent",
            "stampbot/1.0",
            "--ignore-robots",
            "--no-progress",
            "-o",
            "out.jsonl",
            cwd=tmp_path,
            env={"PYTHONPATH": str(tmp_path)},
        )
    assert done.returncode == 0, done.stderr
    assert seen == ["stampbot"]


def test_unknown_or_broken_middleware_is_a_settings_error(tmp_path: Path) -> None:
    (tmp_path / "stamp.py").write_text(MIDDLEWARE, encoding="utf-8")
    unknown = run_cli("crawl", "http://127.0.0.1:9/", "--middleware", "nosuchplugin", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no middleware named 'nosuchplugin' is installed" in unknown.stderr
    broken = run_cli(
        "crawl", "http://127.0.0.1:9/", "--middleware", "stamp:broken", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}
    )
    assert broken.returncode == 2
    assert "cannot load 'stamp:broken': RuntimeError: cannot start" in broken.stderr


def test_unknown_frontier_names_the_known_ones(tmp_path: Path) -> None:
    done = run_cli("crawl", "http://127.0.0.1:9/", "--frontier", "nope://x", cwd=tmp_path)
    assert done.returncode == 2
    assert "no frontier handles 'nope://x'" in done.stderr
    assert "sqlite:///PATH.db" in done.stderr


def test_state_directory_in_use_is_refused_and_nothing_is_fetched(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with open(state / "frontier.db.lock", "a+", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another crawl holds it
        with LocalServer({"/index.html": b"<html></html>"}) as server:
            done = run_cli(
                "crawl", server.url("/index.html"), "--state", str(state), "--no-progress", "-o", "x.db", cwd=tmp_path
            )
            assert server.stats().requests == 0
    assert done.returncode == 1
    assert "is in use by another crawl" in done.stderr
