"""The httpx transport: httpx's ``AsyncClient`` (httpcore underneath) behind crawler's transport seam; the default
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
            shards = [
                httpx.AsyncHTTPTransport(
                    verify=self._ssl,
                    http2=options.http2,
                    limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                    trust_env=False,
                )
                for size in _shard_sizes(options.pool_size)
            ]
            client = httpx.AsyncClient(
                headers=options.headers,
                timeout=options.timeout,
                follow_redirects=False,
                transport=shards[0] if len(shards) == 1 else _ShardedPool(shards),
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
        except (httpx.DecodingError, ContentDecodingError) as exc:
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
        decoder = ContentDecoder(response.headers.get("content-encoding", ""))
        async for raw in response.aiter_raw():
            for chunk in decoder.feed(raw):  # decoded in steps: the cap applies after decompression, zip bombs too
                size += len(chunk)
                if size > cap:
                    raise BodyTooLarge(f"body of {url} exceeds the cap of {cap} bytes", url=url)
                chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()
