"""Paginators: from the response to a page request, the request for the next page, or ``None`` at the end.  Pure.

The next request is the page request (``response.request``) with its cursor, offset or URL changed: method, headers,
body, callback, ``cb_kwargs``, meta, priority and depth (pagination is not depth) kept, ``attempt`` and ``not_before``
reset, ``dont_filter=False`` (the frontier's dedup applies); never one with the page request's fingerprint.  Following
a URL (Link, ``next:``, JSON:API, HAL, OData) is a GET without a body.  :meth:`Paginator.next_cursor` is the next
page's token (cursor, URL, offset or page number, as a string): the engine keeps the tokens of one pagination chain
and ends the chain when one comes back.  A non-2xx response, a body that is not JSON, a missing or ill-typed cursor,
a malformed ``Link`` field: no next page, never an exception.  A bad configuration raises :class:`ValueError`.

Paths are JMESPath (https://jmespath.org/specification.html), evaluated by the ``jmespath`` library: ``data[-1].id``,
``"@odata.nextLink"`` (keys with ``@`` or ``.`` are quoted).  Command-line specs (:func:`from_spec`), ``N`` an integer,
options ``,NAME=VALUE`` in any order (a comma before ``NAME=`` ends a path)::

    link | link:REL                                    the RFC 8288 Link header, rel="next" or REL
    cursor:stripe | cursor:slack | cursor:x | cursor:twitter | cursor:jsonapi | cursor:hal | cursor:odata
    cursor:relay[,path=PATH][,param=VAR]                also cursor:github-graphql
    cursor:PATH->PARAM[,has_more=PATH]                  e.g. cursor:meta.next->cursor
    next:PATH[,has_more=PATH][,base=PATH]               GET the URL found at PATH, e.g. next:next_url
    offset:PARAM[,limit=LIMITPARAM][,size=N][,total=PATH][,items=PATH][,start=N]
    page:PARAM[,start=N][,total_pages=PATH][,items=PATH][,size=N]

``PARAM`` is a query parameter or, when the page request's body is a JSON object, a dotted path into that body, such
as ``variables.after`` for GraphQL."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, quote_plus, unquote_plus, urljoin, urlsplit, urlunsplit

import attrs
import jmespath

from crawler._exceptions import InvalidURL, ResponseError
from crawler._link_header import find_link, parse_link_header
from crawler._request import Request
from crawler._response import Response

__all__ = [
    "PRESETS",
    "JsonCursorPaginator",
    "LinkHeaderPaginator",
    "NextPage",
    "OffsetPaginator",
    "PagePaginator",
    "Paginator",
    "from_spec",
]

#: The default ``items`` path: the body if it is a list, else the first list among ``data``, ``items``, ``results``,
#: ``records``, ``entries``; a page without one is empty.
_ITEMS = "[@, data, items, results, records, entries][?type(@) == 'array'] | [0]"


@runtime_checkable
class Paginator(Protocol):
    """What the engine needs from a paginator; pure, and safe to share between crawls."""

    def next_request(self, response: Response) -> Request | None:
        """The request for the page after ``response`` (whose ``request`` is the page request), or ``None``."""
        ...

    def next_cursor(self, response: Response) -> str | None:
        """The next page's token, ``None`` exactly when :meth:`next_request` is; seen twice in a chain: a loop."""
        ...


@attrs.frozen(kw_only=True)
class NextPage:
    """The next page: its ``request`` and its ``cursor`` token (see :meth:`Paginator.next_cursor`)."""

    request: Request
    cursor: str


class _Base:
    """``next_request`` and ``next_cursor`` from ``next_page``, which reads the body once and gives both."""

    __slots__ = ()

    def next_page(self, response: Response) -> NextPage | None:
        raise NotImplementedError

    def next_request(self, response: Response) -> Request | None:
        return page.request if (page := self.next_page(response)) else None

    def next_cursor(self, response: Response) -> str | None:
        return page.cursor if (page := self.next_page(response)) else None


@lru_cache(maxsize=256)
def _expr(path: str) -> Any:
    return jmespath.compile(path)


def _path(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    try:
        _ = value is None or _expr(value)
    except (ValueError, TypeError) as exc:  # jmespath's errors derive from ValueError
        reason = " ".join(str(exc).split())
        raise ValueError(f"{attribute.name} {value!r} is not a JMESPath expression: {reason}") from None


_text: Any = attrs.validators.min_len(1)
_name = attrs.validators.optional(_text)
_size = attrs.validators.optional(attrs.validators.ge(1))


@attrs.frozen(kw_only=True)
class LinkHeaderPaginator(_Base):
    """Follow the ``Link`` header's ``rel`` link (RFC 8288 §3; GitHub REST, GitLab and many others).

    Relative targets resolve against ``response.url``; several field lines and ``rel="next last"`` work; malformed
    links are skipped.  The cursor token is the next URL."""

    rel: str = attrs.field(default="next", validator=_text)

    def next_page(self, response: Response) -> NextPage | None:
        links = parse_link_header(response.headers.getall("link", []), base_url=response.url) if response.ok else ()
        link = find_link(links, self.rel)
        return None if link is None else _follow(response.request, link.url)


@attrs.frozen(kw_only=True)
class JsonCursorPaginator(_Base):
    """Read a cursor from the JSON body at the JMESPath ``cursor`` and send it as ``param``, or GET it as a URL.

    - ``param``: the query parameter that carries the cursor, or, when the page request's body is a JSON object, a
      dotted path into it (``variables.after``).  It is replaced, not repeated; a number keeps its type in a body.
    - ``next_url=True`` (instead of ``param``): the cursor is a URL to GET, resolved against ``response.url`` or,
      with ``base`` (a JMESPath to a URL, itself resolved against ``response.url``), against that.
    - ``has_more``: a JMESPath to a flag; there is a next page only when it is ``true``, a non-zero number or
      ``"true"`` (absent means the end).
    - ``find_key``: the paths apply to the shallowest object stored under this key anywhere in the body
      (breadth-first, in document order), e.g. ``"pageInfo"`` for a Relay connection nested at any depth.

    The end: the cursor is absent, ``null``, ``""``, or not a string or number.  The token: the cursor or the URL.
    """

    cursor: str = attrs.field(validator=_path)
    param: str | None = attrs.field(default=None, validator=_name)
    has_more: str | None = attrs.field(default=None, validator=_path)
    next_url: bool = False
    base: str | None = attrs.field(default=None, validator=_path)
    find_key: str | None = attrs.field(default=None, validator=_name)

    def __attrs_post_init__(self) -> None:
        if self.next_url == (self.param is not None):
            raise ValueError("give exactly one of param (send the cursor as a parameter) and next_url=True")

    def next_page(self, response: Response) -> NextPage | None:
        data = _load(response)
        scope = _find_key(data, self.find_key) if self.find_key is not None else data
        if scope is None:
            return None
        if self.has_more is not None and not _is_true(_search(self.has_more, scope)):
            return None
        value = _search(self.cursor, scope)
        token = _token(value)
        if token is None:
            return None
        if self.param is not None:
            request = _with_params(response.request, {self.param: value})
            return None if request is None else NextPage(request=request, cursor=token)
        context = _search(self.base, data) if self.base is not None else None
        try:
            base = urljoin(response.url, context.strip()) if isinstance(context, str) else response.url
            return _follow(response.request, urljoin(base, token.strip()))
        except ValueError:  # urljoin on a malformed URL ("http://[bad")
            return None


@attrs.frozen(kw_only=True)
class OffsetPaginator(_Base):
    """Offset/limit paging: ``param`` += the number of records on the page (the limit, on all but the last page).

    The offset is read from the page request (absent: ``start``); the page size is ``size``, else the page request's
    ``limit_param`` (with both, the next request also sets ``limit_param`` to ``size``); the records are the list at
    ``items`` (default :data:`_ITEMS`).  The end: an empty page; the next offset reaching ``start`` + ``total`` (a
    JMESPath to a count) if there is one, else a page shorter than a known page size.  Give ``total`` if the API caps
    the limit.
    """

    param: str = attrs.field(default="offset", validator=_text)
    limit_param: str | None = attrs.field(default=None, validator=_name)
    size: int | None = attrs.field(default=None, validator=_size)
    total: str | None = attrs.field(default=None, validator=_path)
    items: str = attrs.field(default=_ITEMS, validator=_path)
    start: int = 0

    def next_page(self, response: Response) -> NextPage | None:
        limit = self.size or _as_int(_read(response.request, self.limit_param, 0)) or 0
        extra = {self.limit_param: self.size} if self.size and self.limit_param else {}
        return _numbered(self, response, self.total, limit, extra)


@attrs.frozen(kw_only=True)
class PagePaginator(_Base):
    """Page-number paging: ``param`` += 1, from ``start`` when the page request has no ``param``.

    The end: an empty page (the records are the list at ``items``, default :data:`_ITEMS`); the page after the last
    of ``total_pages`` (a JMESPath to a count) if there is one, else a page shorter than ``size`` if that is given.
    """

    param: str = attrs.field(default="page", validator=_text)
    start: int = 1
    total_pages: str | None = attrs.field(default=None, validator=_path)
    items: str = attrs.field(default=_ITEMS, validator=_path)
    size: int | None = attrs.field(default=None, validator=_size)

    def next_page(self, response: Response) -> NextPage | None:
        return _numbered(self, response, self.total_pages, self.size or 0, {})


def _numbered(
    p: OffsetPaginator | PagePaginator, response: Response, total: str | None, size: int, extra: dict[str, Any]
) -> NextPage | None:
    """The position after this page, unless the page is empty, the position reaches ``start`` + the ``total`` found,
    or, with no total, the page is shorter than ``size``."""
    data = _load(response)
    records = _search(p.items, data)
    position = _as_int(_read(response.request, p.param, p.start))
    if not isinstance(records, list) or not records or position is None:
        return None
    following = position + (len(records) if isinstance(p, OffsetPaginator) else 1)
    count = _as_int(_search(total, data)) if total is not None else None
    if (following >= p.start + count) if count is not None else (len(records) < size):
        return None
    request = _with_params(response.request, {p.param: following, **extra})
    return None if request is None else NextPage(request=request, cursor=str(following))


def _load(response: Response) -> Any:
    """The JSON body of a 2xx response, else ``None`` (which no path, and no page, can be read from)."""
    try:
        return response.json() if response.ok else None
    except (ResponseError, RecursionError):
        return None


def _search(path: str, data: Any) -> Any:
    try:
        return _expr(path).search(data)
    except (ValueError, TypeError):  # a function applied to the wrong type (JMESPathTypeError is a ValueError)
        return None


def _find_key(data: Any, key: str) -> Any:
    """The shallowest object stored under ``key`` (breadth-first, in document order), or ``None``."""
    queue: deque[Any] = deque([data])
    while queue:
        node = queue.popleft()
        if isinstance(node, dict):
            if isinstance(node.get(key), dict):
                return node[key]
            queue.extend(node.values())
        elif isinstance(node, list):
            queue.extend(node)
    return None


def _is_true(value: Any) -> bool:
    return bool(value) if isinstance(value, bool | int | float) else str(value).strip().lower() == "true"


def _token(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    return value if isinstance(value, str) and value else None


def _as_int(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _derive(page: Request, **changes: Any) -> Request | None:
    try:
        request = page.replace(attempt=0, not_before=None, dont_filter=False, **changes)
        return None if request.fingerprint == page.fingerprint else request
    except InvalidURL:
        return None


def _follow(page: Request, url: str) -> NextPage | None:
    """GET ``url`` with the page request's headers (less ``Content-Type`` if the page had a body)."""
    headers = {k: v for k, v in page.headers.items() if page.body is None or k.lower() != "content-type"}
    request = _derive(page, url=url, method="GET", body=None, headers=headers)
    return None if request is None else NextPage(request=request, cursor=request.url)


def _json_object(body: bytes | None) -> dict[str, Any] | None:
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _read(page: Request, name: str | None, default: int) -> Any:
    """The value of ``name`` in the page request (a body path if its body is a JSON object, else a query parameter),
    or ``default``."""
    value: Any = _json_object(page.body)
    if name is None:
        return default
    if value is None:  # a query parameter
        value = next((v for k, v in reversed(parse_qsl(urlsplit(page.url).query)) if k == name), None)
    else:  # a dotted path into the JSON body
        for key in name.split("."):
            value = value.get(key) if isinstance(value, dict) else None
    return default if value is None else value


def _with_params(page: Request, values: Mapping[str, Any]) -> Request | None:
    body = _json_object(page.body)
    if body is None:
        url = page.url
        for name, value in values.items():
            url = _set_query_param(url, name, value if isinstance(value, str) else json.dumps(value))
        return _derive(page, url=url)
    for path, value in values.items():
        *parents, leaf = path.split(".")
        node = body
        for key in parents:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                return None
        node[leaf] = value
    return _derive(page, json=body)


def _set_query_param(url: str, name: str, value: str) -> str:
    """Drop every ``name=`` from the query and append ``name=value``; the other parameters are kept byte for byte."""
    parts = urlsplit(url)
    kept = [part for part in parts.query.split("&") if part and unquote_plus(part.partition("=")[0]) != name]
    return urlunsplit(parts._replace(query="&".join([*kept, f"{quote_plus(name, safe='[]')}={quote_plus(value)}"])))


_RELAY = JsonCursorPaginator(cursor="endCursor", has_more="hasNextPage", find_key="pageInfo", param="variables.after")
_X = JsonCursorPaginator(cursor="meta.next_token", param="pagination_token")

#: The named paginators, by spec (read-only), and their sources:
#: ``link``: RFC 8288 §3, ``Link: <...>; rel="next"`` (as GitHub REST "Using pagination in the REST API" sends it).
#: ``cursor:stripe``: Stripe API "Pagination": while ``has_more``, ``starting_after`` = the last ``data`` item's ``id``.
#: ``cursor:slack``: Slack "Pagination": ``response_metadata.next_cursor`` -> ``cursor``; ``""`` is the end.
#: ``cursor:relay``, ``cursor:github-graphql``: GitHub GraphQL "Using pagination" and the Relay "GraphQL Cursor
#: Connections Specification": in the shallowest ``pageInfo``, while ``hasNextPage``, ``endCursor`` -> the body's
#: ``variables.after`` (POST the query with an ``$after`` variable).
#: ``cursor:x``, ``cursor:twitter``: X API v2 "Pagination": ``meta.next_token`` -> ``pagination_token``, absent at the
#: end (an endpoint that takes ``next_token``: ``cursor:meta.next_token->next_token``).
#: ``cursor:jsonapi``: JSON:API 1.1 "Pagination": GET ``links.next``, a URL or a link object's ``href``; null = end.
#: ``cursor:hal``: JSON Hypertext Application Language (draft-kelly-json-hal): GET ``_links.next.href``.
#: ``cursor:odata``: OData 4.0 Part 1 §11.2.5.7 "Server-Driven Paging" (4.01 alike): GET ``@odata.nextLink``
#: (``@nextLink`` in 4.01), relative to ``@odata.context`` (OData JSON Format 4.01 "Relative URLs").
PRESETS: Mapping[str, Paginator] = MappingProxyType(
    {
        "link": LinkHeaderPaginator(),
        "cursor:stripe": JsonCursorPaginator(cursor="data[-1].id", param="starting_after", has_more="has_more"),
        "cursor:slack": JsonCursorPaginator(cursor="response_metadata.next_cursor", param="cursor"),
        "cursor:relay": _RELAY,
        "cursor:github-graphql": _RELAY,
        "cursor:x": _X,
        "cursor:twitter": _X,
        "cursor:jsonapi": JsonCursorPaginator(cursor="links.next.href || links.next", next_url=True),
        "cursor:hal": JsonCursorPaginator(cursor="_links.next.href || _links.next[0].href", next_url=True),
        "cursor:odata": JsonCursorPaginator(
            cursor='"@odata.nextLink" || "@nextLink"', base='"@odata.context" || "@context"', next_url=True
        ),
    }
)


# spec prefix -> (how to build, the field the argument goes to, the argument's name, the options); options name fields
_KINDS: dict[str, tuple[Callable[..., Paginator], str, str, str]] = {
    "link": (LinkHeaderPaginator, "rel", "REL", ""),
    "cursor": (JsonCursorPaginator, "cursor", "PATH->PARAM", "has_more"),
    "cursor:relay": (partial(attrs.evolve, _RELAY), "", "", "path param"),
    "next": (partial(JsonCursorPaginator, next_url=True), "cursor", "PATH", "has_more base"),
    "offset": (OffsetPaginator, "param", "PARAM", "limit size total items start"),
    "page": (PagePaginator, "param", "PARAM", "start total_pages items size"),
}
_FIELD_OF = {"limit": "limit_param", "path": "where"}
_OPTION = re.compile(r",(?=\s*[A-Za-z_]+\s*=(?!=))")  # a comma before NAME=, which JMESPath never has
_FORMS = "; ".join(
    f"{kind}{':' * bool(arg)}{arg}" + "".join(f"[,{name}=...]" for name in names.split())
    for kind, (_, _, arg, names) in _KINDS.items()
)


def from_spec(spec: str) -> Paginator:
    """The paginator a command-line ``spec`` names: a key of :data:`PRESETS` (case-insensitive) or a form of the
    module docstring's grammar.  Raises :class:`ValueError` naming the spec and the fault, listing presets and forms.
    """
    try:
        return _parse(spec.strip())
    except ValueError as exc:
        presets = ", ".join(PRESETS)
        raise ValueError(f"invalid pagination spec {spec!r}: {exc}; presets: {presets}; forms: {_FORMS}") from None


def _parse(spec: str) -> Paginator:
    if (preset := PRESETS.get(spec.lower())) is not None:
        return preset
    kind, colon, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}" if colon else "neither a preset nor KIND:ARGUMENT")
    head, *pairs = (part.strip() for part in _OPTION.split(rest))
    kwargs: dict[str, Any] = {}
    if kind == "cursor":
        head, arrow, param = (part.strip() for part in head.rpartition("->"))
        if arrow:
            kwargs["param"] = param
        elif param.lower() in ("relay", "github-graphql"):
            kind = "cursor:relay"
        else:
            known = f"cursor:{param.lower()}" in PRESETS
            raise ValueError(f"preset cursor:{param} takes no options" if known else f"{param!r} is not PATH->PARAM")
    build, field, _, names = _KINDS[kind]
    if field and not head:
        raise ValueError(f"{kind}: needs an argument before the options")
    for pair in pairs:
        name, equals, value = (part.strip() for part in pair.partition("="))
        key = _FIELD_OF.get(name.lower(), name.lower())
        if name.lower() not in names.split():
            raise ValueError(f"unknown option {name!r} (allowed here: {names or 'none'})")
        if not equals or not value or key in kwargs:
            raise ValueError(f"option {pair!r} is not NAME=VALUE, or is given twice")
        try:
            kwargs[key] = int(value) if key in ("size", "start") else value
        except ValueError:
            raise ValueError(f"option {pair!r}: {value!r} is not an integer") from None
    if kwargs.get("where"):
        where = kwargs.pop("where")
        kwargs |= {"cursor": f"{where} | endCursor", "has_more": f"{where} | hasNextPage", "find_key": None}
    return build(**({field: head} if field else {}), **kwargs)
