"""The transport seam: ``async fetch(request) -> Response``, with httpx behind it by default.

Library errors are mapped to crawler's own exception tree here and nowhere else.  Redirects are not followed
by the transport: the engine turns a 3xx into a new request, so that the redirect target goes through the
frontier (dedup, politeness, robots.txt) like any other URL.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import httpx
from multidict import CIMultiDict, CIMultiDictProxy

from crawler._exceptions import (
    BodyTooLarge,
    ConnectError,
    FetchTimeout,
    InvalidURL,
    RemoteProtocolError,
)
from crawler._request import Request
from crawler._response import Response

__all__ = ["HandlerTransport", "HttpxTransport", "Transport", "TransportOptions"]


class Transport(Protocol):
    """What fetches requests.  Implementations raise only :class:`crawler.TransportError` subclasses and
    :class:`crawler.InvalidURL`."""

    async def fetch(self, request: Request) -> Response:
        """Send ``request`` and return the complete response (any status; 3xx are not followed)."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...


@attrs.frozen(kw_only=True)
class TransportOptions:
    """Transport configuration: ``timeout`` (seconds, per request, each of connect/read/write/pool),
    ``max_body_size`` (bytes, after decoding), ``pool_size`` (connections kept per host), ``headers`` sent
    with every request (``User-Agent`` among them), ``verify`` TLS certificates (on by default), ``http2``."""

    timeout: float = 30.0
    max_body_size: int = 10 * 1024 * 1024
    pool_size: int = 2
    headers: dict[str, str] = attrs.field(factory=dict)
    verify: bool = True
    http2: bool = False


class HttpxTransport:
    """Fetches with ``httpx.AsyncClient``: one small client (connection pool) per host, sized to the host's
    limit, so that no pool grows large (httpcore scans its whole pool on every request).  One TLS context is
    shared by all clients.
    """

    def __init__(self, options: TransportOptions | None = None) -> None:
        self.options = options or TransportOptions()
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._ssl: ssl.SSLContext | bool = ssl.create_default_context() if self.options.verify else False

    def _client(self, request: Request) -> httpx.AsyncClient:
        key = request.host
        client = self._clients.get(key)
        if client is None:
            options = self.options
            client = httpx.AsyncClient(
                headers=options.headers,
                timeout=options.timeout,
                verify=self._ssl,
                http2=options.http2,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=options.pool_size, max_keepalive_connections=options.pool_size),
                trust_env=False,
            )
            self._clients[key] = client
        return client

    async def fetch(self, request: Request) -> Response:
        client = self._client(request)
        timeout = request.timeout if request.timeout is not None else self.options.timeout
        started = time.perf_counter()
        try:
            http_request = client.build_request(
                request.method,
                request.url,
                headers=dict(request.headers),
                content=request.body,
                timeout=timeout,
            )
            response = await client.send(http_request, stream=True)
            try:
                body = await self._read(response, request.url)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"{type(exc).__name__} after {timeout:g} s: {request.url}", url=request.url) from None
        except httpx.ConnectError as exc:
            raise ConnectError(
                f"cannot connect to {request.host}: {exc or type(exc).__name__}", url=request.url
            ) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise InvalidURL(request.url, str(exc)) from None
        except httpx.DecodingError as exc:
            raise RemoteProtocolError(f"cannot decode body of {request.url}: {exc}", url=request.url) from None
        except httpx.TransportError as exc:
            raise RemoteProtocolError(
                f"{type(exc).__name__} from {request.host}: {exc or 'connection closed'}", url=request.url
            ) from None
        headers = CIMultiDictProxy(CIMultiDict(response.headers.multi_items()))
        return Response(
            url=request.url,
            status=response.status_code,
            headers=headers,
            body=body,
            request=request,
            elapsed=time.perf_counter() - started,
        )

    async def _read(self, response: httpx.Response, url: str) -> bytes:
        cap = self.options.max_body_size
        declared = response.headers.get("content-length")
        if (
            declared is not None
            and declared.isdigit()
            and int(declared) > cap
            and "content-encoding" not in response.headers
        ):
            raise BodyTooLarge(f"body of {url} is {declared} bytes, over the cap of {cap} bytes", url=url)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():  # decoded: the cap applies after decompression
            size += len(chunk)
            if size > cap:
                raise BodyTooLarge(f"body of {url} exceeds the cap of {cap} bytes", url=url)
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()


Handler = Callable[[Request], Awaitable[Response]]


class HandlerTransport:
    """A transport that calls ``handler(request)`` instead of the network, as ``httpx.MockTransport`` does.

    For unit tests of callbacks and policies; crawl tests use real servers on 127.0.0.1.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def fetch(self, request: Request) -> Response:
        return await self._handler(request)

    async def aclose(self) -> None:
        return None
