"""The examples, tested the way a user tests a spider: with the testing kit's pytest fixtures (``crawl``, ``serve``,
``cassette``, ``fake_clock``) and assertions, in-process, on asyncio and trio.

tests/test_examples_api.py runs the same examples through the command line against live servers; here they run
against a folder or routes served by ``serve``, or offline from cassettes committed under tests/cassettes/, which
were recorded from local servers (never the internet) by ``pytest --record-cassettes tests/test_examples_kit.py``:
json-server 0.17 (``.ci/install-test-deps``) on 127.0.0.1:3000 and httpbin on 127.0.0.1:8080, the examples' own
default addresses, started by the tests themselves when recording.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from test_examples_api import json_server_command, wait_listening  # the json-server fixture, used when recording

from crawler import Spider
from crawler._loader import load_spider_class
from crawler.testing import (
    CrawlResult,
    FakeClock,
    RequestInfo,
    assert_honoured_retry_after,
    assert_max_in_flight_per_host,
)
from crawler.testing.pytest_plugin import Cassette, Serve

__all__ = ["json_server_command"]  # a fixture: found by pytest in this module's namespace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
Crawl = Callable[..., CrawlResult]


def example(name: str) -> tuple[type[Spider], ModuleType]:
    """The spider class of ``examples/<name>.py`` and its module, loaded as ``crawler crawl`` loads it."""
    spider = load_spider_class(str(EXAMPLES / f"{name}.py"))
    return spider, sys.modules[spider.__module__]


# -- pydocs: a folder served by `serve` ---------------------------------------------------------------------------

INDEX = b"""<!DOCTYPE html><html><head><title>Docs</title><link rel="stylesheet" href="_static/basic.css"></head>
<body><div role="main"><h1>Python docs<a class="headerlink" href="#top">\xc2\xb6</a></h1>
<a href="library/json.html">json</a> <a href="archives/docs.zip">all of it</a> <a href="_static/logo.png">logo</a>
</div></body></html>"""
JSON_PAGE = b"""<!DOCTYPE html><html><head><title>json \xe2\x80\x94 JSON encoder</title></head>
<body><div role="main"><h1><code>json</code> \xe2\x80\x94 JSON encoder<a class="headerlink" href="#">\xc2\xb6</a></h1>
<h2>Basic Usage</h2>
<dl class="py function"><dt id="json.dumps">json.dumps(obj)</dt><dd>Serialize.</dd></dl>
<dl class="py class"><dt id="json.JSONEncoder">class json.JSONEncoder</dt><dd>
<dl class="py method"><dt id="json.JSONEncoder.default">default(o)</dt></dl></dd></dl>
<h2>Exceptions</h2><dl class="py exception"><dt id="json.JSONDecodeError">exception</dt></dl>
<a href="../index.html">up</a> <a href="../whatsnew.txt">news</a></div></body></html>"""


@pytest.fixture
def docs_folder(tmp_path: Path) -> Path:
    (tmp_path / "library").mkdir()
    (tmp_path / "index.html").write_bytes(INDEX)
    (tmp_path / "library" / "json.html").write_bytes(JSON_PAGE)
    return tmp_path


@pytest.mark.anyio
async def test_pydocs_on_a_small_folder(serve: Serve, crawl: Any, docs_folder: Path) -> None:
    PythonDocs, _ = example("pydocs")
    server = serve(docs_folder)
    result: CrawlResult = await crawl(PythonDocs(start_url=server.url("/index.html")))

    assert not result.errors and result.stats["reason"] == "finished"
    pages = {item["url"].removeprefix(server.base_url): item for item in result.items}
    assert pages["/index.html"] == {"url": server.url("/index.html"), "title": "Docs", "headings": ["Python docs"],
                                    "objects": []}  # fmt: skip
    json_page = pages["/library/json.html"]
    assert json_page["headings"] == ["json — JSON encoder", "Basic Usage", "Exceptions"]
    assert [(o["kind"], o["name"]) for o in json_page["objects"]] == [
        ("function", "json.dumps"),
        ("class", "json.JSONEncoder"),
        ("method", "json.JSONEncoder.default"),
        ("exception", "json.JSONDecodeError"),
    ]
    assert json_page["objects"][0]["url"] == server.url("/library/json.html#json.dumps")
    assert set(pages) == {"/index.html", "/library/json.html"}  # the link back is a duplicate
    fetched = set(server.stats().hits[server.authority])
    assert fetched == {"/robots.txt", "/index.html", "/library/json.html"}  # no CSS, image, archive or .txt


def test_pydocs_on_the_python_docs_holds_its_per_host_limit(
    serve: Serve, crawl: Crawl, pydocs: Path, anyio_backend: str
) -> None:
    PythonDocs, _ = example("pydocs")
    server = serve(pydocs, latency=0.005)  # answers take a moment, so that requests overlap
    result = crawl(PythonDocs(start_url=server.url("/index.html")), max_pages=30)

    assert result.settings.crawl.per_host == 4  # the example's custom_settings
    assert result.stats["pages"] == 30 and result.stats["reason"] == "max_pages" and not result.errors
    assert all(item["title"] and item["headings"] for item in result.items)
    stats = server.stats()
    assert stats.max_in_flight[server.authority] > 1  # the crawl was concurrent ...
    assert_max_in_flight_per_host(stats, 4)  # ... and never more than the example's per_host


# -- json_server: a cassette recorded from json-server 0.17 -------------------------------------------------------

#: The data json-server served while recording tests/cassettes/test_json_server_replayed: 5 posts, pages of 2.
SMALL_DB: dict[str, list[dict[str, Any]]] = {
    "posts": [
        {"id": 1, "title": "Post 1: on rate limits", "author": "brian", "tags": ["rate limits"]},
        {"id": 2, "title": "Post 2: on retries", "author": "grace", "tags": []},
        {"id": 3, "title": "Post 3: on cursors", "author": "ada", "tags": ["pagination", "cursors"]},
        {"id": 4, "title": "Post 4: on Retry-After", "author": "brian", "tags": ["retries"]},
        {"id": 5, "title": "Post 5: on politeness", "author": "linus", "tags": []},
    ],
    "comments": [
        {"id": 1, "postId": 1, "author": "grace", "body": "Comment 1 on post 1"},
        {"id": 2, "postId": 1, "author": "ada", "body": "Comment 2 on post 1"},
        {"id": 3, "postId": 3, "author": "brian", "body": "Comment 3 on post 3"},
        {"id": 4, "postId": 4, "author": "linus", "body": "Comment 4 on post 4"},
    ],
}


def expected_posts() -> list[dict[str, Any]]:
    return [
        {**post, "comments": [c for c in SMALL_DB["comments"] if c["postId"] == post["id"]]}
        for post in SMALL_DB["posts"]
    ]


@pytest.fixture
def json_server_when_recording(cassette: Cassette, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """While recording: json-server 0.17 on 127.0.0.1:3000 (the example's default) serving SMALL_DB."""
    if not cassette.recording:
        yield
        return
    command = request.getfixturevalue("json_server_command")  # skips, or fails under CI=true, when missing
    (tmp_path / "db.json").write_text(json.dumps(SMALL_DB, indent=2))
    log = tmp_path / "json-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [command, "--host", "127.0.0.1", "--port", "3000", "db.json"], cwd=tmp_path, stdout=out, stderr=out
        )
    try:
        wait_listening(3000, process, log)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.usefixtures("json_server_when_recording")
def test_json_server_replayed(crawl: Crawl, cassette: Cassette, anyio_backend: str) -> None:
    JsonServerPosts, _ = example("json_server")
    result = crawl(JsonServerPosts(limit="2"))  # http://127.0.0.1:3000, as recorded

    assert sorted(result.items, key=lambda post: post["id"]) == expected_posts()
    assert not result.errors and result.stats["reason"] == "finished"
    assert result.stats["counts"]["next_pages"] == 2  # pages 2 and 3 came from Link rel="next"
    assert result.stats["pages"] == 3 + 5


def json_server_routes(posts: list[dict[str, Any]], busy: set[str]) -> dict[str, Any]:
    """Routes answering like json-server 0.17 for ``posts`` (``_page``/``_limit``, ``X-Total-Count``, a Link header
    with first/prev/next/last); a page whose query is in ``busy`` is answered 429 with ``Retry-After: 1`` once."""

    def page(info: RequestInfo) -> tuple[int, list[tuple[str, str]], bytes]:
        if info.query in busy:
            busy.discard(info.query)
            return 429, [("Retry-After", "1"), ("Content-Type", "text/plain")], b"Too Many Requests"
        query = dict(parse_qsl(info.query))
        number, limit = int(query["_page"]), int(query["_limit"])
        last = -(-len(posts) // limit)

        def link(n: int, rel: str) -> str:
            return f'<http://{info.host}/posts?{urlencode({"_page": n, "_limit": limit})}>; rel="{rel}"'

        rels = [link(1, "first")] + ([link(number - 1, "prev")] if number > 1 else [])
        rels += ([link(number + 1, "next")] if number < last else []) + [link(last, "last")]
        headers = [("Content-Type", "application/json"), ("X-Total-Count", str(len(posts))), ("Link", ", ".join(rels))]
        return 200, headers, json.dumps(posts[(number - 1) * limit : number * limit]).encode()

    routes: dict[str, Any] = {"/posts": page}
    for post in posts:
        comments = [c for c in SMALL_DB["comments"] if c["postId"] == post["id"]]
        routes[f"/posts/{post['id']}/comments"] = json.dumps(comments).encode()
    return routes


def test_json_server_waits_out_a_429(serve: Serve, crawl: Crawl, anyio_backend: str) -> None:
    JsonServerPosts, _ = example("json_server")
    busy_page = "_page=2&_limit=2"
    server = serve(json_server_routes(SMALL_DB["posts"], busy={busy_page}))
    result = crawl(JsonServerPosts(api=server.base_url, limit="2"))

    assert sorted(result.items, key=lambda post: post["id"]) == expected_posts()  # nothing lost to the 429
    assert not result.errors and result.stats["counts"]["retries"] == 1
    assert_honoured_retry_after(server.stats(), f"/posts?{busy_page}", 1)


# -- httpbin_headers: a cassette recorded from httpbin, with the example's clock frozen ---------------------------


@pytest.fixture
def frozen_httpbin_example(fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> type[Spider]:
    """The example's spider, its ``time.time()`` replaced by the fake clock: the rate-limit headers it asks httpbin
    for (epoch resets included) are the same on every run, so their requests match the cassette."""
    HttpbinHeaders, module = example("httpbin_headers")
    monkeypatch.setattr(module, "time", SimpleNamespace(time=fake_clock))
    return HttpbinHeaders


@pytest.fixture
def httpbin_when_recording(cassette: Cassette) -> Iterator[None]:
    """While recording: httpbin on 127.0.0.1:8080 (the example's default), in a thread."""
    if not cassette.recording:
        yield
        return
    from werkzeug.serving import make_server

    app = pytest.importorskip("httpbin").app
    server = make_server("127.0.0.1", 8080, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.mark.usefixtures("httpbin_when_recording")
def test_httpbin_headers_replayed(
    crawl: Crawl, cassette: Cassette, frozen_httpbin_example: type[Spider], anyio_backend: str
) -> None:
    result = crawl(frozen_httpbin_example, user_agent="crawler-tests/1.0 (+https://example.org/contact)")

    assert not result.errors
    sent = next(item["sent"] for item in result.items if item["endpoint"] == "/headers")
    assert sent["User-Agent"] == "crawler-tests/1.0 (+https://example.org/contact)"
    assert (sent["Accept"], sent["Host"]) == ("application/json", "127.0.0.1:8080")
    limits = {item["dialect"]: item for item in result.items if item["endpoint"] == "/response-headers"}
    assert limits["ietf-draft-08"] == {
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
    github, exhausted = limits["github"], limits["exhausted"]
    assert (github["source"], github["limit"], github["remaining"], github["reset_after"]) == (
        "x-ratelimit",
        5000.0,
        4990.0,
        60.0,  # an epoch reset, read against the frozen clock: exactly a minute
    )
    assert (exhausted["remaining"], exhausted["reset_after"], exhausted["retry_after"], exhausted["delay"]) == (
        0.0,
        3600.0,
        1.0,
        1.0,  # Retry-After wins over the hour-long reset
    )


def test_cassettes_are_readable_and_hold_no_clutter() -> None:
    """The committed cassettes: plain YAML, one exchange a file, small, no temporary recording folders left."""
    folder = Path(__file__).resolve().parent / "cassettes"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["test_httpbin_headers_replayed", "test_json_server_replayed"]
    files = sorted(folder.rglob("*.yaml"))
    assert 10 <= len(files) <= 30
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# crawler cassette:") and len(text) < 4000, path
