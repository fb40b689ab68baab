"""A configurable fake HTTP API on loopback, for tests and examples: JSON records in pages of ten pagination styles,
a fixed-window rate limit declared in one of the header dialects met in the wild, injected failures, credentials
(API key, Bearer, Basic, OAuth 2 client credentials).  A :class:`~crawler.testing.LocalServer` (``.server``) with
two routes, the data endpoint and ``/oauth/token``; no event loop, one lock.  Times are :func:`time.monotonic`
seconds, like :attr:`~crawler.testing.RequestRecord.started`::

    with ApiServer(records=200, style="stripe", rate_limit=RateLimit(quota=10, window=1, dialect="github")) as api:
        spider = ApiSpider([api.start_url], items=api.items_path, paginate=api.paginate_spec)
        ...                                        # crawl
        assert api.stats().served == dict.fromkeys(api.record_ids, 1)

A data request goes through, in order: the rate limiter (over quota: 429 with ``Retry-After``, not counted in the
quota), the injected 503s, the credentials check (401), the flaky 500s, then the page (200).  Every answer of the
data endpoint carries the rate-limit fields of the dialect; the token endpoint and 404s are not rate limited.
"""

from __future__ import annotations

import base64
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Self, TypeAlias
from urllib.parse import parse_qsl, quote

import attrs

from crawler.testing._server import LocalServer, Reply, RequestInfo

__all__ = [
    "ApiAuth",
    "ApiServer",
    "ApiStatistics",
    "IssuedToken",
    "PaginationStyle",
    "RateLimit",
    "RateLimitDialect",
    "RateWindow",
]

#: How pages are chained (http-api-conventions.md): ``link`` (GitHub REST: a list, ``Link: <...?page=2&per_page=S>;
#: rel="next"``), ``stripe`` (``data``, ``has_more``, ``starting_after=<last id>``), ``slack``
#: (``response_metadata.next_cursor`` -> ``cursor``), ``x`` (``meta.next_token`` -> ``pagination_token``), ``relay``
#: (GraphQL POST: ``data.items.pageInfo{hasNextPage,endCursor}`` -> ``variables.after``), ``jsonapi`` (absolute
#: ``links.next``), ``hal`` (``_links.next.href``), ``odata`` (``@odata.nextLink``, relative to ``@odata.context``),
#: ``offset`` (``offset``/``limit``, ``total``), ``page`` (``page``, ``total_pages``).
PaginationStyle = Literal["link", "stripe", "slack", "x", "relay", "jsonapi", "hal", "odata", "offset", "page"]
#: How the quota is declared (``r`` remaining, ``t`` whole seconds until the window ends, rounded up): ``ietf``
#: (draft-08: ``RateLimit-Policy: "default";q=Q;w=W`` and ``RateLimit: "default";r=R;t=T``), ``draft06``
#: (``RateLimit-Limit``, ``-Remaining``, ``-Reset: T``), ``github`` (``X-RateLimit-Limit``, ``-Remaining``, ``-Used``,
#: ``-Reset: <epoch>``), ``x`` (``x-rate-limit-limit``, ``-remaining``, ``-reset: <epoch>``), ``reddit``
#: (``X-Ratelimit-Used``, ``-Remaining: R.0``, ``-Reset: T``), ``none`` (only the 429's ``Retry-After``).
RateLimitDialect = Literal["ietf", "draft06", "github", "x", "reddit", "none"]

#: style -> (JMESPath to the records, ``--paginate`` spec of :func:`crawler.from_spec`, the parameter that carries
#: the position, the one that asks for a page size); ``relay`` reads its two from the GraphQL ``variables``.
_STYLES: Mapping[str, tuple[str, str, str, str]] = {
    "link": ("@", "link", "page", "per_page"),
    "stripe": ("data", "cursor:stripe", "starting_after", "limit"),
    "slack": ("data", "cursor:slack", "cursor", "limit"),
    "x": ("data", "cursor:x", "pagination_token", "max_results"),
    "relay": ("data.items.nodes", "cursor:relay", "after", "first"),
    "jsonapi": ("data", "cursor:jsonapi", "page[offset]", "page[size]"),
    "hal": ("_embedded.items", "cursor:hal", "page", "size"),
    "odata": ("value", "cursor:odata", "$skiptoken", ""),
    "offset": ("results", "offset:offset,total=total", "offset", "limit"),
    "page": ("data", "page:page,total_pages=total_pages", "page", "per_page"),
}
_CURSORS, _NUMBERED = frozenset({"slack", "x", "relay"}), frozenset({"link", "page", "hal"})
#: The GraphQL document of the ``relay`` style (its ``$after`` variable carries the cursor).
RELAY_QUERY = "query($first: Int, $after: String) { items(first: $first, after: $after) { nodes { id name } } }"
Fields: TypeAlias = Sequence[tuple[str, str]]


@attrs.frozen(kw_only=True)
class RateLimit:
    """A fixed-window limit: ``quota`` requests per ``window`` seconds, declared in ``dialect``.  Windows follow
    each other from the first data request (window k is ``[t0 + k*window, t0 + (k+1)*window)``).  Keep ``window``
    whole seconds for dialects whose fields are whole seconds (all but ``none``)."""

    quota: int = attrs.field(validator=attrs.validators.ge(1))
    window: float = attrs.field(validator=attrs.validators.gt(0))
    dialect: RateLimitDialect = "ietf"


@attrs.frozen(kw_only=True)
class ApiAuth:
    """The credentials the data endpoint requires (401 without them).

    ``kind``: ``api_key`` (header ``name``, default ``X-API-Key``), ``api_key_query`` (query parameter ``name``,
    default ``api_key``), ``bearer`` (``Authorization: Bearer <secret>``), ``basic`` (user ``name``, password
    ``secret``), ``oauth2`` (client id ``name``, client ``secret``; Bearer tokens from ``/oauth/token``, RFC 6749
    §4.4, the client authenticated by HTTP Basic or ``client_id``/``client_secret`` form fields).  An OAuth token
    stops working ``token_ttl`` seconds after it was issued (sent as ``expires_in``, rounded up) or after
    ``token_uses`` authorized requests (None: no limit).
    """

    kind: Literal["api_key", "api_key_query", "bearer", "basic", "oauth2"]
    secret: str = attrs.field(validator=attrs.validators.min_len(1))
    name: str = ""
    token_ttl: float = 3600.0
    token_uses: int | None = None


@attrs.frozen(kw_only=True)
class RateWindow:
    """One rate-limit window: its ``start``, requests ``admitted`` (counted in the quota) and ``rejected`` (429)."""

    start: float
    admitted: int = 0
    rejected: int = 0


@attrs.frozen(kw_only=True)
class IssuedToken:
    """An OAuth access token: when it was ``issued``, how many requests it authorized (``uses``), and when it was
    first refused (``refused``: expired or used up; None if never)."""

    token: str
    issued: float
    uses: int = 0
    refused: float | None = None


@attrs.frozen(kw_only=True)
class ApiStatistics:
    """A snapshot of an :class:`ApiServer`.

    ``served[id]``: times record ``id`` was in a 200 page; ``pages[offset]``: times the page at that 0-based record
    offset was served with 200; ``starts``: arrival times of the data requests (all statuses); ``statuses``: their
    answers; ``windows``: the rate-limit windows that saw requests; ``tokens``: the OAuth tokens issued, in order;
    ``token_requests``: calls of the token endpoint, refused ones included.
    """

    served: Mapping[int, int]
    pages: Mapping[int, int]
    starts: tuple[float, ...]
    statuses: Mapping[int, int]
    windows: tuple[RateWindow, ...]
    tokens: tuple[IssuedToken, ...]
    token_requests: int


def _cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{position}".encode()).decode().rstrip("=")


def _uncursor(token: str) -> int:
    kind, _, number = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition(":")
    if kind != "offset":
        raise ValueError(f"not a cursor: {token!r}")
    return int(number)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _reply(status: int, body: Any, headers: Fields = ()) -> Reply:
    return status, [("Content-Type", "application/json"), *headers], json.dumps(body).encode()


class ApiServer:
    """A fake JSON API serving records ``{"id": i, "name": "record i"}`` for ``i`` in ``1..records``.

    ``style``: :data:`PaginationStyle`; ``page_size``: records per page, unless the request asks for another size
    (the style's ``per_page``, ``limit``, ...); ``path``: the data endpoint; ``rate_limit``: a :class:`RateLimit`
    or None; ``fail_first``: the first K data requests within quota answer 503 with ``Retry-After: retry_after``
    (seconds, rounded up); ``flaky``: the fraction (0..1) of the later ones that answer 500, drawn from
    ``random.Random(seed)``; ``auth``: the :class:`ApiAuth` required, or None; ``next_base``: the
    ``scheme://host:port`` of next links instead of this server's (to chain pages across hosts); ``latency``:
    seconds each data answer is held (the token endpoint answers at once); ``host``, ``port``: as for
    :class:`LocalServer`.  Raises ValueError for a bad value.
    """

    def __init__(
        self,
        records: int = 100,
        *,
        style: PaginationStyle = "link",
        page_size: int = 10,
        path: str = "/v1/items",
        rate_limit: RateLimit | None = None,
        fail_first: int = 0,
        retry_after: float = 1.0,
        flaky: float = 0.0,
        auth: ApiAuth | None = None,
        next_base: str | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        if style not in _STYLES:
            raise ValueError(f"unknown pagination style {style!r}; styles: {', '.join(_STYLES)}")
        if records < 0 or page_size < 1 or not 0.0 <= flaky <= 1.0 or fail_first < 0:
            raise ValueError("need records >= 0, page_size >= 1, fail_first >= 0 and 0 <= flaky <= 1")
        self.records, self.style, self.page_size, self.path = records, style, page_size, path
        self.rate_limit, self.auth, self.next_base = rate_limit, auth, next_base
        self.fail_first, self.retry_after, self.flaky = fail_first, retry_after, flaky
        self.token_path = "/oauth/token"
        routes = {path: self._data, self.token_path: self._token}
        self.server, self.latency = LocalServer(routes, host=host, port=port), latency
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._served, self._pages, self._statuses = Counter[int](), Counter[int](), Counter[int]()
        self._starts, self._windows = list[float](), list[RateWindow]()
        self._tokens: dict[str, IssuedToken] = {}
        self._token_requests = self._admitted = 0

    # -- life cycle and addresses ------------------------------------------------------------------------------
    def start(self) -> Self:
        """Start serving (see :meth:`LocalServer.start`); returns self."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving.  Idempotent."""
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return self.server.base_url

    @property
    def start_url(self) -> str:
        """The data endpoint's URL: the first page (``relay``: POST :meth:`relay_body` to it)."""
        return self.server.url(self.path)

    @property
    def token_url(self) -> str:
        """The OAuth 2 token endpoint's URL."""
        return self.server.url(self.token_path)

    @property
    def items_path(self) -> str:
        """The JMESPath of the records in a page (``--items``)."""
        return _STYLES[self.style][0]

    @property
    def paginate_spec(self) -> str:
        """The ``--paginate`` spec that follows this style."""
        return _STYLES[self.style][1]

    @property
    def record_ids(self) -> range:
        """The ids of the records served, ``1..records``."""
        return range(1, self.records + 1)

    def relay_body(self) -> dict[str, Any]:
        """The JSON body of the first ``relay`` page request: the query with ``variables.first`` = page size."""
        return {"query": RELAY_QUERY, "variables": {"first": self.page_size}}

    # -- statistics --------------------------------------------------------------------------------------------
    def stats(self) -> ApiStatistics:
        """A consistent snapshot of what was served (see :class:`ApiStatistics`)."""
        with self._lock:
            return ApiStatistics(
                served=MappingProxyType(dict(self._served)),
                pages=MappingProxyType(dict(self._pages)),
                starts=tuple(self._starts),
                statuses=MappingProxyType(dict(self._statuses)),
                windows=tuple(self._windows),
                tokens=tuple(self._tokens.values()),
                token_requests=self._token_requests,
            )

    # -- the data endpoint -------------------------------------------------------------------------------------
    def _data(self, request: RequestInfo) -> Reply:
        with self._lock:  # decided on arrival, sent after the latency
            now = time.monotonic()
            self._starts.append(now)
            reply = self._answer(request, now)
            self._statuses[reply[0]] += 1
        time.sleep(self.latency)
        return reply

    def _answer(self, request: RequestInfo, now: float) -> Reply:
        limits = self._admit(now)
        if limits is None:  # over quota
            reset = self._windows[-1].start + self.rate_limit.window - now  # type: ignore[union-attr]
            retry = ("Retry-After", str(max(1, math.ceil(reset))))
            return _reply(429, {"error": "rate limited"}, [retry, *self._limit_fields(0, reset)])
        self._admitted += 1
        if self._admitted <= self.fail_first:
            retry = ("Retry-After", str(math.ceil(self.retry_after)))
            return _reply(503, {"error": "unavailable"}, [retry, *limits])
        if not self._authorized(request, now):
            return _reply(401, {"error": "unauthorized"}, [("WWW-Authenticate", "Bearer"), *limits])
        if self.flaky and self._rng.random() < self.flaky:
            return _reply(500, {"error": "injected failure"}, limits)
        if (self.style == "relay") != (request.method == "POST"):
            return _reply(405, {"error": "relay pages are POSTed, the others are GET"}, limits)
        try:
            position, size = self._locate(request)
        except (ValueError, TypeError, AttributeError):
            return _reply(400, {"error": "bad cursor, offset, page or size"}, limits)
        chunk = [{"id": i + 1, "name": f"record {i + 1}"} for i in range(position, min(position + size, self.records))]
        if chunk:
            self._pages[position] += 1
            self._served.update(range(position + 1, position + len(chunk) + 1))
        body, headers = self._page(position, size, chunk)
        return _reply(200, body, [*headers, *limits])

    def _locate(self, request: RequestInfo) -> tuple[int, int]:
        """The 0-based offset and the size of the page asked for; raises ValueError (or TypeError) if malformed."""
        _, _, position_param, size_param = _STYLES[self.style]
        values: Any = dict(parse_qsl(request.query, keep_blank_values=True))
        if self.style == "relay":
            values = json.loads(request.body or b"{}").get("variables") or {}
        raw, raw_size = values.get(position_param), values.get(size_param)
        size = self.page_size if raw_size in (None, "") else int(raw_size)
        if raw in (None, ""):
            position = 0
        elif self.style in _CURSORS:
            position = _uncursor(str(raw))
        else:
            position = (int(raw) - 1) * size if self.style in _NUMBERED else int(raw)
        if position < 0 or not 1 <= size <= 1000:
            raise ValueError(f"position {position} or size {size} out of range")
        return position, size

    def _page(self, position: int, size: int, chunk: list[dict[str, Any]]) -> tuple[Any, Fields]:
        """The body and extra headers of the page at ``position`` holding ``chunk``."""
        after = position + len(chunk)
        more = bool(chunk) and after < self.records
        base, path, style, number = self.next_base or self.base_url, self.path, self.style, position // size + 1
        if style == "link":
            last = max(1, math.ceil(self.records / size))
            links = [f'<{base}{path}?page={number + 1}&per_page={size}>; rel="next"'] if more else []
            links.append(f'<{base}{path}?page={last}&per_page={size}>; rel="last"')
            return chunk, [("Link", ", ".join(links))]
        if style == "stripe":
            return {"object": "list", "url": path, "has_more": more, "data": chunk}, []
        cursor = _cursor(after) if more else None
        if style == "slack":
            return {"ok": True, "data": chunk, "response_metadata": {"next_cursor": cursor or ""}}, []
        if style == "x":
            meta = {"result_count": len(chunk)} | ({"next_token": cursor} if cursor else {})
            return {"data": chunk, "meta": meta}, []
        if style == "relay":
            info = {"hasNextPage": more, "endCursor": _cursor(after) if chunk else None}
            return {"data": {"items": {"nodes": chunk, "pageInfo": info}}}, []
        if style == "jsonapi":
            following = f"{base}{path}?{quote('page[offset]')}={after}&{quote('page[size]')}={size}"
            return {"data": chunk, "links": {"self": self.base_url + path, "next": following if more else None}}, []
        if style == "hal":
            links_hal: dict[str, Any] = {"self": {"href": path}}
            if more:  # a relative reference, unless the chain goes to another host
                links_hal["next"] = {"href": f"{self.next_base or ''}{path}?page={number + 1}&size={size}"}
            return {"_embedded": {"items": chunk}, "_links": links_hal, "page": {"number": number, "size": size}}, []
        if style == "odata":  # the next link is relative to the context URL (OData JSON Format 4.01 §4.5.1)
            folder, _, leaf = path.rpartition("/")
            body = {"@odata.context": f"{base}{folder}/$metadata#{leaf}", "value": chunk}
            return body | ({"@odata.nextLink": f"{leaf}?$skiptoken={after}"} if more else {}), []
        if style == "offset":
            return {"results": chunk, "total": self.records, "offset": position, "limit": size}, []
        return {"data": chunk, "page": number, "per_page": size, "total_pages": math.ceil(self.records / size)}, []

    # -- the rate limiter --------------------------------------------------------------------------------------
    def _admit(self, now: float) -> Fields | None:
        """Count a data request at ``now`` in its window: its rate-limit fields, or None when over quota."""
        limit, windows = self.rate_limit, self._windows
        if limit is None:
            return []
        if not windows or now >= windows[-1].start + limit.window:
            start = now if not windows else windows[-1].start + (now - windows[-1].start) // limit.window * limit.window
            windows.append(RateWindow(start=start))
        current = windows[-1]
        if current.admitted >= limit.quota:
            windows[-1] = attrs.evolve(current, rejected=current.rejected + 1)
            return None
        windows[-1] = current = attrs.evolve(current, admitted=current.admitted + 1)
        return self._limit_fields(limit.quota - current.admitted, current.start + limit.window - now)

    def _limit_fields(self, remaining: int, reset_in: float) -> Fields:
        """The dialect's fields for ``remaining`` requests left and ``reset_in`` seconds until the window ends."""
        assert self.rate_limit is not None
        quota, window, dialect = self.rate_limit.quota, self.rate_limit.window, self.rate_limit.dialect
        used, t, epoch = quota - remaining, max(0, math.ceil(reset_in)), math.ceil(time.time() + reset_in)
        if dialect == "ietf":
            w = str(int(window)) if float(window).is_integer() else f"{window:.3f}"
            return [("RateLimit-Policy", f'"default";q={quota};w={w}'), ("RateLimit", f'"default";r={remaining};t={t}')]
        named = {
            "draft06": ("RateLimit-", str(quota), str(remaining), str(t), None),
            "github": ("X-RateLimit-", str(quota), str(remaining), str(epoch), str(used)),
            "x": ("x-rate-limit-", str(quota), str(remaining), str(epoch), None),
            "reddit": ("X-Ratelimit-", None, f"{remaining:.1f}", str(t), str(used)),
        }.get(dialect)
        if named is None:
            return []
        prefix, *values = named
        pairs = zip(("Limit", "Remaining", "Reset", "Used"), values, strict=True)
        return [(prefix + (name if prefix[0].isupper() else name.lower()), v) for name, v in pairs if v is not None]

    # -- credentials -------------------------------------------------------------------------------------------
    def _authorized(self, request: RequestInfo, now: float) -> bool:
        auth, headers = self.auth, request.headers
        if auth is None:
            return True
        if auth.kind == "api_key":
            return headers.get((auth.name or "X-API-Key").lower()) == auth.secret
        if auth.kind == "api_key_query":
            return dict(parse_qsl(request.query)).get(auth.name or "api_key") == auth.secret
        if auth.kind in ("bearer", "basic"):
            expected = f"Bearer {auth.secret}" if auth.kind == "bearer" else _basic(auth.name, auth.secret)
            return headers.get("authorization") == expected
        token = headers.get("authorization", "").removeprefix("Bearer ")
        state = self._tokens.get(token)
        if state is None:
            return False
        if now >= state.issued + auth.token_ttl or (auth.token_uses is not None and state.uses >= auth.token_uses):
            self._tokens[token] = attrs.evolve(state, refused=now if state.refused is None else state.refused)
            return False
        self._tokens[token] = attrs.evolve(state, uses=state.uses + 1)
        return True

    def _token(self, request: RequestInfo) -> Reply:
        """``POST /oauth/token`` with ``grant_type=client_credentials`` (RFC 6749 §4.4.2-4.4.3, errors §5.2)."""
        now = time.monotonic()
        with self._lock:
            self._token_requests += 1
            auth = self.auth
            if auth is None or auth.kind != "oauth2":
                return _reply(404, {"error": "no token endpoint"})
            if request.method != "POST":
                return _reply(405, {"error": "invalid_request"}, [("Allow", "POST")])
            form = dict(parse_qsl(request.body.decode("utf-8", "replace")))
            from_form = _basic(form.get("client_id", ""), form.get("client_secret", ""))
            if _basic(auth.name, auth.secret) not in (request.headers.get("authorization"), from_form):
                return _reply(401, {"error": "invalid_client"}, [("WWW-Authenticate", 'Basic realm="token"')])
            if form.get("grant_type") != "client_credentials":
                return _reply(400, {"error": "unsupported_grant_type"})
            token = f"tok{len(self._tokens) + 1}-{self._rng.getrandbits(48):012x}"
            self._tokens[token] = IssuedToken(token=token, issued=now)
            body = {"access_token": token, "token_type": "bearer", "expires_in": math.ceil(auth.token_ttl)}
            return _reply(200, body, [("Cache-Control", "no-store")])
