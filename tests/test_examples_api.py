"""The API-harvesting examples, run as a user runs them: ``python -m crawler crawl examples/X.py`` in a subprocess
against real servers on 127.0.0.1: json-server 0.17 (npm, installed by ``.ci/install-test-deps``), httpbin (PyPI,
served in-process by werkzeug) and a GitHub-shaped fake REST API (:class:`crawler.testing.LocalServer`).

json-server or httpbin missing: the test skips, with the command that installs it; under ``CI=true`` it fails.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode

import pytest

import crawler
from crawler.testing import LocalServer, RequestInfo

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: Where .ci/install-test-deps puts the npm packages (keep the two in step).
DEPS = Path(
    os.environ.get("CRAWLER_TEST_DEPS")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crawler-test"
)
READY_TIMEOUT = 30.0  # seconds for json-server to listen


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_") and k != "GITHUB_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args, "--log-format", "json"],
        cwd=cwd,
        env={**base, "PYTHONUNBUFFERED": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def missing(what: str, install: str) -> NoReturn:
    """Skip the test, or fail it under CI=true, where .ci/run installs everything."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing under CI=true: {install}")
    pytest.skip(f"{what} is not installed ({install})")


# -- json-server 0.17 ---------------------------------------------------------------------------------------------


def json_server_version(command: str) -> str | None:
    try:
        done = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@pytest.fixture(scope="module")
def json_server_command() -> str:
    """json-server 0.17 from .ci/install-test-deps's folder, else from PATH (version 1 pages differently)."""
    found = []
    for command in (str(DEPS / "node_modules" / ".bin" / "json-server"), shutil.which("json-server")):
        if command and Path(command).is_file():
            version = json_server_version(command)
            if version and version.startswith("0.17."):
                return command
            found.append(f"{command} is version {version}")
    missing("json-server 0.17 (npm)" + (f"; {', '.join(found)}" if found else ""), "run .ci/install-test-deps")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"json-server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a child process's port: there is nothing to wait on
    raise TimeoutError(f"json-server did not listen on 127.0.0.1:{port} within {READY_TIMEOUT} s")


@pytest.fixture(scope="module")
def json_server(json_server_command: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """json-server 0.17 serving a copy of examples/json_server_db.json; yields its base URL."""
    folder = tmp_path_factory.mktemp("json-server")
    db = folder / "db.json"
    shutil.copyfile(EXAMPLES / "json_server_db.json", db)
    port = free_port()
    log = folder / "json-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [json_server_command, "--host", "127.0.0.1", "--port", str(port), str(db)],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_json_server_every_post_once_with_its_comments(json_server: str, backend: str, tmp_path: Path) -> None:
    db = json.loads((EXAMPLES / "json_server_db.json").read_text(encoding="utf-8"))
    assert len(db["posts"]) == 120
    result = run_cli(
        "crawl",
        str(EXAMPLES / "json_server.py"),
        "-a",
        f"api={json_server}",
        "-o",
        "posts.jsonl",
        "--stats-file",
        "stats.json",
        "--backend",
        backend,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    posts = read_jsonl(tmp_path / "posts.jsonl")
    assert sorted(p["id"] for p in posts) == list(range(1, 121))  # every post, exactly once
    expected = {p["id"]: p for p in db["posts"]}
    comments: dict[int, list[dict[str, Any]]] = {}
    for comment in db["comments"]:
        comments.setdefault(comment["postId"], []).append(comment)
    for post in posts:
        assert post == {**expected[post["id"]], "comments": comments.get(post["id"], [])}
    assert sum(len(p["comments"]) for p in posts) == len(db["comments"])
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["counts"]["next_pages"] == 4  # 120 posts, 25 a page: pages 2 to 5 came from Link rel="next"
    assert stats["pages"] == 5 + 120 and stats["items"] == 120
    assert not stats["errors"]


def test_json_server_one_liner(json_server: str, tmp_path: Path) -> None:
    start = f"{json_server}/posts?_page=1&_limit=50"
    result = run_cli("crawl", start, "--paginate", "link", "-o", "posts.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p["id"] for p in read_jsonl(tmp_path / "posts.jsonl")] == list(range(1, 121))  # pages of 50, 50, 20


# -- httpbin ------------------------------------------------------------------------------------------------------


def import_or_missing(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the Python package {name}", 'pip install -e ".[test]"')


@pytest.fixture(scope="module")
def httpbin_url() -> Iterator[str]:
    """httpbin's Flask app on a werkzeug server in a thread (real HTTP on 127.0.0.1); yields its base URL."""
    app = import_or_missing("httpbin").app
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="httpbin", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_httpbin_shows_what_we_send_and_reads_rate_limits(httpbin_url: str, tmp_path: Path) -> None:
    result = run_cli(
        "crawl", str(EXAMPLES / "httpbin_headers.py"), "-a", f"api={httpbin_url}", "-o", "h.jsonl", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    items = read_jsonl(tmp_path / "h.jsonl")
    sent = next(item["sent"] for item in items if item["endpoint"] == "/headers")
    assert sent["User-Agent"].startswith(f"crawler/{crawler.__version__} (")
    assert sent["Accept"] == "application/json"
    assert sent["Host"] == httpbin_url.removeprefix("http://")
    limits = {item["dialect"]: item for item in items if item["endpoint"] == "/response-headers"}
    assert set(limits) == {"ietf-draft-08", "ietf-draft-06", "github", "exhausted"}
    draft08, draft06, github, exhausted = (limits[k] for k in ("ietf-draft-08", "ietf-draft-06", "github", "exhausted"))
    assert draft08 == {
        "endpoint": "/response-headers",
        "dialect": "ietf-draft-08",
        "source": "ietf-draft-08",
        "limit": 600.0,
        "remaining": 597.0,
        "reset_after": 58.0,
        "window": 60.0,
        "retry_after": None,
        "delay": 0.0,
    }
    assert (draft06["source"], draft06["limit"], draft06["remaining"], draft06["reset_after"]) == (
        "ietf-draft-06",
        600.0,
        596.0,
        57.0,
    )
    assert (github["source"], github["limit"], github["remaining"]) == ("x-ratelimit", 5000.0, 4990.0)
    assert 30 < github["reset_after"] <= 60 and github["delay"] == 0.0  # an epoch reset, read as seconds from now
    assert (exhausted["remaining"], exhausted["retry_after"], exhausted["delay"]) == (0.0, 1.0, 1.0)
    assert 3500 < exhausted["reset_after"] <= 3600  # Retry-After wins over the reset: the delay is 1 s


def test_httpbin_json_one_liner(httpbin_url: str, tmp_path: Path) -> None:
    result = run_cli("crawl", f"{httpbin_url}/json", "--items", "slideshow.slides", "-o", "slides.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    slides = read_jsonl(tmp_path / "slides.jsonl")
    assert [s["title"] for s in slides] == ["Wake up to WonderWidgets!", "Overview"]


# -- a GitHub-shaped REST API -------------------------------------------------------------------------------------

OWNER = "acme"
ISSUE_COUNTS = [0, 1, 3, 4, 7, 2, 10]  # per repository; with per_page=3, up to 4 pages of issues
Answer = tuple[int, list[tuple[str, str]], bytes]


def github_repos() -> list[dict[str, Any]]:
    return [
        {
            "id": 1000 + i,
            "name": f"repo{i}",
            "full_name": f"{OWNER}/repo{i}",
            "html_url": f"https://github.com/{OWNER}/repo{i}",
            "stargazers_count": 10 * i,
            "open_issues_count": count,
        }
        for i, count in enumerate(ISSUE_COUNTS)
    ]


def github_issues(full_name: str, count: int) -> list[dict[str, Any]]:
    """Newest first, as GitHub lists them; every fourth is a pull request (the issues API lists those too)."""
    return [
        {
            "number": n,
            "title": f"Issue {n} of {full_name}",
            "html_url": f"https://github.com/{full_name}/issues/{n}",
            **({"pull_request": {"url": f"https://api.github.com/repos/{full_name}/pulls/{n}"}} if n % 4 == 0 else {}),
        }
        for n in range(count, 0, -1)
    ]


class FakeGitHub:
    """Routes answering like the GitHub REST API: ``per_page``/``page`` paging with a Link header (next, last,
    first, prev, as absolute URLs on the Host the client sent); a quota of ``limit`` requests per fixed window of
    ``window`` seconds, announced in ``X-RateLimit-*`` with an epoch reset, and answered 403 "rate limit exceeded"
    beyond it; 401 without ``Authorization: Bearer <token>``."""

    def __init__(self, token: str, *, limit: int = 5000, window: int = 60) -> None:
        self.token, self.limit, self.window = token, limit, window
        self.reset = int(time.time()) + window  # epoch seconds, like GitHub's
        self.used = 0
        self.windows = 1
        self.lock = threading.Lock()
        self.routes: dict[str, Callable[[RequestInfo], Answer]] = {}
        repos = github_repos()
        self.routes[f"/orgs/{OWNER}/repos"] = self.lister(repos)
        for repo, count in zip(repos, ISSUE_COUNTS, strict=True):
            self.routes[f"/repos/{repo['full_name']}/issues"] = self.lister(github_issues(repo["full_name"], count))

    def lister(self, records: list[dict[str, Any]]) -> Callable[[RequestInfo], Answer]:
        def answer(info: RequestInfo) -> Answer:
            headers = [("Content-Type", "application/json; charset=utf-8")]
            if info.headers.get("authorization") != f"Bearer {self.token}":
                body = {"message": "Requires authentication", "documentation_url": "https://docs.github.com/rest"}
                return 401, headers + self.rate_headers(count=False)[1], json.dumps(body).encode()
            allowed, rate = self.rate_headers(count=True)
            if not allowed:
                body = {"message": "API rate limit exceeded", "documentation_url": "https://docs.github.com/rest"}
                return 403, headers + rate, json.dumps(body).encode()
            query = dict(parse_qsl(info.query))
            per_page, page = int(query.get("per_page", "30")), int(query.get("page", "1"))
            last = max(1, -(-len(records) // per_page))

            def url(number: int) -> str:
                return f"http://{info.host}{info.path}?{urlencode({**query, 'page': number})}"

            links = [(number, rel) for number, rel in ((page + 1, "next"), (last, "last")) if page < last]
            links += [(number, rel) for number, rel in ((1, "first"), (page - 1, "prev")) if page > 1]
            if links:
                headers.append(("Link", ", ".join(f'<{url(number)}>; rel="{rel}"' for number, rel in links)))
            chunk = records[(page - 1) * per_page : page * per_page]
            return 200, headers + rate, json.dumps(chunk).encode()

        return answer

    def rate_headers(self, *, count: bool) -> tuple[bool, list[tuple[str, str]]]:
        """Whether the request is within the quota, and the headers that say what is left."""
        with self.lock:
            if time.time() >= self.reset:  # a new window
                self.reset, self.used = int(time.time()) + self.window, 0
                self.windows += 1
            allowed = self.used < self.limit
            self.used += count and allowed
            used, reset = self.used, self.reset
        return allowed, [
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(self.limit - used)),
            ("X-RateLimit-Used", str(used)),
            ("X-RateLimit-Reset", str(reset)),
            ("X-RateLimit-Resource", "core"),
        ]


@pytest.fixture
def github() -> Iterator[tuple[LocalServer, str]]:
    """The fake GitHub API and the token it accepts."""
    token = "ghp_" + secrets.token_hex(18)
    with LocalServer(FakeGitHub(token).routes) as server:
        yield server, token


def run_github(server: LocalServer, cwd: Path, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    example = str(EXAMPLES / "github_api.py")
    args = ("-a", f"api={server.base_url}", "-a", f"owner={OWNER}", "-a", "per_page=3", "-o", "gh.jsonl")
    return run_cli("crawl", example, *args, "--stats-file", "stats.json", *extra, cwd=cwd, env=env)


def test_github_all_repos_and_issues_across_pages_with_bearer_token(
    github: tuple[LocalServer, str], tmp_path: Path
) -> None:
    server, token = github
    hosts = f'auth.hosts=["{server.authority}"]'  # the example sends the token to api.github.com only
    result = run_github(server, tmp_path, "-s", hosts, "--log-level", "debug", env={"GITHUB_TOKEN": token})
    assert result.returncode == 0, result.stderr[-3000:]
    items = read_jsonl(tmp_path / "gh.jsonl")
    repos = [item for item in items if item["type"] == "repo"]
    issues = [(item["repo"], item["number"]) for item in items if item["type"] == "issue"]
    assert [r["repo"] for r in repos] == [r["full_name"] for r in github_repos()]  # 3 pages: 3 + 3 + 1
    assert repos[3] == {"type": "repo", "repo": "acme/repo3", "stars": 30, "url": "https://github.com/acme/repo3"}
    expected = [
        (repo["full_name"], issue["number"])
        for repo, count in zip(github_repos(), ISSUE_COUNTS, strict=True)
        for issue in github_issues(repo["full_name"], count)
        if "pull_request" not in issue
    ]
    assert sorted(issues) == sorted(expected) and len(issues) == len(set(issues)) == 23
    log = server.stats().log
    assert len(log) == 3 + sum(-(-n // 3) for n in ISSUE_COUNTS)  # every page once: no robots.txt, no retry
    assert len({record.target for record in log}) == len(log)
    assert all(record.headers.get("authorization") == f"Bearer {token}" for record in log)
    assert all(record.headers.get("accept") == "application/vnd.github+json" for record in log)
    assert all(record.status == 200 for record in log)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert not stats["errors"] and stats["counts"]["next_pages"] == len(log) - 1 - sum(1 for n in ISSUE_COUNTS if n)
    for text in (result.stderr, result.stdout, (tmp_path / "gh.jsonl").read_text(), json.dumps(stats)):
        assert token not in text


def test_github_quota_is_never_exceeded(tmp_path: Path) -> None:
    token = "ghp_" + secrets.token_hex(18)
    fake = FakeGitHub(token, limit=6, window=1)  # 15 pages: at least 3 windows
    with LocalServer(fake.routes) as server:
        hosts = f'auth.hosts=["{server.authority}"]'
        result = run_github(server, tmp_path, "-s", hosts, env={"GITHUB_TOKEN": token})
        log = server.stats().log
    assert result.returncode == 0, result.stderr[-3000:]
    assert [record.status for record in log] == [200] * 15, "a request was sent beyond the quota"
    assert len(read_jsonl(tmp_path / "gh.jsonl")) == 7 + 23
    assert fake.windows >= 3


def test_github_token_goes_only_to_its_hosts(github: tuple[LocalServer, str], tmp_path: Path) -> None:
    server, token = github
    result = run_github(server, tmp_path, env={"GITHUB_TOKEN": token})  # auth.hosts: api.github.com only
    assert result.returncode == 0, result.stderr[-3000:]
    log = server.stats().log
    assert [record.status for record in log] == [401]  # not retried
    assert all("authorization" not in record.headers for record in log)
    assert not (tmp_path / "gh.jsonl").exists() or not read_jsonl(tmp_path / "gh.jsonl")
    assert json.loads((tmp_path / "stats.json").read_text())["errors"] == {"http_401": 1}
    assert token not in result.stderr


def test_github_without_token_names_the_variable(tmp_path: Path) -> None:
    result = run_cli("crawl", str(EXAMPLES / "github_api.py"), "-a", "api=http://127.0.0.1:9", cwd=tmp_path)
    assert result.returncode == 2
    assert "GITHUB_TOKEN" in result.stderr and "Traceback" not in result.stderr
