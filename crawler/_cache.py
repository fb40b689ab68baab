"""The HTTP cache: RFC 9111 caching and conditional revalidation around any :class:`~crawler.Transport`.

``crawler crawl ... --cache DIR`` (setting ``crawl.cache``) wraps the network transport in a
:class:`CacheTransport` that keeps its entries in ``DIR/http-cache.db`` (SQLite: they survive restarts, and
several processes may share the directory):

- a stored response that is still fresh (``Cache-Control: max-age``, ``Expires``, or for lack of both the
  heuristic of RFC 9111 §4.2.2: a tenth of the time since ``Last-Modified``, at most a week) is returned with no
  request at all;
- a stale one is revalidated: the request goes out with ``If-None-Match`` (its ``ETag``) and
  ``If-Modified-Since`` (its ``Last-Modified``), and a ``304 Not Modified`` refreshes the stored headers and
  returns the stored response (its status, 200, and its body) to the spider;
- anything else goes to the network, and the response is stored when RFC 9111 §3 allows it (never with
  ``no-store``).

The policy and the storage are hishel's (https://hishel.com): its sans-I/O RFC 9111 state machine
(:class:`hishel.IdleClient` and the states it leads to) and its SQLite storage (:class:`hishel.AsyncSqliteStorage`,
whose calls run on anyio worker threads, one at a time per connection: it works on asyncio and trio, and with any
number of concurrent workers).  hishel's own integrations wrap an httpx or requests transport; this one wraps
crawler's transport seam, so one cache serves every network transport (httpx, aiohttp), and what is written here
is glue: converting requests and responses, the loop that drives the state machine, the statistics, and these
crawler rules on top of hishel's policy:

- Credentials (RFC 9111 §3.5).  The cache is private (the crawler is its only user), but a cache directory
  outlives the crawl and its credentials.  So a request that carries credentials (``Authorization``, ``Cookie``,
  ``Proxy-Authorization``, a header named like an API key or a token or named in ``secret_headers``, a query
  parameter named like one or in ``secret_params``, a password in the URL) is answered from the cache, and its
  response stored, only when the response explicitly allows a shared cache to: ``public``, ``s-maxage`` or
  ``must-revalidate``.  Secrets are never written to disk: the
  stored request and the cache key hold a SHA-256 digest of each secret value, enough to tell two credentials
  apart (``Vary: Authorization``).  Cookies that an HTTP client adds from its own cookie jar are not seen here.
- A request with ``Cache-Control: no-store`` is never stored (RFC 9111 §5.2.1.5).
- Bodies are stored decoded, as the network transports deliver them: the stored response has no
  ``Content-Encoding`` and its ``Content-Length`` is the decoded size.
- A response without ``Date`` gets one when it arrives (RFC 9110 §6.6.1), so that its age can be computed.
- A full response to a revalidation replaces every stored response it was checking (hishel keeps the last one).
- A storage that cannot be used (not a cache database, closed) switches the cache off for the rest of the crawl,
  with one warning: requests go to the network.

Statistics, counted in the running crawl's :class:`crawler.Stats` (``counts`` of the snapshot):
``cache_hits`` (answered from the cache with no request: the requests saved), ``cache_revalidated`` (answered
by a 304), ``cache_misses`` (a full response from the network), ``cache_stored`` and ``cache_bytes_saved``
(decoded body bytes that did not cross the network: those of hits and revalidations).

The engine feeds its per-host politeness with :func:`network_exchange`: the response that crossed the network,
so a revalidated response's 304 (status, headers, latency) and nothing for a hit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path
from typing import Any

import structlog
from hishel import (
    AnyState,
    AsyncBaseStorage,
    AsyncSqliteStorage,
    CacheMiss,
    CacheOptions,
    Entry,
    FromCache,
    Headers,
    IdleClient,
    InvalidateEntries,
    NeedRevalidation,
    NeedToBeUpdated,
    StoreAndUse,
)
from hishel import Request as CacheRequest
from hishel import Response as CacheResponse

from crawler._exceptions import CrawlerError
from crawler._log import _SECRET_KEYS, _SECRET_QUERY, _USERINFO
from crawler._request import Request
from crawler._response import _EXCHANGE, Response, network_exchange
from crawler._stats import current_stats
from crawler._transport import Transport

__all__ = ["CACHE_FILE", "CacheTransport", "network_exchange"]

#: The SQLite file of the cache inside the cache directory.
CACHE_FILE = "http-cache.db"

_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_SHAREABLE = frozenset({"public", "s-maxage", "must-revalidate"})  # RFC 9111 §3.5
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


class CacheTransport:
    """An RFC 9111 HTTP cache in front of ``transport`` (see the module documentation), stored in
    ``directory/http-cache.db`` (:attr:`storage`, a hishel storage).  ``secret_headers`` and
    ``secret_params`` name further request headers and query parameters that carry credentials
    (``auth.header``, ``auth.query_param``).

    Raises :class:`crawler.CrawlerError` when ``directory`` cannot be created or its cache file is not a
    database.  ``fetch`` raises what the wrapped transport raises (:class:`crawler.TransportError` subclasses,
    :class:`crawler.InvalidURL`); storage failures never fail a request.
    """

    def __init__(
        self,
        transport: Transport,
        directory: str | os.PathLike[str],
        *,
        secret_headers: Iterable[str] = (),
        secret_params: Iterable[str] = (),
    ) -> None:
        self.transport = transport
        self._secrets = _Secrets(secret_headers, secret_params)
        self.directory = Path(directory)
        database = self.directory / CACHE_FILE
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if database.exists():
                with contextlib.closing(sqlite3.connect(database)) as connection:
                    connection.execute("PRAGMA schema_version")  # fails on a file that is not a database
        except OSError as exc:
            raise CrawlerError(f"cannot use {directory} as the HTTP cache directory: {exc.strerror}") from None
        except sqlite3.Error as exc:
            raise CrawlerError(f"{database} is not an HTTP cache ({exc}): delete it or use another directory") from None
        self.storage: AsyncBaseStorage = AsyncSqliteStorage(database_path=database)
        self._options = CacheOptions(shared=False, supported_methods=["GET", "HEAD"], allow_stale=False)
        self._disabled = False

    async def fetch(self, request: Request) -> Response:
        """Answer ``request`` from the cache, by revalidating a stored response, or from the network."""
        if self._disabled:
            return await self.transport.fetch(request)
        secrets = self._secrets
        stored_request = CacheRequest(
            method=request.method,
            url=secrets.mask_url(request.url),
            headers=Headers(_grouped(request.headers.items(), secrets.mask_header)),
        )
        credentialed = stored_request.url != request.url or any(map(secrets.is_secret, request.headers))
        key = hashlib.sha256(f"RFC {stored_request.url}".encode()).hexdigest()  # all methods: see InvalidateEntries
        state: AnyState = IdleClient(options=self._options)
        exchange: Response | None = None
        revalidating: list[Entry] = []
        while True:
            if isinstance(state, IdleClient):
                entries = await self._entries(key)
                if credentialed:
                    entries = [e for e in entries if _shareable(e.response.headers)]
                state = state.next(stored_request, entries)
            elif isinstance(state, CacheMiss | NeedRevalidation):
                revalidating = state.revalidating_entries if isinstance(state, NeedRevalidation) else []
                exchange = await self.transport.fetch(_with_changes(request, stored_request, state.request))
                state = state.next(_to_cache_response(exchange))
            elif isinstance(state, NeedToBeUpdated):
                for entry in state.updating_entries:
                    await self._call(self.storage.update_headers(entry.id, entry.response.headers))
                state = state.next()
            elif isinstance(state, InvalidateEntries):
                for entry_id in state.entry_ids:
                    await self._call(self.storage.remove_entry(entry_id))
                state = state.next()
            elif isinstance(state, FromCache):
                cached = await self._from_cache(request, state.entry, exchange)
                if cached is not None:
                    return cached
                return await self.transport.fetch(request)  # the stored body could not be read: the cache is off
            else:  # StoreAndUse or CouldNotBeStored: the network's full response
                assert exchange is not None
                if isinstance(state, StoreAndUse) and _may_store(request, exchange, credentialed):
                    await self._store(stored_request, state.response, exchange.body, key)
                for entry in revalidating:  # none of them is current any more (RFC 9111 §4.3.3)
                    await self._call(self.storage.remove_entry(entry.id))
                _count("cache_misses")
                return exchange

    async def aclose(self) -> None:
        """Close the wrapped transport and the storage."""
        try:
            await self.transport.aclose()
        finally:
            await self.storage.close()

    # -- storage, where a failure must not fail the request --------------------------------------------------------

    async def _entries(self, key: str) -> list[Entry]:
        try:
            return await self.storage.get_entries(key)
        except RuntimeError as exc:  # hishel: a closed storage, or a database that is not a cache
            self._disable(exc)
            return []

    async def _call(self, operation: Coroutine[Any, Any, None]) -> None:
        if self._disabled:
            operation.close()
            return
        try:
            await operation
        except RuntimeError as exc:
            self._disable(exc)

    async def _store(self, request: CacheRequest, response: CacheResponse, body: bytes, key: str) -> None:
        if self._disabled:
            return
        try:
            entry = await self.storage.create_entry(request, replace(response, stream=_chunks([body])), key)
            stream = entry.response.stream
            assert isinstance(stream, AsyncGenerator)
            async with contextlib.aclosing(stream):
                async for _ in stream:  # the storage saves the body as it is read
                    pass
        except RuntimeError as exc:
            self._disable(exc)
        else:
            _count("cache_stored")

    async def _from_cache(self, request: Request, entry: Entry, exchange: Response | None) -> Response | None:
        stream = entry.response.stream
        assert isinstance(stream, AsyncGenerator)
        try:
            async with contextlib.aclosing(stream):
                body = b"".join([chunk async for chunk in stream])
        except RuntimeError as exc:  # deleted while read, or the storage was closed
            self._disable(exc)
            return None
        response = Response(
            url=request.url,
            status=entry.response.status_code,
            headers=[
                (name, value) for name in entry.response.headers for value in _values(entry.response.headers, name)
            ],
            body=body,
            request=request,
            elapsed=exchange.elapsed if exchange is not None else 0.0,
        )
        vars(response)[_EXCHANGE] = exchange
        _count("cache_hits" if exchange is None else "cache_revalidated")
        _count("cache_bytes_saved", len(body))
        return response

    def _disable(self, exc: Exception) -> None:
        if not self._disabled:
            self._disabled = True
            structlog.get_logger("crawler").warning(
                "HTTP cache switched off for this crawl", directory=str(self.directory), error=str(exc)
            )


# -- conversions ------------------------------------------------------------------------------------------------------


def _count(name: str, amount: int = 1) -> None:
    stats = current_stats.get()
    if stats is not None:
        stats.inc(name, amount)


async def _chunks(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _values(headers: Headers, name: str) -> list[str]:
    return headers.get_list(name) or []


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


class _Secrets:
    """Which parts of a request carry credentials, and their values replaced by digests for storage."""

    def __init__(self, headers: Iterable[str], params: Iterable[str]) -> None:
        self.headers = _CREDENTIAL_HEADERS | {name.lower() for name in headers}
        names = "|".join(re.escape(name) for name in params)
        self.params = re.compile(rf"([?&;](?:{names})=)[^&#]*") if names else None

    def is_secret(self, header: str) -> bool:
        return header.lower() in self.headers or _SECRET_KEYS.search(header) is not None

    def mask_header(self, name: str, value: str) -> str:
        return _digest(value) if self.is_secret(name) else value

    def mask_url(self, url: str) -> str:
        """``url`` with each secret (a query parameter named like a key or a token, a password) as its digest."""

        def masked(match: re.Match[str]) -> str:
            return match.group(1) + _digest(match.group(0)[len(match.group(1)) :])

        if self.params is not None:
            url = self.params.sub(masked, url)
        url = _SECRET_QUERY.sub(masked, url)
        return _USERINFO.sub(lambda m: m.group(1) + _digest(m.group(0)[len(m.group(1)) : -1]) + "@", url)


def _directives(cache_control: str | None) -> set[str]:
    """The directive names of a ``Cache-Control`` value (RFC 9111 §5.2), lower case."""
    if not cache_control:
        return set()
    return {part.split("=", 1)[0].strip().lower() for part in _QUOTED.sub('""', cache_control).split(",")}


def _shareable(headers: Headers) -> bool:
    """Whether a response may answer a request with credentials (RFC 9111 §3.5)."""
    return not _SHAREABLE.isdisjoint(_directives(headers.get("cache-control")))


def _may_store(request: Request, response: Response, credentialed: bool) -> bool:
    request_directives = _directives(", ".join(v for k, v in request.headers.items() if k.lower() == "cache-control"))
    if "no-store" in request_directives:
        return False
    return not credentialed or not _SHAREABLE.isdisjoint(_directives(response.headers.get("cache-control")))


def _grouped(
    pairs: Iterable[tuple[str, str]], convert: Callable[[str, str], str] | None = None
) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name.lower(), []).append(convert(name, value) if convert else value)
    return grouped


def _to_cache_response(response: Response) -> CacheResponse:
    """The network's response as hishel sees it: its body stored decoded, a ``Date`` added if missing."""
    grouped = _grouped(response.headers.items())
    grouped.pop("transfer-encoding", None)
    if response.status != 304 and grouped.pop("content-encoding", None) is not None:
        grouped["content-length"] = [str(len(response.body))]
    if "date" not in grouped:
        grouped["date"] = [formatdate(time.time(), usegmt=True)]
    return CacheResponse(status_code=response.status, headers=Headers(grouped))


def _with_changes(request: Request, stored: CacheRequest, wanted: CacheRequest) -> Request:
    """``request`` with the headers hishel added or changed to ``wanted`` (the validators of a revalidation)."""
    changes = {
        name: wanted.headers[name] for name in wanted.headers if stored.headers.get(name) != wanted.headers[name]
    }
    if not changes:
        return request
    kept = {name: value for name, value in request.headers.items() if name.lower() not in changes}
    return request.replace(headers={**kept, **changes})
