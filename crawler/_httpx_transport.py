"""The httpx transport: httpx's transports (httpcore underneath) behind crawler's transport seam; the default
on trio, where aiohttp does not run.  See :mod:`crawler._transport` for the seam and its rules."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable

import httpx
from multidict import CIMultiDict, CIMultiDictProxy

from crawler._decoding import ContentDecoder, ContentDecodingError
from crawler._exceptions import (
    BodyTooLarge,
    ConnectError,
    FetchTimeout,
    InvalidURL,
    RemoteProtocolError,
)
from crawler._request import Request
from crawler._response import Response
from crawler._transport import TransportOptions

__all__ = ["HttpxTransport"]


#: Connections per httpcore pool at most: httpcore scans every connection of a pool on each request
#: (encode/httpx#3215), so a host allowed more connections gets several pools (:class:`_ShardedPool`).
SHARD_SIZE = 8


def _shard_sizes(total: int) -> list[int]:
    count = -(-total // SHARD_SIZE)
    return [total // count + (1 if i < total % count else 0) for i in range(count)]


class _ReleasingStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class _ShardedPool(httpx.AsyncBaseTransport):
    """One host's connections split over several small httpcore pools; each request goes to the pool with the
    fewest requests in flight, so that no pool is scanned at length and the host's cookies stay in one client."""

    def __init__(self, shards: list[httpx.AsyncHTTPTransport]) -> None:
        self._shards = shards
        self._busy = [0] * len(shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        busy = self._busy
        index = busy.index(min(busy))
        busy[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            busy[index] -= 1
            raise
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)

        def release() -> None:
            busy[index] -= 1

        response.stream = _ReleasingStream(stream, release)
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


#: Headers httpx's client sends unless told otherwise (this transport drives httpx's transports directly).
_DEFAULT_HEADERS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate, br, zstd", "Connection": "keep-alive"}


class _Host:
    """One host's connection pools and cookie jar."""

    __slots__ = ("cookies", "pool")

    def __init__(self, pool: httpx.AsyncBaseTransport) -> None:
        self.pool = pool
        self.cookies = httpx.Cookies()


class HttpxTransport:
    """Fetches with httpx's transports (httpcore underneath), one set of small connection pools per host, sized to
    the host's limit: no pool grows large (httpcore scans its whole pool on every request).  One TLS context is
    shared by all pools.

    The transports are driven without ``httpx.AsyncClient``: a crawler needs none of the client's layers (base
    URLs, auth flows, redirects, event hooks) but the default headers and the cookies, which are kept here, one
    jar per host (RFC 6265 through httpx's ``Cookies``).
    """

    def __init__(self, options: TransportOptions | None = None) -> None:
        self.options = options or TransportOptions()
        self._hosts: dict[str, _Host] = {}
        self._ssl: ssl.SSLContext | bool = ssl.create_default_context() if self.options.verify else False
        self._headers = {**_DEFAULT_HEADERS, **self.options.headers}
        self._timeouts: dict[float, dict[str, float]] = {}

    def _host(self, request: Request) -> _Host:
        key = request.host
        host = self._hosts.get(key)
        if host is None:
            options = self.options
            shards = [
                httpx.AsyncHTTPTransport(
                    verify=self._ssl,
                    http2=options.http2,
                    limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                    trust_env=False,
                )
                for size in _shard_sizes(options.pool_size)
            ]
            host = self._hosts[key] = _Host(shards[0] if len(shards) == 1 else _ShardedPool(shards))
        return host

    def _timeout(self, seconds: float) -> dict[str, float]:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
        return timeout

    async def fetch(self, request: Request) -> Response:
        host = self._host(request)
        timeout = request.timeout if request.timeout is not None else self.options.timeout
        started = time.perf_counter()
        try:
            headers = {**self._headers, **request.headers} if request.headers else self._headers
            http_request = httpx.Request(
                request.method,
                request.url,
                headers=headers,
                content=request.body,
                extensions={"timeout": self._timeout(timeout)},
            )
            if host.cookies:
                host.cookies.set_cookie_header(http_request)
            response = await host.pool.handle_async_request(http_request)
            response.request = http_request
            try:
                if "set-cookie" in response.headers:
                    host.cookies.extract_cookies(response)
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
        except (httpx.DecodingError, ContentDecodingError) as exc:
            raise RemoteProtocolError(f"cannot decode body of {request.url}: {exc}", url=request.url) from None
        except httpx.TransportError as exc:
            raise RemoteProtocolError(
                f"{type(exc).__name__} from {request.host}: {exc or 'connection closed'}", url=request.url
            ) from None
        return Response(
            url=request.url,
            status=response.status_code,
            headers=CIMultiDictProxy(CIMultiDict(response.headers.multi_items())),
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
        decoder = ContentDecoder(response.headers.get("content-encoding", ""))
        async for raw in response.aiter_raw():
            for chunk in decoder.feed(raw):  # decoded in steps: the cap applies after decompression, zip bombs too
                size += len(chunk)
                if size > cap:
                    raise BodyTooLarge(f"body of {url} exceeds the cap of {cap} bytes", url=url)
                chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        hosts, self._hosts = self._hosts, {}
        for host in hosts.values():
            await host.pool.aclose()
