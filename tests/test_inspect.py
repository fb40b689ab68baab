"""``crawler fetch`` and ``crawler list`` as a user runs them, against real servers on 127.0.0.1."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from crawler import Request, Response
from crawler._cli import cli
from crawler._inspect import FETCH_PAGINATORS, analyse, robots_agent
from crawler.testing import ApiAuth, ApiServer, LocalServer, RateLimit, Reply, RequestInfo

HTML = {"Content-Type": "text/html; charset=utf-8"}
PAGE = b"""<html><head><title>Home</title></head><body>
<a href="/a.html">a</a> <a href="b.html">b</a> <a href="mailto:x@example.org">mail</a>
<a href="http://other.example/c">c</a> <a href="/d.html">d</a></body></html>"""


def echo_headers(request: RequestInfo) -> Reply:
    return 200, {"Content-Type": "application/json"}, json.dumps(dict(request.headers)).encode()


def routes() -> dict[str, Any]:
    return {
        "/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n"),
        "/": (
            200,
            [
                *HTML.items(),
                ("Link", '</?page=2>; rel="next", </?page=9>; rel="last"'),
                ("RateLimit-Policy", '"default";q=100;w=60'),
                ("RateLimit", '"default";r=42;t=30'),
                ("Set-Cookie", "session=s3cr3t-cookie; Path=/; HttpOnly"),
            ],
            PAGE,
        ),
        "/private/x.html": (200, HTML, b"<title>private</title>"),
        "/old": (301, {"Location": "/new.html"}, b""),
        "/new.html": (200, HTML, b"<title>new</title><a href='/'>home</a>"),
        "/limited": (429, {"Retry-After": "7", "Content-Type": "text/plain"}, b"slow down\n"),
        "/logo.png": (200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n" + bytes(200)),
        "/long.txt": (200, {"Content-Type": "text/plain"}, b"x" * 5000),
        "/echo": echo_headers,
    }


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(routes()) as running:
        yield running


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def fetch_json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = run("fetch", *args, "--json", env=env)
    assert result.exit_code == 0, result.output + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


# -- crawler fetch: what crawler makes of a response --------------------------------------------------------------


def test_fetch_reports_status_headers_rate_limit_pagination_robots_and_links(server: LocalServer) -> None:
    report = fetch_json(server.url("/"))
    assert (report["status"], report["reason"], report["content_type"]) == (200, "OK", "text/html")
    headers = dict(report["headers"])
    assert headers["RateLimit"] == '"default";r=42;t=30'
    assert headers["Set-Cookie"] == "session=***; Path=/; HttpOnly"  # the cookie's value is not shown
    assert report["body"] == {"bytes": len(PAGE), "text": PAGE.decode(), "truncated": False}
    limit = report["rate_limit"]
    assert limit["source"] == "ietf-draft-08"
    assert (limit["limit"], limit["remaining"], limit["reset_after"], limit["window"]) == (100, 42, 30, 60)
    assert limit["exhausted"] is False and limit["delay"] == 0
    assert report["pagination"]["link"] == {
        "url": server.url("/?page=2"),
        "method": "GET",
        "body": None,
        "cursor": server.url("/?page=2"),
    }
    assert list(report["pagination"]) == list(FETCH_PAGINATORS)
    assert all(page is None for spec, page in report["pagination"].items() if spec != "link")  # HTML: no cursor
    assert report["link_header"] == [
        {"url": server.url("/?page=2"), "rels": ["next"]},
        {"url": server.url("/?page=9"), "rels": ["last"]},
    ]
    assert report["robots"] == {
        "checked": True,
        "allowed": True,
        "crawl_delay": 2.0,
        "agent": "crawler",
        "reason": "robots.txt",
    }
    expected_links = [server.url("/a.html"), server.url("/b.html"), "http://other.example/c", server.url("/d.html")]
    assert report["links"] == {"count": 4, "first": expected_links}
    assert report["redirect"] is None and report["redirects"] == []


def test_fetch_links_are_capped_and_the_body_truncated(server: LocalServer) -> None:
    report = fetch_json(server.url("/"), "--links", "2")
    assert report["links"]["count"] == 4 and len(report["links"]["first"]) == 2
    report = fetch_json(server.url("/long.txt"), "--max-body", "100")
    assert report["body"] == {"bytes": 5000, "text": "x" * 100, "truncated": True}
    report = fetch_json(server.url("/long.txt"), "--no-body")
    assert report["body"] == {"bytes": 5000, "text": None, "truncated": False}
    report = fetch_json(server.url("/logo.png"))
    assert report["body"] == {"bytes": 208, "text": None, "truncated": False}  # binary: not shown


def test_fetch_robots_verdict_for_a_disallowed_url(server: LocalServer) -> None:
    report = fetch_json(server.url("/private/x.html"))
    assert report["status"] == 200  # fetched all the same: the user asked for it
    assert report["robots"]["allowed"] is False and report["robots"]["crawl_delay"] == 2.0
    # the verdict is for the User-Agent's product token, as the crawl's
    report = fetch_json(server.url("/private/x.html"), "--user-agent", "MyBot/2.0 (+https://example.org/bot)")
    assert report["robots"]["agent"] == "MyBot" and report["robots"]["allowed"] is False
    report = fetch_json(server.url("/private/x.html"), "--ignore-robots")
    assert report["robots"]["checked"] is False and report["robots"]["allowed"] is None


def test_fetch_text_report_on_a_narrow_terminal_keeps_urls_whole_and_says_robots_would_skip(
    server: LocalServer,
) -> None:
    long_next = "/api/v1/repositories/12345/issues?state=all&sort=updated&direction=desc&per_page=100&page=2"
    routes = {"/": (200, [("Content-Type", "application/json"), ("Link", f'<{long_next}>; rel="next"')], b"[]")}
    with LocalServer(routes) as api:
        result = run("fetch", api.url("/"), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout  # folded over several lines, never cut short
    assert "per_page=100&page=2" in "".join(line.strip(" │") for line in result.stdout.splitlines())
    result = run("fetch", server.url("/private/x.html"), "--no-body", env={"COLUMNS": "200"})
    assert "robots.txt: disallowed for 'crawler'" in result.stdout
    assert "fetched because you asked, a crawl would skip it" in result.stdout


def test_fetch_robots_unavailable_means_disallowed() -> None:
    with LocalServer({"/robots.txt": (503, {}, b"down"), "/": (200, HTML, b"<title>x</title>")}) as broken:
        report = fetch_json(broken.url("/"))
    assert report["status"] == 200
    assert report["robots"]["allowed"] is False and "503" in report["robots"]["reason"]


def test_fetch_no_robots_txt_means_allowed() -> None:
    with LocalServer({"/": (200, HTML, b"<title>x</title>")}) as bare:
        report = fetch_json(bare.url("/"))
    assert report["robots"]["allowed"] is True and report["robots"]["crawl_delay"] == 0.0
    assert "no robots.txt" in report["robots"]["reason"]


def test_fetch_retry_after_and_redirects(server: LocalServer) -> None:
    report = fetch_json(server.url("/limited"))
    assert report["status"] == 429 and report["reason"] == "Too Many Requests"
    assert report["rate_limit"]["source"] == "retry-after"
    assert report["rate_limit"]["retry_after"] == 7 and report["rate_limit"]["delay"] == 7
    report = fetch_json(server.url("/old"))
    assert report["status"] == 301 and report["redirect"] == server.url("/new.html")
    report = fetch_json(server.url("/old"), "-L")
    assert report["status"] == 200 and report["url"] == server.url("/new.html")
    assert report["redirects"] == [{"url": server.url("/old"), "status": 301}]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_fetch_sends_headers_user_agent_and_credentials_like_crawl(
    server: LocalServer, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FETCH_TEST_TOKEN", "t0ken-value")
    args = ("-H", "X-Trace: abc", "--user-agent", "MyBot/2.0", "--auth", "bearer", "--secret", "env:FETCH_TEST_TOKEN")
    report = fetch_json(server.url("/echo"), *args, "-s", f"crawl.backend={backend}", "--body")
    seen = json.loads(report["body"]["text"])
    assert seen["x-trace"] == "abc" and seen["user-agent"] == "MyBot/2.0"
    assert seen["authorization"] == "Bearer t0ken-value"


def test_fetch_api_server_paginator_and_rate_limit_dialect() -> None:
    with ApiServer(records=25, style="stripe", rate_limit=RateLimit(quota=10, window=60, dialect="github")) as api:
        report = fetch_json(api.start_url)
    found = {spec: page for spec, page in report["pagination"].items() if page is not None}
    assert found["cursor:stripe"]["cursor"] == "10"  # the last id of the first page
    assert "starting_after=10" in found["cursor:stripe"]["url"]
    assert "link" not in found and "cursor:slack" not in found
    limit = report["rate_limit"]
    assert limit["source"] == "x-ratelimit" and limit["limit"] == 10 and limit["remaining"] == 9


def test_fetch_extra_paginate_spec(server: LocalServer) -> None:
    with ApiServer(records=5, style="slack", page_size=2) as api:
        report = fetch_json(api.start_url, "--paginate", "cursor:response_metadata.next_cursor->cursor")
    custom = report["pagination"]["cursor:response_metadata.next_cursor->cursor"]
    assert custom is not None and custom == report["pagination"]["cursor:slack"]


def test_fetch_human_output(server: LocalServer) -> None:
    result = run("fetch", server.url("/"))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "200 OK" in out and "<title>Home</title>" in out
    assert "rate limit (ietf-draft-08): limit 100, remaining 42" in out
    assert "Crawl-delay 2 s" in out and "allowed" in out
    assert "links: 4 on the page" in out and server.url("/a.html") in out
    assert "s3cr3t-cookie" not in out
    result = run("fetch", server.url("/"), "--no-body")
    assert "<title>Home</title>" not in result.stdout and "200 OK" in result.stdout


def test_fetch_dead_host_exits_1() -> None:
    result = run("fetch", "http://127.0.0.1:9/")
    assert result.exit_code == 1
    assert "cannot connect to 127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("http://[bad/",), "invalid URL 'http://[bad/'"),
        (("ftp://example.org/",), "scheme must be http or https"),
        (("http://127.0.0.1:9/", "--paginate", "cursor:nonsense"), "invalid pagination spec 'cursor:nonsense'"),
        (("http://127.0.0.1:9/", "-s", "crawl.timout=3"), "crawl.timout"),
        (("http://127.0.0.1:9/", "--auth", "bearer", "--secret", "env:CRAWLER_TEST_UNSET_VARIABLE"), "not set"),
        (("http://127.0.0.1:9/", "-H", "no colon here"), "'no colon here' is not 'Name: value'"),
    ],
)
def test_fetch_bad_input_exits_2_naming_it(args: tuple[str, ...], message: str) -> None:
    result = run("fetch", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_fetch_api_key_sent_in_the_query_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FETCH_TEST_KEY", "k3y-value")
    with ApiServer(records=25, style="stripe", auth=ApiAuth(kind="api_key_query", secret="k3y-value")) as api:
        key = ("--auth", "api_key", "--secret", "env:FETCH_TEST_KEY", "-s", "auth.query_param=api_key")
        result = run("fetch", api.start_url, *key, "--json")
        refused = fetch_json(api.start_url)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == 200 and refused["status"] == 401  # the key was sent, and is needed
    assert "k3y-value" not in result.stdout
    assert report["url"] == api.start_url
    assert report["pagination"]["cursor:stripe"]["url"] == api.start_url + "?starting_after=10"  # no key


def test_secret_in_the_query_is_not_shown(server: LocalServer) -> None:
    report = fetch_json(server.url("/echo?api_key=k3y-value"))
    assert "k3y-value" not in json.dumps({k: v for k, v in report.items() if k != "body"})
    assert report["url"] == server.url("/echo?api_key=***")


# -- analyse: pure -------------------------------------------------------------------------------------------------


def test_analyse_json_cursor_styles_without_io() -> None:
    request = Request(url="https://api.example.org/v1/items?limit=2")
    body = {
        "data": [{"id": "a"}, {"id": "b"}],
        "has_more": True,
        "links": {"next": "/v1/items?after=b"},
        "@odata.nextLink": "items?$skiptoken=2",
        "@odata.context": "https://api.example.org/v1/$metadata#items",
    }
    response = Response(
        url=request.url,
        status=200,
        headers=[("Content-Type", "application/json"), ("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "60")],
        body=json.dumps(body).encode(),
        request=request,
    )
    report = analyse(response, now=1_700_000_000.0, paginate=["next:links.next"])
    pages = report["pagination"]
    assert pages["cursor:stripe"]["url"] == "https://api.example.org/v1/items?limit=2&starting_after=b"
    assert pages["cursor:jsonapi"]["url"] == "https://api.example.org/v1/items?after=b"
    assert pages["next:links.next"] == pages["cursor:jsonapi"]
    # query parameters named like secrets are hidden, as in logs: OData's $skiptoken too
    assert pages["cursor:odata"]["url"] == "https://api.example.org/v1/items?$skiptoken=***"
    assert pages["offset:offset"]["cursor"] == "2" and pages["page:page"]["cursor"] == "2"
    assert pages["link"] is None and pages["cursor:slack"] is None and pages["cursor:relay"] is None
    limit = report["rate_limit"]
    assert limit["exhausted"] is True and limit["delay"] == 60.0  # remaining 0: wait for the reset
    assert report["links"] == {"count": 0, "first": []}  # not HTML


def test_robots_agent_is_the_product_token() -> None:
    assert robots_agent("crawler/0.1.0 (polite Python crawler)") == "crawler"
    assert robots_agent("MyBot") == "MyBot"


# -- crawler list ----------------------------------------------------------------------------------------------------

BOOKS = '''
"""Books from the shop."""
from crawler import Spider


class Books(Spider):
    """Every book of books.example: title and price.

    More text that is not shown."""

    name = "books"
    start_urls = ["https://books.example/", "https://books.example/new"]
'''

NEWS = """
from crawler import Spider


class NewsSpider(Spider):
    name = "news"
    start_url = "https://news.example/?token=abc123"
"""

UNDOCUMENTED = '''
"""Authors, from the module docstring."""
from crawler import Spider


class Authors(Spider):
    name = "books"
'''


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "spiders").mkdir()
    (tmp_path / "books.py").write_text(textwrap.dedent(BOOKS))
    (tmp_path / "spiders" / "news.py").write_text(textwrap.dedent(NEWS))
    (tmp_path / "spiders" / "authors.py").write_text(textwrap.dedent(UNDOCUMENTED))
    (tmp_path / "spiders" / "broken.py").write_text("import no_such_module_for_list\n")
    (tmp_path / "helpers.py").write_text("VALUE = 1\n")  # no spider: not listed, no problem
    path = list(sys.path)
    yield tmp_path
    sys.path[:] = path
    for name in [n for n in sys.modules if n.startswith("crawler_spider_")]:
        del sys.modules[name]


def test_list_json(project: Path) -> None:
    result = run("list", "--dir", str(project), "--json")
    assert result.exit_code == 0, result.stderr
    listing = json.loads(result.stdout)
    spiders = {(s["name"], s["cls"]): s for s in listing["spiders"]}
    assert list(spiders) == [("books", "Books"), ("books", "Authors"), ("news", "NewsSpider")]
    books = spiders["books", "Books"]
    assert books["source"] == "books.py" and books["shadowed_by"] is None
    assert books["start_urls"] == ["https://books.example/", "https://books.example/new"]
    assert books["description"] == "Every book of books.example: title and price."
    authors = spiders["books", "Authors"]
    assert authors["source"] == "spiders/authors.py" and authors["shadowed_by"] == "books.py"
    assert authors["description"] == "Authors, from the module docstring."
    news = spiders["news", "NewsSpider"]
    assert news["start_urls"] == ["https://news.example/?token=***"] and news["description"] == ""
    assert listing["problems"] == [
        {"source": "spiders/broken.py", "error": listing["problems"][0]["error"]},
    ]
    assert "no_such_module_for_list" in listing["problems"][0]["error"]


def test_list_table(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["list"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "books.py:Books" in result.stdout and "spiders/news.py:NewsSpider" in result.stdout
    assert "shadowed by books.py" in result.stdout
    assert "spiders/broken.py" in result.stderr and "no_such_module_for_list" in result.stderr


def test_list_empty_project(tmp_path: Path) -> None:
    result = run("list", "--dir", str(tmp_path))
    assert result.exit_code == 0 and "no spiders in" in result.stdout
