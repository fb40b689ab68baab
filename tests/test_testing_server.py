"""The testing kit: the site generator's invariants, and the local servers over real loopback sockets."""

from __future__ import annotations

import http.client
import inspect
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import httpx
import pytest

import crawler.testing
from crawler.testing import (
    LocalServer,
    Page,
    RequestInfo,
    RouteValue,
    Site,
    generate_site,
    resolve_href,
    serve_many,
    split_authority,
)

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
ASSET_TYPES = {"png": "image/png", "css": "text/css; charset=utf-8", "pdf": "application/pdf"}
JUNK = ("mailto:", "javascript:", "http://[bad")


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs.extend(v for k, v in attrs if tag == "a" and k == "href" and v is not None)


def hrefs_of(body: bytes) -> list[str]:
    parser = _Hrefs()
    parser.feed(body.decode())
    return parser.hrefs


def site_hrefs(links: tuple[str, ...]) -> list[str]:
    return [h for h in links if not h.startswith(JUNK)]


@pytest.fixture(scope="module")
def site() -> Site:
    return generate_site(pages=60, links_per_page=8, hosts=HOSTS, port=8000, seed=3)


# -- the generator -----------------------------------------------------------------------------------------------


def test_exports_are_the_public_names() -> None:
    public = {
        name
        for name, value in vars(crawler.testing).items()
        if name.isidentifier() and not name.startswith("_") and not inspect.ismodule(value)  # pytest_plugin
    }
    assert sorted(crawler.testing.__all__) == sorted(public)


def test_same_seed_same_site_other_seed_other_site() -> None:
    assert generate_site(pages=30, seed=5) == generate_site(pages=30, seed=5)
    assert generate_site(pages=30, seed=5) != generate_site(pages=30, seed=6)


def test_layout_sizes_and_content_types(site: Site) -> None:
    assert site.hosts == ("127.0.0.1:8000", "127.0.0.2:8000", "127.0.0.3:8000")
    routes = site.routes("127.0.0.2")
    html = {p: page for p, page in routes.items() if p.endswith(".html")}
    assert len(html) == 60 and "/index.html" in html
    assert all(len(page.body) == 7680 for page in html.values())
    assets = {p: page for p, page in routes.items() if p.startswith("/assets/")}
    assert len(assets) == 6  # ceil(60 * 0.1)
    for path, page in assets.items():
        assert page.content_type == ASSET_TYPES[path.rsplit(".", 1)[1]]
    assert set(routes) == set(html) | set(assets)  # no robots.txt unless asked
    body = html["/index.html"].body
    assert b"<title>" in body and b"<h1>" in body


def test_every_page_has_links_per_page_site_links_and_the_body_holds_them(site: Site) -> None:
    all_links: list[str] = []
    for host in site.hosts:
        for page in site.routes(host).values():
            if page.content_type.startswith("text/html"):
                assert hrefs_of(page.body) == list(page.links)
                assert len(site_hrefs(page.links)) == 8
                all_links.extend(page.links)
    assert any("#" in h for h in all_links)
    assert any("/x/../" in h for h in all_links)
    assert any(h.startswith("http://127.0.0.3:8000/") for h in all_links)
    assert any(not h.startswith(("/", "http")) for h in all_links)  # relative hrefs
    assert {j for j in JUNK if any(h.startswith(j) for h in all_links)} == set(JUNK)
    assert resolve_href("http://h/", "http://[bad") is None
    assert resolve_href("http://h/a/b.html", "./x/../c.html#f") == "http://h/a/c.html"
    for host in site.hosts:  # duplicates appear on some pages
        if any(len(set(p.links)) < len(p.links) for p in site.routes(host).values()):
            break
    else:
        pytest.fail("no page repeats an href")


def test_every_page_is_reachable_from_index_on_every_host(site: Site) -> None:
    html_paths = {p for p in site.routes("127.0.0.1") if p.endswith(".html")}
    for host in HOSTS:
        assert site.reachable_paths(host) == html_paths
    starts = [site.url("/index.html", h) for h in HOSTS]
    assert site.reachable_urls(starts) == site.html_urls()
    with_assets = site.reachable_urls(starts, include_assets=True)
    assert {u for u in with_assets if "/assets/" in u} <= {site.url(p, h) for h in site.hosts for p in site.pages[h]}
    assert site.reachable_urls(starts, hosts=["127.0.0.2"]) == {site.url(p, "127.0.0.2") for p in html_paths}


def test_reachability_with_one_link_per_page_is_a_chain() -> None:
    chain = generate_site(pages=20, links_per_page=1, seed=1)
    assert len(chain.reachable_paths()) == 20


def test_with_port_keeps_the_graph() -> None:
    site = generate_site(pages=20, hosts=HOSTS, seed=2)
    assert not site.is_bound
    bound = site.with_port(9999)
    assert bound.is_bound and bound.hosts[1] == "127.0.0.2:9999"
    assert bound.routes("127.0.0.2").keys() == site.routes("127.0.0.2").keys()
    unbound_links = [tuple(h.replace(":9999", "") for h in p.links) for p in bound.routes("127.0.0.1").values()]
    assert unbound_links == [p.links for p in site.routes("127.0.0.1").values()]


def test_robots_disallow_prunes_reachability() -> None:
    site = generate_site(pages=50, disallow=["/s1/"], port=8000)
    robots = site.routes("127.0.0.1")["/robots.txt"]
    assert robots == Page(body=b"User-agent: *\nDisallow: /s1/\n", content_type="text/plain; charset=utf-8")
    obeyed = site.reachable_paths(respect_robots=True)
    assert obeyed and not any(p.startswith("/s1/") for p in obeyed)
    assert obeyed < site.reachable_paths()
    custom = generate_site(pages=5, robots_txt="User-agent: *\nDisallow: /\n", port=1)
    assert custom.reachable_paths(respect_robots=True) == set()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pages": 0},
        {"links_per_page": 0},
        {"asset_ratio": 1.5},
        {"robots_txt": "", "disallow": ["/"]},
        {"hosts": ("a", "a")},
        {"hosts": ()},
    ],
)
def test_bad_parameters_raise_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        generate_site(**kwargs)  # type: ignore[arg-type]


def test_split_authority() -> None:
    assert split_authority("127.0.0.2:80") == ("127.0.0.2", 80)
    assert split_authority("localhost") == ("localhost", None)
    assert split_authority("[::1]:8080") == ("::1", 8080)
    assert split_authority("[::1]") == ("::1", None)


# -- the server --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One client for the module: creating one costs tens of milliseconds (its TLS context)."""
    with httpx.Client() as client:
        yield client


@pytest.fixture
def served() -> Iterator[LocalServer]:
    with LocalServer(generate_site(pages=30, seed=1)) as server:
        yield server


def test_serves_a_site_bound_to_its_port(served: LocalServer, client: httpx.Client) -> None:
    site = served.site
    assert site is not None and site.hosts == (served.authority,)
    index = client.get(served.url("/index.html"))
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert int(index.headers["content-length"]) == len(index.content) == 7680
    assert index.content == site.routes(served.host)["/index.html"].body
    asset = next(p for p in site.routes(served.host) if p.endswith(".png"))
    assert client.get(served.url(asset)).headers["content-type"] == "image/png"
    assert client.get(served.url("/nope.html")).status_code == 404
    head = client.head(served.url("/index.html"))
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "7680"
    client.get(served.url("/index.html"))
    stats = served.stats()
    assert stats.requests == 5
    assert stats.hits[served.authority]["/index.html"] == 3
    assert stats.statuses == {200: 4, 404: 1}
    assert stats.in_flight == {}
    assert [r.method for r in stats.log] == ["GET", "GET", "GET", "HEAD", "GET"]
    served.reset()
    assert served.stats().requests == 0 and served.stats().log == ()


def test_keep_alive_reuses_one_connection(served: LocalServer, client: httpx.Client) -> None:
    for _ in range(3):
        assert client.get(served.url("/index.html")).status_code == 200
    assert client.get(served.url("/missing")).status_code == 404
    assert len({record.client for record in served.stats().log}) == 1


def test_dot_segments_and_queries_are_normalized_in_hits(served: LocalServer) -> None:
    conn = http.client.HTTPConnection(served.host, served.port)  # httpx would normalize the path itself
    conn.request("GET", "/s1/x/../../index.html?a=1")
    response = conn.getresponse()
    assert response.status == 200 and len(response.read()) == 7680
    conn.close()
    assert served.stats().hits[served.authority] == {"/index.html?a=1": 1}
    assert served.stats().log[0].target == "/s1/x/../../index.html?a=1"


def test_routes_mapping_values(client: httpx.Client) -> None:
    def echo(request: RequestInfo) -> tuple[int, list[tuple[str, str]], bytes]:
        return 201, [("X-Seen", request.path), ("X-Seen", request.query)], request.body

    def broken(request: RequestInfo) -> bytes:
        raise RuntimeError("boom")

    routes: dict[str, RouteValue] = {
        "/": b"<h1>home</h1>",
        "/data.json": b'{"a": 1}',
        "/items?page=2": (200, {"Content-Type": "application/json"}, b"[2]"),
        "/items": (200, {"Content-Type": "application/json", "Link": '</items?page=2>; rel="next"'}, b"[1]"),
        "/echo": echo,
        "/broken": broken,
        "/page": Page(body=b"x", content_type="text/plain"),
        "/close": (200, {"Connection": "close"}, b"bye"),
    }
    with LocalServer(routes) as server:
        assert client.get(server.url("/")).headers["content-type"] == "text/html; charset=utf-8"
        assert client.get(server.url("/data.json")).json() == {"a": 1}
        assert client.get(server.url("/items")).json() == [1]
        assert client.get(server.url("/items?page=2")).json() == [2]
        echoed = client.post(server.url("/echo?q=1"), content=b"payload")
        assert (echoed.status_code, echoed.content) == (201, b"payload")
        assert echoed.headers.get_list("x-seen") == ["/echo", "q=1"]
        assert client.get(server.url("/broken")).status_code == 500
        assert client.get(server.url("/page")).headers["content-type"] == "text/plain"
        assert client.get(server.url("/close")).headers["connection"] == "close"
        errors = server.stats().errors
    assert len(errors) == 1 and "RuntimeError: boom" in errors[0]


def test_max_in_flight_counts_concurrent_requests(client: httpx.Client) -> None:
    n = 5
    barrier = threading.Barrier(n, timeout=5)

    def gate(request: RequestInfo) -> bytes:
        barrier.wait()  # returns only once all n requests are in flight at once
        return b"ok"

    statuses: list[int] = []
    with LocalServer({"/gate": gate}) as server:  # an httpx.Client is thread-safe
        threads = [
            threading.Thread(target=lambda: statuses.append(client.get(server.url("/gate")).status_code))
            for _ in range(n)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = server.stats()
    assert statuses == [200] * n
    assert stats.max_in_flight == {server.authority: n}
    assert stats.max_in_flight_total == n
    assert stats.in_flight == {}


def test_error_rate_injects_errors(client: httpx.Client) -> None:
    with LocalServer({"/": b"ok"}, error_rate=1.0, error_status=503) as server:
        assert client.get(server.url("/")).status_code == 503
    with LocalServer({"/": b"ok"}, error_rate=0.5, seed=1) as server:
        statuses = {client.get(server.url("/")).status_code for _ in range(40)}
    assert statuses == {200, 500}


def test_stop_closes_kept_alive_connections_and_is_idempotent(client: httpx.Client) -> None:
    server = LocalServer({"/": b"ok"}).start()
    assert client.get(server.url("/")).status_code == 200
    server.stop()
    server.stop()
    with pytest.raises(httpx.TransportError):
        client.get(server.url("/"))
    with pytest.raises(RuntimeError):
        _ = LocalServer({}).port
    with pytest.raises(ValueError, match=r"127\.0\.0\.2"):
        LocalServer(generate_site(pages=2), host="127.0.0.2").start()


def test_serves_a_directory(tmp_path: Path, client: httpx.Client) -> None:
    (tmp_path / "index.html").write_text("<h1>root</h1>")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text("<h1>docs</h1>")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a b.txt").write_text("text")
    (tmp_path / "files" / "sub").mkdir()
    with LocalServer(tmp_path) as server:
        assert client.get(server.url("/")).text == "<h1>root</h1>"
        moved = client.get(server.url("/docs?x=1"))
        assert moved.status_code == 301 and moved.headers["location"] == "/docs/?x=1"
        assert client.get(server.url("/docs/")).text == "<h1>docs</h1>"
        listing = client.get(server.url("/files/"))
        assert listing.status_code == 200 and hrefs_of(listing.content) == ["a%20b.txt", "sub/"]
        text = client.get(server.url("/files/a%20b.txt"))
        assert text.text == "text" and text.headers["content-type"] == "text/plain; charset=utf-8"
        assert client.get(server.url("/missing.html")).status_code == 404
        assert client.get(server.url("/%2e%2e/%2e%2e/etc/passwd")).status_code == 404
        assert client.post(server.url("/")).status_code == 405
    with pytest.raises(NotADirectoryError):
        LocalServer(tmp_path / "index.html")


def test_serve_many_shares_one_port_and_one_counter(client: httpx.Client) -> None:
    site = generate_site(pages=20, hosts=HOSTS, seed=4)
    with serve_many(site, latency={"127.0.0.2": 0.2}) as servers:
        port = servers.port
        assert servers.hosts == tuple(f"{h}:{port}" for h in HOSTS)
        assert servers.site is not None and servers.site.hosts == servers.hosts
        for host in HOSTS:
            response = client.get(servers.url("/index.html", host))
            assert response.content == servers.site.routes(host)["/index.html"].body
        started = time.monotonic()
        client.get(servers.url("/index.html", "127.0.0.2"))
        assert time.monotonic() - started >= 0.2
        stats = servers.stats()
        assert servers["127.0.0.3"].stats() == stats  # one shared counter
    assert set(stats.hits) == set(servers.hosts)
    assert stats.hits[f"127.0.0.2:{port}"] == {"/index.html": 2}
    slow = [r for r in stats.log if r.host == f"127.0.0.2:{port}"]
    assert all(r.finished - r.started >= 0.2 for r in slow)


def test_a_graph_search_over_the_served_site_matches_reachable_urls(client: httpx.Client) -> None:
    with serve_many(generate_site(pages=25, links_per_page=5, hosts=HOSTS, seed=7)) as servers:
        site = servers.site
        assert site is not None
        start = servers.url("/index.html")
        seen, queue = {start}, [start]
        while queue:
            url = queue.pop()
            for href in hrefs_of(client.get(url).content):
                target = resolve_href(url, href)
                if target and target not in seen and not urlsplit(target).path.startswith("/assets/"):
                    seen.add(target)
                    queue.append(target)
        hits = servers.stats().hits_by_url()
    assert seen == site.reachable_urls(start)
    assert hits == dict.fromkeys(seen, 1)


@pytest.mark.anyio
async def test_usable_from_async_code(served: LocalServer) -> None:
    async with httpx.AsyncClient() as client:
        responses = [await client.get(served.url("/index.html")) for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    assert served.stats().hits[served.authority]["/index.html"] == 3


def test_values_are_frozen(site: Site) -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        site.hosts = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        site.pages["127.0.0.1:8000"]["/x"] = Page(body=b"", content_type="")  # type: ignore[index]
