"""Tests for crawler._pagination: paginators on bodies shaped as the real APIs send them, end conditions, spec parsing,
and a property: following the pages of a simulated server visits every record exactly once and terminates."""

from __future__ import annotations

import base64
import json
import math
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler._pagination import (
    PRESETS,
    JsonCursorPaginator,
    LinkHeaderPaginator,
    NextPage,
    OffsetPaginator,
    PagePaginator,
    Paginator,
    from_spec,
)
from crawler._request import Request
from crawler._response import Response


def respond(
    request: Request,
    body: Any,
    *,
    headers: list[tuple[str, str]] | None = None,
    status: int = 200,
    url: str | None = None,
) -> Response:
    """A response to ``request``: ``body`` is JSON-encoded unless it is bytes."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    fields = [("Content-Type", "application/json; charset=utf-8"), *(headers or [])]
    return Response(url=url or request.url, status=status, headers=fields, body=raw, request=request)


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def follow(paginator: Paginator, response: Response) -> Request:
    request = paginator.next_request(response)
    assert request is not None
    return request


# --- Link header (RFC 8288) ---------------------------------------------------------------------------------------


def test_link_header_github_rest() -> None:
    # The shape GitHub's REST API sends ("Using pagination in the REST API").
    page = Request(
        url="https://api.github.com/repos/octocat/Spoon-Knife/issues?per_page=2&page=2",
        headers={"Accept": "application/vnd.github+json"},
        callback="parse_issues",
        cb_kwargs={"repo": "Spoon-Knife"},
        meta={"owner": "octocat"},
        priority=5,
        depth=3,
        attempt=2,
        not_before=1_700_000_000.0,
        dont_filter=True,
    )
    link = (
        '<https://api.github.com/repositories/1300192/issues?per_page=2&page=1>; rel="prev", '
        '<https://api.github.com/repositories/1300192/issues?per_page=2&page=3>; rel="next", '
        '<https://api.github.com/repositories/1300192/issues?per_page=2&page=515>; rel="last", '
        '<https://api.github.com/repositories/1300192/issues?per_page=2&page=1>; rel="first"'
    )
    response = respond(page, [{"number": 1347, "title": "Found a bug"}], headers=[("Link", link)])
    paginator = PRESETS["link"]
    nxt = follow(paginator, response)
    assert nxt.url == "https://api.github.com/repositories/1300192/issues?per_page=2&page=3"
    assert nxt.method == "GET"
    assert dict(nxt.headers) == {"Accept": "application/vnd.github+json"}
    assert (nxt.callback, dict(nxt.cb_kwargs), dict(nxt.meta)) == ("parse_issues", {"repo": "Spoon-Knife"}, page.meta)
    assert (nxt.priority, nxt.depth) == (5, 3)  # pagination is not depth
    assert (nxt.attempt, nxt.not_before, nxt.dont_filter) == (0, None, False)
    assert paginator.next_cursor(response) == nxt.url


def test_link_header_relative_several_lines_and_two_relations() -> None:
    page = Request(url="https://api.example.com/v1/items?page=2")
    response = respond(
        page,
        [],
        headers=[("Link", '</v1/items?page=1>; rel="prev"'), ("link", '<?page=3>; REL="next last"')],
        url="https://api.example.com/v1/items?page=2",
    )
    assert follow(LinkHeaderPaginator(), response).url == "https://api.example.com/v1/items?page=3"
    assert follow(LinkHeaderPaginator(rel="prev"), response).url == "https://api.example.com/v1/items?page=1"


def test_link_header_resolves_against_the_final_url_after_redirects() -> None:
    page = Request(url="https://old.example.com/items")
    response = respond(page, [], headers=[("Link", '<items?page=2>; rel="next"')], url="https://new.example.com/v2/")
    assert follow(PRESETS["link"], response).url == "https://new.example.com/v2/items?page=2"


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [("Link", '<https://api.example.com/items?page=9>; rel="last"')],
        [("Link", "garbage, <unterminated")],
        [("Link", '<http://[::1>; rel="next"')],
        [("Link", '<mailto:someone@example.com>; rel="next"')],
        [("Link", '<https://api.example.com/items?page=1>; rel="next"')],  # the page itself: a loop
    ],
)
def test_link_header_end(fields: list[tuple[str, str]]) -> None:
    page = Request(url="https://api.example.com/items?page=1")
    response = respond(page, [], headers=fields)
    assert PRESETS["link"].next_request(response) is None
    assert PRESETS["link"].next_cursor(response) is None


def test_error_response_has_no_next_page() -> None:
    page = Request(url="https://api.example.com/items")
    link = [("Link", '<https://api.example.com/items?page=2>; rel="next"')]
    response = respond(page, {"has_more": True, "data": [{"id": "x"}]}, headers=link, status=500)
    assert PRESETS["link"].next_request(response) is None
    assert PRESETS["cursor:stripe"].next_request(response) is None


# --- JSON cursors -------------------------------------------------------------------------------------------------

STRIPE_PAGE = {
    "object": "list",
    "url": "/v1/customers",
    "has_more": True,
    "data": [
        {"id": "cus_NffrFeUfNV2Hib", "object": "customer", "email": "jennyrosen@example.com", "livemode": False},
        {"id": "cus_NffrB9nqkxRsbX", "object": "customer", "email": "jenny.rosen@example.com", "livemode": False},
    ],
}


def test_stripe() -> None:
    page = Request(url="https://api.stripe.com/v1/customers?limit=2&starting_after=cus_Nff0", headers={"X": "y"})
    nxt = follow(PRESETS["cursor:stripe"], respond(page, STRIPE_PAGE))
    assert query(nxt.url) == {"limit": ["2"], "starting_after": ["cus_NffrB9nqkxRsbX"]}  # replaced, not repeated
    assert PRESETS["cursor:stripe"].next_cursor(respond(page, STRIPE_PAGE)) == "cus_NffrB9nqkxRsbX"
    assert PRESETS["cursor:stripe"].next_request(respond(page, {**STRIPE_PAGE, "has_more": False})) is None
    assert PRESETS["cursor:stripe"].next_request(respond(page, {**STRIPE_PAGE, "data": []})) is None


def test_slack() -> None:
    page = Request(url="https://slack.com/api/conversations.list?limit=2&exclude_archived=true")
    body = {
        "ok": True,
        "channels": [{"id": "C012AB3CD", "name": "general", "is_channel": True, "is_archived": False}],
        "response_metadata": {"next_cursor": "dGVhbTpDMDYxRkE1UEI="},
    }
    nxt = follow(PRESETS["cursor:slack"], respond(page, body))
    assert query(nxt.url)["cursor"] == ["dGVhbTpDMDYxRkE1UEI="]
    assert "cursor=dGVhbTpDMDYxRkE1UEI%3D" in nxt.url
    last = {**body, "response_metadata": {"next_cursor": ""}}
    assert PRESETS["cursor:slack"].next_request(respond(page, last)) is None
    assert PRESETS["cursor:slack"].next_request(respond(page, {"ok": True, "channels": []})) is None
    assert PRESETS["cursor:slack"].next_request(respond(page, {"ok": False, "error": "invalid_cursor"})) is None


GRAPHQL_QUERY = """query($owner: String!, $name: String!, $after: String) {
  repository(owner: $owner, name: $name) {
    issues(first: 2, after: $after) {
      nodes { title comments(first: 1) { pageInfo { endCursor hasNextPage } } }
      pageInfo { endCursor hasNextPage }
    }
  }
}"""


def github_graphql_body(has_next: bool) -> dict[str, Any]:
    # Nodes come before the connection's pageInfo and hold nested pageInfo objects: the outer, shallowest one counts.
    return {
        "data": {
            "repository": {
                "issues": {
                    "nodes": [
                        {
                            "title": "Found a bug",
                            "comments": {"pageInfo": {"endCursor": "Y29tbWVudDox", "hasNextPage": True}},
                        }
                    ],
                    "pageInfo": {"endCursor": "Y3Vyc29yOnYyOpHOAAf0zQ==", "hasNextPage": has_next},
                }
            }
        }
    }


@pytest.mark.parametrize("name", ["cursor:relay", "cursor:github-graphql"])
def test_github_graphql_post_body(name: str) -> None:
    variables = {"owner": "octocat", "name": "Hello-World", "after": None}
    page = Request(
        url="https://api.github.com/graphql",
        method="POST",
        headers={"Authorization": "bearer TOKEN"},
        json={"query": GRAPHQL_QUERY, "variables": variables},
        callback="parse_issues",
    )
    paginator = from_spec(name)
    nxt = follow(paginator, respond(page, github_graphql_body(True)))
    assert (nxt.method, nxt.url, nxt.callback) == ("POST", "https://api.github.com/graphql", "parse_issues")
    assert nxt.headers == {"Content-Type": "application/json", "Authorization": "bearer TOKEN"}
    assert nxt.body is not None
    sent = json.loads(nxt.body)
    assert sent == {"query": GRAPHQL_QUERY, "variables": {**variables, "after": "Y3Vyc29yOnYyOpHOAAf0zQ=="}}
    assert paginator.next_cursor(respond(page, github_graphql_body(True))) == "Y3Vyc29yOnYyOpHOAAf0zQ=="
    assert paginator.next_request(respond(page, github_graphql_body(False))) is None
    errors = {"data": None, "errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]}
    assert paginator.next_request(respond(page, errors)) is None


def test_relay_creates_missing_variables_and_takes_a_path() -> None:
    page = Request(url="https://api.example.com/graphql", method="POST", json={"query": "{ search { ... } }"})
    body = {
        "data": {
            "viewer": {"repositories": {"pageInfo": {"endCursor": "outer", "hasNextPage": True}}},
            "search": {"pageInfo": {"endCursor": "abc", "hasNextPage": True}, "edges": []},
        }
    }
    nxt = follow(from_spec("cursor:relay,param=variables.cursor"), respond(page, body))  # the shallowest pageInfo
    assert nxt.body is not None and json.loads(nxt.body)["variables"] == {"cursor": "abc"}
    nxt = follow(from_spec("cursor:relay,path=data.viewer.repositories.pageInfo"), respond(page, body))
    assert nxt.body is not None and json.loads(nxt.body)["variables"] == {"after": "outer"}


def test_x_api_v2() -> None:
    page = Request(url="https://api.x.com/2/users/2244994945/tweets?max_results=5")
    body = {
        "data": [{"id": "1460323737035677698", "edit_history_tweet_ids": ["1460323737035677698"], "text": "Hello"}],
        "meta": {
            "result_count": 1,
            "newest_id": "1460323737035677698",
            "oldest_id": "1460323737035677698",
            "next_token": "7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i",
        },
    }
    for name in ("cursor:x", "cursor:twitter"):
        nxt = follow(PRESETS[name], respond(page, body))
        assert query(nxt.url) == {"max_results": ["5"], "pagination_token": [body["meta"]["next_token"]]}  # type: ignore[index]
        last = {"data": body["data"], "meta": {"result_count": 1, "previous_token": "77qp8"}}
        assert PRESETS[name].next_request(respond(page, last)) is None
        assert PRESETS[name].next_request(respond(page, {"meta": {"result_count": 0}})) is None


def test_jsonapi_string_and_link_object() -> None:
    page = Request(url="http://example.com/articles?page[number]=3&page[size]=1")
    body = {
        "meta": {"totalPages": 13},
        "data": [{"type": "articles", "id": "3", "attributes": {"title": "JSON:API paints my bikeshed!"}}],
        "links": {
            "self": "http://example.com/articles?page[number]=3&page[size]=1",
            "first": "http://example.com/articles?page[number]=1&page[size]=1",
            "prev": "http://example.com/articles?page[number]=2&page[size]=1",
            "next": "http://example.com/articles?page[number]=4&page[size]=1",
            "last": "http://example.com/articles?page[number]=13&page[size]=1",
        },
    }
    paginator = PRESETS["cursor:jsonapi"]
    assert query(follow(paginator, respond(page, body)).url) == {"page[number]": ["4"], "page[size]": ["1"]}
    obj = {**body, "links": {"next": {"href": "/articles?page[cursor]=xyz", "meta": {"count": 1}}}}
    assert follow(paginator, respond(page, obj)).url.startswith("http://example.com/articles?page")
    assert query(follow(paginator, respond(page, obj)).url) == {"page[cursor]": ["xyz"]}
    assert paginator.next_request(respond(page, {**body, "links": {"next": None}})) is None
    assert paginator.next_request(respond(page, {**body, "links": {"self": "x"}})) is None
    assert paginator.next_request(respond(page, {**body, "links": {"next": {"meta": {}}}})) is None


def test_hal_relative_href() -> None:
    # The example of draft-kelly-json-hal §6.
    page = Request(url="https://shop.example.com/orders")
    body = {
        "_links": {
            "self": {"href": "/orders"},
            "next": {"href": "/orders?page=2"},
            "find": {"href": "/orders{?id}", "templated": True},
        },
        "_embedded": {"orders": [{"_links": {"self": {"href": "/orders/123"}}, "total": 30.00, "currency": "USD"}]},
        "currentlyProcessing": 14,
        "shippedToday": 20,
    }
    assert follow(PRESETS["cursor:hal"], respond(page, body)).url == "https://shop.example.com/orders?page=2"
    del body["_links"]["next"]  # type: ignore[attr-defined]
    assert PRESETS["cursor:hal"].next_request(respond(page, body)) is None


def test_odata() -> None:
    page = Request(url="https://services.odata.org/V4/TripPinService/People")
    body = {
        "@odata.context": "https://services.odata.org/V4/TripPinService/$metadata#People",
        "value": [{"UserName": "russellwhyte", "FirstName": "Russell", "LastName": "Whyte"}],
        "@odata.nextLink": "https://services.odata.org/V4/TripPinService/People?%24skiptoken=8",
    }
    paginator = PRESETS["cursor:odata"]
    assert follow(paginator, respond(page, body)).url == body["@odata.nextLink"]
    # A relative nextLink resolves against the context URL (OData JSON Format 4.01, "Relative URLs").
    deep = Request(url="https://services.odata.org/V4/TripPinService/People('russellwhyte')/Friends")
    relative = {**body, "@odata.nextLink": "People?$skiptoken=8"}
    assert follow(paginator, respond(deep, relative)).url.startswith(
        "https://services.odata.org/V4/TripPinService/People?"
    )
    v401 = {"@context": "https://host/service/$metadata#People", "value": [], "@nextLink": "People?$skiptoken=2"}
    assert follow(paginator, respond(deep, v401)).url.startswith("https://host/service/People?")
    del body["@odata.nextLink"]
    assert paginator.next_request(respond(page, body)) is None


def test_generic_cursor_and_next_url() -> None:
    page = Request(url="https://api.example.com/v1/events?cursor=old&limit=10")
    body = {"results": [{"id": 1}], "meta": {"next": "c2", "more": True}, "next_url": "/v1/events?cursor=c2&limit=10"}
    nxt = follow(from_spec("cursor:meta.next->cursor"), respond(page, body))
    assert query(nxt.url) == {"cursor": ["c2"], "limit": ["10"]}
    assert (
        follow(from_spec("next:next_url"), respond(page, body)).url
        == "https://api.example.com/v1/events?cursor=c2&limit=10"
    )
    with_flag = from_spec("cursor:meta.next->cursor,has_more=meta.more")
    assert with_flag.next_request(respond(page, body)) is not None
    assert with_flag.next_request(respond(page, {**body, "meta": {"next": "c2", "more": False}})) is None
    assert with_flag.next_request(respond(page, {**body, "meta": {"next": "c2"}})) is None  # absent flag: the end
    assert from_spec("next:next_url").next_request(respond(page, {**body, "next_url": None})) is None


def test_following_a_url_from_a_post_page_is_a_get() -> None:
    page = Request(url="https://api.example.com/v1/search", method="POST", json={"q": "crawler"}, headers={"A": "b"})
    nxt = follow(from_spec("next:next_url"), respond(page, {"results": [], "next_url": "/v1/search?page=2"}))
    assert (nxt.method, nxt.url, nxt.body, dict(nxt.headers)) == ("GET", f"{page.url}?page=2", None, {"A": "b"})


def test_numeric_cursor_and_flag_forms() -> None:
    page = Request(url="https://api.example.com/items", method="POST", json={"cursor": 0, "q": "x"})
    paginator = JsonCursorPaginator(cursor="next", param="cursor", has_more="more")
    nxt = follow(paginator, respond(page, {"items": [1], "next": 50, "more": "true"}))
    assert nxt.body is not None and json.loads(nxt.body) == {"cursor": 50, "q": "x"}  # a number stays a number
    assert paginator.next_cursor(respond(page, {"next": 50, "more": 1})) == "50"
    flags: list[Any] = [False, 0, "false", None, [], {}]
    for flag in flags:
        assert paginator.next_request(respond(page, {"next": 50, "more": flag})) is None
    cursors: list[Any] = [None, "", True, [], {"a": 1}]
    for cursor in cursors:
        assert paginator.next_request(respond(page, {"next": cursor, "more": True})) is None


def test_same_cursor_again_is_not_a_next_page() -> None:
    page = Request(url="https://slack.com/api/users.list?cursor=abc")
    body = {"ok": True, "members": [], "response_metadata": {"next_cursor": "abc"}}
    assert PRESETS["cursor:slack"].next_request(respond(page, body)) is None


@pytest.mark.parametrize("paginator", [*PRESETS.values(), from_spec("offset:offset"), from_spec("page:page")])
@pytest.mark.parametrize(
    "body", [b"", b"<!doctype html><title>Oops</title>", b"{not json", b"\xff\xfe", b"null", b"42"]
)
def test_bodies_that_are_not_json_objects_end_quietly(paginator: Paginator, body: bytes) -> None:
    page = Request(url="https://api.example.com/items", method="POST", json={"variables": {}})
    response = Response(url=page.url, status=200, headers=[("Content-Type", "text/html")], body=body, request=page)
    assert paginator.next_request(response) is None
    assert paginator.next_cursor(response) is None


def test_deeply_nested_json_ends_quietly() -> None:
    page = Request(url="https://api.example.com/items")
    response = Response(url=page.url, status=200, body=b"[" * 100_000 + b"]" * 100_000, request=page)
    assert PRESETS["cursor:relay"].next_request(response) is None


KEYS = ["data", "items", "links", "next", "href", "pageInfo", "endCursor", "hasNextPage", "has_more", "id", "meta"]
KEYS += ["next_token", "response_metadata", "next_cursor", "_links", "@odata.nextLink", "@odata.context", "total"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    body=JSON,
    link=st.text(alphabet='<>;,="/ ?&:.#[]\\abnextrl0123', max_size=40),
    status=st.sampled_from([200, 204, 301, 404, 429, 500]),
    query_text=st.sampled_from(["", "?offset=x", "?page=-1", "?offset=3&limit=0", "?cursor=a&cursor=b"]),
)
def test_any_page_gives_a_request_or_none(body: Any, link: str, status: int, query_text: str) -> None:
    page = Request(url=f"https://api.example.com/items{query_text}")
    response = respond(page, body, headers=[("Link", link)], status=status)
    for paginator in [*PRESETS.values(), from_spec("offset:offset,limit=limit,total=total"), from_spec("page:page")]:
        following = paginator.next_request(response)
        assert following is None or isinstance(following, Request)
        assert (following is None) == (paginator.next_cursor(response) is None)


# --- offset and page numbers --------------------------------------------------------------------------------------


def test_offset_with_total() -> None:
    paginator = from_spec("offset:offset,limit=limit,total=meta.total_count,items=products")
    page = Request(url="https://api.example.com/v1/products?limit=2&offset=4&sort=id")
    body = {"products": [{"id": 5}, {"id": 6}], "meta": {"total_count": 7}}
    nxt = follow(paginator, respond(page, body))
    assert query(nxt.url) == {"limit": ["2"], "offset": ["6"], "sort": ["id"]}
    assert paginator.next_cursor(respond(page, body)) == "6"
    last = Request(url="https://api.example.com/v1/products?limit=2&offset=6&sort=id")
    assert paginator.next_request(respond(last, {"products": [{"id": 7}], "meta": {"total_count": 7}})) is None
    # With a total, a short page is not the end (the API may cap the limit).
    capped = Request(url="https://api.example.com/v1/products?limit=1000&offset=0")
    full = {"products": [{"id": i} for i in range(100)], "meta": {"total_count": 250}}
    nxt = follow(paginator, respond(capped, full))
    assert query(nxt.url)["offset"] == ["100"]


def test_offset_short_and_empty_pages() -> None:
    page = Request(url="https://api.example.com/v1/things?offset=20&limit=10")
    paginator = OffsetPaginator(limit_param="limit")
    assert paginator.next_request(respond(page, [{"id": i} for i in range(9)])) is None  # short page
    assert follow(paginator, respond(page, [{"id": i} for i in range(10)])).url.endswith("limit=10&offset=30")
    assert paginator.next_request(respond(page, {"results": []})) is None  # empty page
    assert paginator.next_request(respond(page, {"count": 3})) is None  # no records at all
    first = Request(url="https://api.example.com/v1/things")
    sized = from_spec("offset:offset,limit=limit,size=10")
    assert query(follow(sized, respond(first, {"data": [{"id": i} for i in range(10)]})).url) == {
        "offset": ["10"],
        "limit": ["10"],
    }
    unknown = OffsetPaginator()  # no page size known: only an empty page ends
    assert query(follow(unknown, respond(first, {"data": [1, 2, 3]})).url) == {"offset": ["3"]}
    bad = Request(url="https://api.example.com/v1/things?offset=abc")
    assert unknown.next_request(respond(bad, {"data": [1]})) is None


def test_offset_in_a_json_body_elasticsearch() -> None:
    search = {"query": {"match": {"title": "crawler"}}, "from": 0, "size": 2}
    page = Request(url="https://es.example.com/articles/_search", method="POST", json=search)
    body = {
        "took": 5,
        "timed_out": False,
        "hits": {
            "total": {"value": 5, "relation": "eq"},
            "max_score": 1.3,
            "hits": [{"_index": "articles", "_id": "1", "_score": 1.3}, {"_index": "articles", "_id": "2"}],
        },
    }
    paginator = from_spec("offset:from,limit=size,items=hits.hits,total=hits.total.value")
    nxt = follow(paginator, respond(page, body))
    assert nxt.method == "POST" and nxt.body is not None
    assert json.loads(nxt.body) == {**search, "from": 2}
    last = nxt.replace(json={**search, "from": 4})
    assert paginator.next_request(respond(last, {"hits": {"total": {"value": 5}, "hits": [{"_id": "5"}]}})) is None


def test_page_numbers() -> None:
    # The shape of reqres.in-style APIs: page, per_page, total, total_pages.
    paginator = from_spec("page:page,total_pages=total_pages")
    first = Request(url="https://reqres.in/api/users")
    body = {"page": 1, "per_page": 6, "total": 12, "total_pages": 2, "data": [{"id": i} for i in range(1, 7)]}
    nxt = follow(paginator, respond(first, body))
    assert query(nxt.url) == {"page": ["2"]}
    assert paginator.next_cursor(respond(first, body)) == "2"
    assert paginator.next_request(respond(nxt, {**body, "page": 2})) is None
    assert paginator.next_request(respond(first, {**body, "data": []})) is None
    zero_based = PagePaginator(start=0, total_pages="pages")
    second = Request(url="https://api.example.com/list?page=1")
    assert follow(zero_based, respond(first, {"items": [1], "pages": 3})).url.endswith("page=1")
    assert follow(zero_based, respond(second, {"items": [1], "pages": 3})).url.endswith("page=2")
    third = Request(url="https://api.example.com/list?page=2")
    assert zero_based.next_request(respond(third, {"items": [1], "pages": 3})) is None
    short = PagePaginator(size=10)
    assert short.next_request(respond(first, {"results": [1, 2]})) is None
    assert PagePaginator().next_request(respond(first, {"results": [1, 2]})) is not None


def test_default_items() -> None:
    page = Request(url="https://api.example.com/list")
    paginator = PagePaginator()
    pages: list[Any] = [[1], {"data": [1]}, {"items": [1]}, {"results": [1]}, {"records": [1]}, {"entries": [1]}]
    for body in pages:
        assert paginator.next_request(respond(page, body)) is not None, body
    empty: list[Any] = [[], {"value": [1]}, {"data": {"a": 1}}, {"data": [], "items": [1]}, "text", 3]
    for body in empty:
        assert paginator.next_request(respond(page, body)) is None, body
    assert PagePaginator(items="payload.rows").next_request(respond(page, {"payload": {"rows": [1]}})) is not None


# --- specs and construction ---------------------------------------------------------------------------------------


def test_presets_are_paginators() -> None:
    assert set(PRESETS) == {
        "link",
        "cursor:stripe",
        "cursor:slack",
        "cursor:relay",
        "cursor:github-graphql",
        "cursor:x",
        "cursor:twitter",
        "cursor:jsonapi",
        "cursor:hal",
        "cursor:odata",
    }
    for name, paginator in PRESETS.items():
        assert isinstance(paginator, Paginator)
        assert from_spec(name) is paginator
        assert from_spec(f"  {name.upper()} ") is paginator
    with pytest.raises(TypeError):
        PRESETS["mine"] = LinkHeaderPaginator()  # type: ignore[index]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("link:prev", LinkHeaderPaginator(rel="prev")),
        ("cursor:meta.next->cursor", JsonCursorPaginator(cursor="meta.next", param="cursor")),
        (
            "cursor:data[-1].id->starting_after,has_more=has_more",
            JsonCursorPaginator(cursor="data[-1].id", param="starting_after", has_more="has_more"),
        ),
        ('cursor:"@odata.nextLink"->token', JsonCursorPaginator(cursor='"@odata.nextLink"', param="token")),
        ("cursor:not_null(a, b)->c", JsonCursorPaginator(cursor="not_null(a, b)", param="c")),
        ("cursor:[a, b==`1`] | [0]->c", JsonCursorPaginator(cursor="[a, b==`1`] | [0]", param="c")),
        ("next:next_url", JsonCursorPaginator(cursor="next_url", next_url=True)),
        ("next:links.next,base=meta.base", JsonCursorPaginator(cursor="links.next", next_url=True, base="meta.base")),
        ("offset:offset", OffsetPaginator()),
        (
            "offset:skip,limit=take,size=50,total=meta.total,items=rows,start=1",
            OffsetPaginator(param="skip", limit_param="take", size=50, total="meta.total", items="rows", start=1),
        ),
        (" offset: from , limit = size ", OffsetPaginator(param="from", limit_param="size")),
        ("page:page", PagePaginator()),
        (
            "page:p,start=0,total_pages=meta.pages,items=hits,size=25",
            PagePaginator(param="p", start=0, total_pages="meta.pages", items="hits", size=25),
        ),
        (
            "cursor:relay,path=data.search.pageInfo",
            JsonCursorPaginator(
                cursor="data.search.pageInfo | endCursor",
                has_more="data.search.pageInfo | hasNextPage",
                param="variables.after",
            ),
        ),
        (
            "cursor:github-graphql,param=variables.cursor",
            JsonCursorPaginator(
                cursor="endCursor", has_more="hasNextPage", find_key="pageInfo", param="variables.cursor"
            ),
        ),
    ],
)
def test_from_spec(spec: str, expected: Paginator) -> None:
    assert from_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("", "neither a preset nor KIND:ARGUMENT"),
        ("stripe", "neither a preset nor KIND:ARGUMENT"),
        ("scroll:x", "unknown kind 'scroll'"),
        ("cursor:nope", "'nope' is not PATH->PARAM"),
        ("cursor:stripe,param=x", "preset cursor:stripe takes no options"),
        ("cursor:a->", "param"),
        ("cursor:a[->b", "cursor 'a[' is not a JMESPath expression"),
        ("next:", "next: needs an argument"),
        ("offset:", "offset: needs an argument"),
        ("offset:o,size=x", "'x' is not an integer"),
        ("offset:o,size=0", "size"),
        ("offset:o,bogus=1", "unknown option 'bogus' (allowed here: limit size total items start)"),
        ("offset:o,size=1,size=2", "given twice"),
        ("offset:o,total=", "not NAME=VALUE"),
        ("page:p,total_pages=a[", "total_pages 'a[' is not a JMESPath expression"),
        ("link:next,rel=x", "unknown option 'rel' (allowed here: none)"),
    ],
)
def test_from_spec_errors(spec: str, fault: str) -> None:
    with pytest.raises(ValueError) as info:
        from_spec(spec)
    message = str(info.value)
    assert message.startswith(f"invalid pagination spec {spec!r}: ")
    assert fault in message
    assert "presets: link, cursor:stripe, cursor:slack, cursor:relay" in message
    assert "offset:PARAM[,limit=...]" in message and "cursor:PATH->PARAM" in message
    assert "\n" not in message


def test_construction_errors() -> None:
    with pytest.raises(ValueError, match="exactly one of param"):
        JsonCursorPaginator(cursor="next", param="cursor", next_url=True)
    with pytest.raises(ValueError, match="exactly one of param"):
        JsonCursorPaginator(cursor="next")
    with pytest.raises(ValueError, match="has_more"):
        JsonCursorPaginator(cursor="next", param="c", has_more="a..b")
    with pytest.raises(ValueError):
        OffsetPaginator(size=0)
    with pytest.raises(ValueError):
        PagePaginator(param="")
    with pytest.raises(ValueError):
        LinkHeaderPaginator(rel="")
    with pytest.raises(TypeError):
        JsonCursorPaginator("next", "cursor")  # type: ignore[call-arg]  # keyword-only


def test_next_page_gives_request_and_cursor_together() -> None:
    page = Request(url="https://slack.com/api/users.list")
    body = {"ok": True, "members": [], "response_metadata": {"next_cursor": "dXNlcjpVMEc5V0ZYTlo="}}
    result = JsonCursorPaginator(cursor="response_metadata.next_cursor", param="cursor").next_page(respond(page, body))
    assert isinstance(result, NextPage)
    assert result.cursor == "dXNlcjpVMEc5V0ZYTlo="
    assert result.request == PRESETS["cursor:slack"].next_request(respond(page, body))


# --- the property: every record exactly once, and the end ---------------------------------------------------------

API = "https://api.example.com/v1/records"
STYLES = {
    "link": "link",
    "stripe": "cursor:stripe",
    "slack": "cursor:slack",
    "relay": "cursor:relay",
    "x": "cursor:x",
    "jsonapi": "cursor:jsonapi",
    "hal": "cursor:hal",
    "odata": "cursor:odata",
    "keyset": "next:next_url",
    "offset": "offset:offset,limit=limit",
    "offset-total": "offset:offset,limit=limit,total=total",
    "offset-blind": "offset:offset",
    "page": "page:page",
    "page-total": "page:page,total_pages=meta.pages",
}


def _token(position: int) -> str:
    return base64.b64encode(f"position:{position}".encode()).decode()


def _position(token: str) -> int:
    return int(base64.b64decode(token).decode().partition(":")[2])


def serve(style: str, records: list[str], size: int, request: Request) -> tuple[Response, list[str]]:
    """A fake API over ``records`` with pages of ``size``, in the given style: the response and the records on it."""
    q = dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True))
    headers: list[tuple[str, str]] = []
    if style == "stripe":
        start = records.index(q["starting_after"]) + 1 if "starting_after" in q else 0
    elif style == "relay":
        after = json.loads(request.body or b"{}")["variables"].get("after")
        start = 0 if after is None else _position(after) + 1
    elif style in ("slack", "keyset", "jsonapi", "hal", "odata"):
        start = _position(q["cursor"]) if "cursor" in q else 0
    elif style == "x":
        start = int(q.get("pagination_token", "t0")[1:])
    elif style.startswith("offset"):
        start = int(q.get("offset", "0"))
    else:  # link, page
        start = (int(q.get("page", "1")) - 1) * size
    chunk = records[start : start + size]
    end = start + len(chunk)
    more = end < len(records)
    rows = [{"id": record} for record in chunk]
    url = f"{API}?cursor={_token(end)}"
    body: Any
    if style in ("link", "page", "page-total"):
        body = rows if style == "link" else {"data": rows, "meta": {"pages": math.ceil(len(records) / size)}}
        if style == "link" and more:
            headers.append(("Link", f'</v1/records?page={start // size + 2}>; rel="next"'))
    elif style == "stripe":
        body = {"object": "list", "url": "/v1/records", "has_more": more, "data": rows}
    elif style == "slack":
        body = {"ok": True, "members": rows, "response_metadata": {"next_cursor": _token(end) if more else ""}}
    elif style == "relay":
        cursor = _token(end - 1) if chunk else None
        connection = {"nodes": rows, "pageInfo": {"endCursor": cursor, "hasNextPage": more}}
        body = {"data": {"viewer": {"records": connection}}}
    elif style == "x":
        body = {"data": rows, "meta": {"result_count": len(rows), **({"next_token": f"t{end}"} if more else {})}}
    elif style == "jsonapi":
        nxt: Any = (url if end % 2 else {"href": url.removeprefix("https://api.example.com")}) if more else None
        body = {"data": rows, "links": {"self": request.url, "next": nxt}}
    elif style == "hal":
        links = {"self": {"href": request.url}, **({"next": {"href": url.replace(API, "records")}} if more else {})}
        body = {"_links": links, "_embedded": {"records": rows}}
    elif style == "odata":
        body = {"@odata.context": "https://api.example.com/v1/$metadata#records", "value": rows}
        body |= {"@odata.nextLink": url} if more else {}
    elif style == "keyset":
        body = {"results": rows, "next_url": url if more else None}
    else:  # offset
        body = {"items": rows, "total": len(records)}
    return respond(request, body, headers=headers), chunk


def first_request(style: str, size: int) -> Request:
    if style == "relay":
        variables = {"first": size, "after": None}
        return Request(
            url="https://api.example.com/graphql", method="POST", json={"query": "q", "variables": variables}
        )
    if style.startswith("offset") and style != "offset-blind":
        return Request(url=API, params={"limit": size})
    return Request(url=API, callback="parse", meta={"style": style})


@settings(max_examples=300, deadline=None)
@given(
    style=st.sampled_from(sorted(STYLES)),
    records=st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=40),
    size=st.integers(min_value=1, max_value=7),
)
def test_following_pages_visits_every_record_once(style: str, records: list[str], size: int) -> None:
    paginator = from_spec(STYLES[style])
    request = first_request(style, size)
    seen: list[str] = []
    tokens: set[str] = set()
    for _ in range(len(records) + 3):  # at most one page per record, and an empty last page
        response, served = serve(style, records, size, request)
        seen.extend(served)
        following, cursor = paginator.next_request(response), paginator.next_cursor(response)
        assert (following is None) == (cursor is None)
        if following is None or cursor is None:
            break
        assert cursor not in tokens  # the engine's loop guard would not stop a healthy chain
        tokens.add(cursor)
        assert (following.depth, following.callback, following.meta) == (request.depth, request.callback, request.meta)
        request = following
    else:
        pytest.fail(f"{style}: pagination did not end")
    assert seen == records
