"""Response: decoding, JSON, selectors, URL joining with <base href>, links, follow/follow_all and the title."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crawler import InvalidURL, Request, Response, ResponseError, Stats
from crawler._stats import current_stats

URL = "http://example.com/dir/page.html"


def response(
    body: bytes | str,
    content_type: str | None = "text/html; charset=utf-8",
    url: str = URL,
    status: int = 200,
    **request: Any,
) -> Response:
    if isinstance(body, str):
        body = body.encode()
    headers = [("Content-Type", content_type)] if content_type is not None else []
    return Response(url=url, status=status, headers=headers, body=body, request=Request(url=url, **request))


def html(body: str, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"


@pytest.fixture
def stats() -> Iterator[Stats]:
    """The crawl stats that follow_all reports malformed links to."""
    value = Stats()
    token = current_stats.set(value)
    yield value
    current_stats.reset(token)


# -- decoding --------------------------------------------------------------------------------------------------


def test_charset_from_the_content_type_header() -> None:
    r = response("<p>café</p>".encode("iso-8859-1"), "text/html; charset=ISO-8859-1")
    assert r.encoding == "iso8859-1"
    assert r.text == "<p>café</p>"


def test_quoted_charset_parameter() -> None:
    r = response("Grüße".encode("cp1252"), 'text/plain; format=flowed; charset="windows-1252"')
    assert r.text == "Grüße"


def test_header_charset_wins_over_meta() -> None:
    body = '<meta charset="utf-8"><p>café</p>'.encode("latin-1")
    r = response(body, "text/html; charset=latin-1")
    assert "café" in r.text


@pytest.mark.parametrize(
    "meta",
    [
        '<meta charset="windows-1251">',
        "<meta charset=windows-1251>",
        '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">',
    ],
)
def test_charset_from_meta(meta: str) -> None:
    r = response(html("<p>Привет</p>", meta).encode("cp1251"), "text/html")
    assert r.encoding == "cp1251"
    assert "Привет" in r.text


def test_fallback_is_utf8_with_replacement() -> None:
    r = response(b"caf\xc3\xa9 \xff", None)
    assert r.encoding == "utf-8"
    assert r.text == "café \ufffd"


def test_unknown_charset_falls_back() -> None:
    r = response("ok é".encode(), "text/html; charset=no-such-charset")
    assert r.encoding == "utf-8"
    assert r.text == "ok é"


def test_basic_properties() -> None:
    r = response("x", "Text/HTML; Charset=UTF-8", status=201, meta={"k": 1})
    assert r.content_type == "text/html"
    assert r.ok
    assert r.meta == {"k": 1}
    assert not response("x", status=404).ok
    assert r.headers["content-type"] == "Text/HTML; Charset=UTF-8"  # case-insensitive names


# -- JSON ------------------------------------------------------------------------------------------------------


def test_json() -> None:
    r = response('{"items": [1, 2], "next": null, "name": "é"}', "application/json")
    assert r.json() == {"items": [1, 2], "next": None, "name": "é"}


def test_json_invalid_names_the_url() -> None:
    r = response("<html>not json</html>", "text/html", url="http://api.example.com/v1/items?page=2", status=502)
    with pytest.raises(ResponseError) as info:
        r.json()
    message = str(info.value)
    assert "http://api.example.com/v1/items?page=2" in message
    assert "502" in message
    assert "line 1" in message  # where parsing stopped


def test_json_empty_body_is_a_response_error() -> None:
    with pytest.raises(ResponseError, match=r"example\.com"):
        response(b"", "application/json").json()


# -- selectors -------------------------------------------------------------------------------------------------


PRODUCTS = html(
    '<ul><li class="p"><a href="/p/1">One</a><span class="price">3</span></li>'
    '<li class="p"><a href="p/2">Two</a><span class="price">4</span></li></ul>'
    '<a class="next" href="?page=2">next</a>'
)


def test_css_and_xpath() -> None:
    r = response(PRODUCTS)
    assert r.css("li.p a::text").getall() == ["One", "Two"]
    assert r.css("li.p a::attr(href)").getall() == ["/p/1", "p/2"]
    assert r.xpath("//span[@class='price']/text()").getall() == ["3", "4"]
    assert r.xpath("//li[a/text()=$name]/span/text()", name="Two").get() == "4"
    assert r.css("h1").get() is None


def test_selectors_on_a_non_utf8_page() -> None:
    r = response(html("<h1>Überschrift</h1>").encode("latin-1"), "text/html; charset=latin-1")
    assert r.css("h1::text").get() == "Überschrift"


# -- URLs and links --------------------------------------------------------------------------------------------


def test_urljoin_without_base() -> None:
    r = response(PRODUCTS)
    assert r.urljoin("p/2") == "http://example.com/dir/p/2"
    assert r.urljoin("/p/1") == "http://example.com/p/1"
    assert r.urljoin("?page=2") == "http://example.com/dir/page.html?page=2"
    assert r.urljoin("https://other.org/x") == "https://other.org/x"


def test_urljoin_uses_base_href() -> None:
    r = response(html('<a href="item">x</a>', '<base href="http://cdn.example.org/root/">'))
    assert r.base_url == "http://cdn.example.org/root/"
    assert r.urljoin("item") == "http://cdn.example.org/root/item"
    assert r.urljoin("/abs") == "http://cdn.example.org/abs"


def test_relative_base_href() -> None:
    r = response(html('<a href="x">x</a>', '<base href="/docs/v2/">'))
    assert r.urljoin("x") == "http://example.com/docs/v2/x"


def test_base_href_ignored_outside_html() -> None:
    r = response('<base href="http://elsewhere.example/">', "application/json")
    assert r.urljoin("x") == "http://example.com/dir/x"


def test_iter_links_resolves_and_skips_non_http() -> None:
    body = html(
        '<a href="/a">a</a><a href="b#frag">b</a><a href="mailto:me@example.com">m</a>'
        '<a href="javascript:void(0)">j</a><a href="JavaScript:alert(1)">J</a><a href="tel:+123">t</a>'
        '<a href="#top">top</a><a>no href</a><a href="  https://other.org/c  ">c</a>'
        '<map><area href="/area" alt=""></map>'
    )
    assert list(response(body).iter_links()) == [
        "http://example.com/a",
        "http://example.com/dir/b#frag",
        "https://other.org/c",
        "http://example.com/area",
    ]


def test_iter_links_resolves_against_base_href() -> None:
    body = html('<a href="one">1</a><a href="/two">2</a>', '<base href="https://mirror.example.net/m/">')
    assert list(response(body).iter_links()) == ["https://mirror.example.net/m/one", "https://mirror.example.net/two"]


def test_iter_links_of_an_empty_body() -> None:
    assert list(response(b"").iter_links()) == []


def test_follow_a_string_goes_one_level_deeper() -> None:
    r = response(PRODUCTS, depth=2)
    request = r.follow("p/2", callback="parse_item", priority=3, meta={"from": "list"})
    assert request.url == "http://example.com/dir/p/2"
    assert request.depth == 3
    assert request.callback == "parse_item"
    assert request.priority == 3
    assert request.meta == {"from": "list"}


def test_follow_a_selector() -> None:
    r = response(PRODUCTS)
    assert r.follow(r.css("a.next")[0]).url == "http://example.com/dir/page.html?page=2"
    assert r.follow(r.css("a.next::attr(href)")[0]).url == "http://example.com/dir/page.html?page=2"
    assert r.follow(r.xpath("//li[2]/a")[0]).url == "http://example.com/dir/p/2"


def test_follow_a_selector_without_href_raises() -> None:
    r = response(PRODUCTS)
    with pytest.raises(InvalidURL):
        r.follow(r.css("span.price")[0])


def test_follow_all_with_css() -> None:
    r = response(PRODUCTS)
    assert [req.url for req in r.follow_all(css="li.p a")] == ["http://example.com/p/1", "http://example.com/dir/p/2"]
    assert [req.url for req in r.follow_all(xpath="//a[@class='next']/@href")] == [
        "http://example.com/dir/page.html?page=2"
    ]


def test_follow_all_defaults_to_every_link() -> None:
    r = response(PRODUCTS, depth=1)
    requests = list(r.follow_all(callback="parse"))
    assert [req.url for req in requests] == [
        "http://example.com/p/1",
        "http://example.com/dir/p/2",
        "http://example.com/dir/page.html?page=2",
    ]
    assert {req.depth for req in requests} == {2}
    assert {req.callback for req in requests} == {"parse"}


def test_follow_all_with_urls() -> None:
    r = response(PRODUCTS)
    assert [req.url for req in r.follow_all(["a", "/b"])] == ["http://example.com/dir/a", "http://example.com/b"]


@pytest.mark.parametrize("href", ["http://[bad", "http://example.com:99999/", "ftp://example.com/file"])
def test_follow_a_malformed_href_raises_invalid_url(href: str) -> None:
    with pytest.raises(InvalidURL) as info:
        response(PRODUCTS).follow(href)
    assert href in info.value.url or info.value.url in href


def test_follow_all_skips_and_counts_malformed_links(stats: Stats) -> None:
    body = html('<a href="/ok">ok</a><a href="http://[bad">bad</a><a href="/ok2">ok2</a>')
    r = response(body)
    assert list(r.iter_links())[1] == "http://[bad"  # yielded as written
    assert [req.url for req in r.follow_all()] == ["http://example.com/ok", "http://example.com/ok2"]
    assert stats.errors["InvalidURL"] == 1


# -- title -----------------------------------------------------------------------------------------------------


def test_title() -> None:
    assert response(html("", "<title>\n  Hello &amp; welcome \n</title>")).title == "Hello & welcome"
    assert response(html("<p>no title</p>")).title == ""
    assert response(b"", "text/html").title == ""


def test_title_in_a_declared_charset() -> None:
    body = html("", "<title>Café Müller</title>").encode("latin-1")
    assert response(body, "text/html; charset=iso-8859-1").title == "Café Müller"


@pytest.mark.parametrize(
    ("content_type", "head"),
    [("text/html; charset=iso-8859-1", ""), ("text/html", '<meta charset="iso-8859-1">')],
)
def test_links_in_a_declared_charset(content_type: str, head: str) -> None:
    """Links are read in the page's encoding: ``/café`` on a Latin-1 page is é (U+00E9), not U+FFFD."""
    body = html('<a href="/café">c</a>', head).encode("latin-1")
    r = response(body, content_type)
    assert list(r.iter_links()) == ["http://example.com/café"]
    assert next(iter(r.follow_all())).url == "http://example.com/caf%C3%A9"
