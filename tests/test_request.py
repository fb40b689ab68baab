"""Tests for the Request value and its fingerprint, the frontier's dedup key."""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler._exceptions import InvalidURL
from crawler._request import IDEMPOTENT_METHODS, Request, fingerprint
from crawler._url import canonicalize_url, normalize_url


class Spider:
    async def parse(self, response: object) -> None:
        pass

    async def parse_item(self, response: object) -> None:
        pass

    async def on_error(self, failure: object) -> None:
        pass


# --------------------------------------------------------------------------------------------------------------
# URL


def test_url_is_normalized_on_creation() -> None:
    request = Request(url="HTTP://Example.COM:80/a/./b/../c?b=2&a=1#frag")
    assert request.url == "http://example.com/a/c?b=2&a=1"  # the query keeps its order: it is sent as given


@pytest.mark.parametrize("url", ["http://[bad", "ftp://x", "mailto:a@b", "javascript:void(0)", "", "http://"])
def test_malformed_url_raises_invalid_url_where_the_request_is_made(url: str) -> None:
    with pytest.raises(InvalidURL) as info:
        Request(url=url)
    assert info.value.url == url
    with pytest.raises(InvalidURL) as info:
        Request(url=url, params={"page": 2})
    assert info.value.url == url


def test_host_is_the_politeness_key() -> None:
    assert Request(url="https://API.example.com:443/v1").host == "api.example.com"
    assert Request(url="http://example.com:8080/").host == "example.com:8080"


# --------------------------------------------------------------------------------------------------------------
# params


def test_params_are_appended_to_the_query() -> None:
    request = Request(url="https://api.example.com/items?sort=asc", params={"page": 2, "q": "red shoes"})
    assert request.url == "https://api.example.com/items?sort=asc&page=2&q=red+shoes"
    assert request.params is None


def test_params_without_query() -> None:
    assert Request(url="http://example.com/a", params={"x": "1"}).url == "http://example.com/a?x=1"
    assert Request(url="http://example.com", params={"x": "1"}).url == "http://example.com/?x=1"
    assert Request(url="http://example.com/a?", params={"x": "1"}).url == "http://example.com/a?x=1"


def test_params_list_and_tuple_values_repeat_the_name() -> None:
    request = Request(url="http://example.com/?a=0", params={"a": [1, 2], "b": ("x", "y"), "c": "z"})
    assert request.url == "http://example.com/?a=0&a=1&a=2&b=x&b=y&c=z"


def test_params_are_escaped() -> None:
    request = Request(url="http://example.com/", params={"q": "a&b=c", "plus": "1+1", "path": "/x", "é": "ü"})
    assert parse_qsl(urlsplit(request.url).query) == [("q", "a&b=c"), ("plus", "1+1"), ("path", "/x"), ("é", "ü")]


def test_params_drop_the_fragment() -> None:
    assert Request(url="http://example.com/a#top", params={"x": 1}).url == "http://example.com/a?x=1"


@pytest.mark.parametrize("params", [None, {}, {"a": []}])
def test_empty_params_change_nothing(params: dict[str, Any] | None) -> None:
    assert Request(url="http://example.com/a?b=1", params=params).url == "http://example.com/a?b=1"


def test_params_give_the_same_fingerprint_as_the_spelled_out_url() -> None:
    with_params = Request(url="http://example.com/s", params={"q": "x y", "page": [1, 2]})
    spelled = Request(url="http://example.com/s?page=1&page=2&q=x%20y")
    assert with_params.fingerprint == spelled.fingerprint
    assert with_params == spelled


_param_text = st.text(st.characters(codec="utf-8"), max_size=8)


@given(st.dictionaries(_param_text, st.one_of(_param_text, st.lists(_param_text, min_size=1, max_size=3))))
def test_params_reach_the_url_exactly(params: dict[str, str | list[str]]) -> None:
    request = Request(url="http://example.com/p?first=1", params=params)
    expected = [("first", "1")] + [
        (name, value) for name, values in params.items() for value in (values if isinstance(values, list) else [values])
    ]
    assert parse_qsl(urlsplit(request.url).query, keep_blank_values=True) == expected
    assert normalize_url(request.url) == request.url


# --------------------------------------------------------------------------------------------------------------
# json body


def test_json_becomes_a_compact_utf8_body_with_content_type() -> None:
    request = Request(url="http://example.com/api", method="post", json={"name": "café", "ids": [1, 2]})
    assert request.body == '{"name":"café","ids":[1,2]}'.encode()
    assert json.loads(request.body) == {"name": "café", "ids": [1, 2]}
    assert request.headers["Content-Type"] == "application/json"
    assert request.method == "POST"


def test_json_keeps_other_headers_and_an_explicit_content_type() -> None:
    request = Request(url="http://example.com/", json=[1], headers={"Accept": "application/json"})
    assert request.headers == {"Content-Type": "application/json", "Accept": "application/json"}
    custom = Request(url="http://example.com/", json=[1], headers={"content-type": "application/vnd.api+json"})
    assert custom.headers == {"content-type": "application/vnd.api+json"}


def test_json_null_is_a_body() -> None:
    assert Request(url="http://example.com/", json=None).body == b"null"


def test_no_json_no_body_no_header() -> None:
    request = Request(url="http://example.com/")
    assert request.body is None
    assert request.headers == {}


def test_json_requests_fingerprint_by_body() -> None:
    a = Request(url="http://example.com/api", method="POST", json={"page": 1})
    b = Request(url="http://example.com/api", method="POST", json={"page": 2})
    c = Request(url="http://example.com/api", method="POST", body=b'{"page":1}')
    assert a != b
    assert a == c


# --------------------------------------------------------------------------------------------------------------
# method, callbacks


@pytest.mark.parametrize(("given_method", "expected"), [("get", "GET"), ("Post", "POST"), ("DELETE", "DELETE")])
def test_method_is_upper_cased(given_method: str, expected: str) -> None:
    assert Request(url="http://example.com/", method=given_method).method == expected


def test_idempotent() -> None:
    assert Request(url="http://example.com/").idempotent
    assert Request(url="http://example.com/", method="put").idempotent
    assert not Request(url="http://example.com/", method="POST").idempotent
    assert Request(url="http://example.com/", method="POST", retry_non_idempotent=True).idempotent
    assert {"GET", "HEAD", "PUT", "DELETE"} <= IDEMPOTENT_METHODS
    assert "POST" not in IDEMPOTENT_METHODS
    assert "PATCH" not in IDEMPOTENT_METHODS


def test_callback_given_as_bound_method_is_stored_by_name() -> None:
    spider = Spider()
    request = Request(url="http://example.com/", callback=spider.parse_item, errback=spider.on_error)
    assert request.callback == "parse_item"
    assert request.errback == "on_error"
    assert getattr(spider, request.callback) == spider.parse_item


def test_callback_given_as_name_or_none() -> None:
    assert Request(url="http://example.com/", callback="parse").callback == "parse"
    assert Request(url="http://example.com/").callback is None
    assert Request(url="http://example.com/").errback is None


@pytest.mark.parametrize("bad", [lambda response: None, 42, object()])
def test_callback_that_is_no_method_raises_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="callback must be a spider method"):
        Request(url="http://example.com/", callback=bad)


# --------------------------------------------------------------------------------------------------------------
# replace, frozen


def test_replace_returns_a_changed_copy() -> None:
    spider = Spider()
    original = Request(url="http://example.com/a", callback="parse", meta={"k": 1}, priority=3)
    changed = original.replace(url="HTTP://EXAMPLE.com/b#x", callback=spider.parse_item, attempt=2)
    assert changed.url == "http://example.com/b"
    assert changed.callback == "parse_item"
    assert changed.attempt == 2
    assert changed.meta == {"k": 1}
    assert changed.priority == 3
    assert changed.fingerprint != original.fingerprint
    assert original.url == "http://example.com/a"
    assert original.callback == "parse"
    assert original.attempt == 0


def test_replace_keeps_json_body_and_params() -> None:
    original = Request(url="http://example.com/api", method="POST", json={"a": 1}, params={"page": 1})
    retry = original.replace(attempt=1, not_before=1_700_000_000.0)
    assert retry.url == original.url == "http://example.com/api?page=1"
    assert retry.body == original.body == b'{"a":1}'
    assert retry.headers == original.headers
    assert retry == original
    next_page = original.replace(params={"page": 2})
    assert next_page.url == "http://example.com/api?page=1&page=2"
    new_body = original.replace(json={"a": 2})
    assert new_body.body == b'{"a":2}'
    assert new_body.headers == {"Content-Type": "application/json"}


def test_request_is_frozen() -> None:
    request = Request(url="http://example.com/")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        request.url = "http://other.example/"  # type: ignore[misc]


def test_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Request("http://example.com/")  # type: ignore[misc]


def test_repr() -> None:
    assert repr(Request(url="http://example.com/a", method="post")) == "<Request POST http://example.com/a>"


# --------------------------------------------------------------------------------------------------------------
# equality, hash, dont_filter


def test_equality_and_hash_follow_the_fingerprint() -> None:
    a = Request(url="http://Example.com:80/p?b=2&a=1#x", priority=1, meta={"m": 1}, headers={"X": "1"})
    b = Request(url="http://example.com/p?a=1&b=2", callback="parse", depth=3)
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a.url != b.url  # the URL sent keeps its query order; only the dedup key is shared


def test_inequality() -> None:
    base = Request(url="http://example.com/p?a=1")
    assert base != Request(url="http://example.com/p?a=2")
    assert base != Request(url="http://example.com/q?a=1")
    assert base != Request(url="https://example.com/p?a=1")
    assert base != Request(url="http://example.com/p?a=1", method="HEAD")
    assert base != Request(url="http://example.com/p?a=1", body=b"x")
    assert base != "http://example.com/p?a=1"
    assert base != object()


def test_dont_filter_is_a_flag_outside_the_fingerprint() -> None:
    plain = Request(url="http://example.com/")
    forced = Request(url="http://example.com/", dont_filter=True)
    assert plain.dont_filter is False
    assert forced.dont_filter is True
    assert forced.fingerprint == plain.fingerprint
    assert forced.replace(priority=5).dont_filter is True


# --------------------------------------------------------------------------------------------------------------
# fingerprint


def test_fingerprint_shape() -> None:
    key = fingerprint("GET", "http://example.com/")
    assert len(key) == 32
    assert set(key) <= set(string.hexdigits.lower())
    assert Request(url="http://example.com/").fingerprint == key


def test_fingerprint_differs_by_method_and_body() -> None:
    url = "http://example.com/api"
    keys = {
        fingerprint("GET", url),
        fingerprint("HEAD", url),
        fingerprint("POST", url),
        fingerprint("POST", url, b"a"),
        fingerprint("POST", url, b"b"),
        fingerprint("PUT", url, b"a"),
    }
    assert len(keys) == 6


def test_fingerprint_ignores_method_case_and_empty_body() -> None:
    url = "http://example.com/api"
    assert fingerprint("post", url) == fingerprint("POST", url)
    assert fingerprint("POST", url, b"") == fingerprint("POST", url, None)


def test_fingerprint_of_malformed_url_raises_invalid_url() -> None:
    with pytest.raises(InvalidURL):
        fingerprint("GET", "http://[bad")


def test_fingerprint_is_stable() -> None:
    """The key is shared by processes and stored in persistent frontiers: it must not change between releases."""
    assert fingerprint("GET", "http://example.com/") == "310621407eae59ed05b0663f0b7e4c3e"


_hosts = st.sampled_from(["example.com", "EXAMPLE.com", "bücher.de", "127.0.0.1", "[::1]", "[::1]:8080"])
_path_text = st.text(st.characters(codec="utf-8", exclude_characters="?#"), max_size=12)
_query_pairs = st.lists(st.tuples(_param_text, _param_text), max_size=4)


@given(
    _hosts,
    _path_text,
    _query_pairs,
    st.sampled_from(["GET", "get", "POST", "DELETE"]),
    st.one_of(st.none(), st.binary(max_size=16)),
)
def test_request_fingerprint_is_fingerprint_of_its_url(
    host: str, path: str, pairs: list[tuple[str, str]], method: str, body: bytes | None
) -> None:
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    url = f"http://{host}/{quote(path, safe='/%')}?{query}"
    request = Request(url=url, method=method, body=body)
    assert request.fingerprint == fingerprint(method, url, body)
    assert canonicalize_url(request.url) == canonicalize_url(url)
    assert Request(url=request.url, method=request.method, body=body) == request


@given(_query_pairs, st.randoms(use_true_random=False))
def test_query_order_does_not_change_the_fingerprint(pairs: list[tuple[str, str]], random: Any) -> None:
    def url(order: list[tuple[str, str]]) -> str:
        return "http://example.com/s?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in order)

    shuffled = list(pairs)
    random.shuffle(shuffled)
    assert Request(url=url(pairs)) == Request(url=url(shuffled))
