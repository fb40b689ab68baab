"""The aiohttp transport: the fastest HTTP/1.1 client on asyncio, behind crawler's own transport seam.

On asyncio this is the default transport (``crawl.transport = "auto"``): aiohttp parses responses in C
(llhttp), keys its connection pool by host instead of scanning it, and its multidict headers are the ones crawler's
:class:`crawler.Response` already uses.  It runs on asyncio only; on trio the httpx transport is used.

Behaviour matches :class:`crawler.HttpxTransport`: redirects are not followed, bodies are decoded (gzip, deflate,
br, zstd: RFC 9110 §8.4.1) and the body cap applies after decoding (aiohttp decompresses in bounded steps, so a
small compressed body cannot expand in one go), URLs are sent exactly as crawler canonicalized them, the
environment's proxy settings are ignored, TLS certificates are verified unless ``verify`` is off, cookies are kept
per crawl as a browser would.
"""

from __future__ import annotations

import time

import aiohttp
import sniffio
from yarl import URL

from crawler._decoding import ContentDecoder, ContentDecodingError
from crawler._exceptions import BodyTooLarge, ConnectError, CrawlerError, FetchTimeout, InvalidURL, RemoteProtocolError
from crawler._request import Request
from crawler._response import Response
from crawler._transport import TransportOptions

__all__ = ["AiohttpTransport"]

_READ_CHUNK = 64 * 1024


class AiohttpTransport:
    """Fetches with one ``aiohttp.ClientSession`` whose connector keeps at most ``options.pool_size``
    connections per host (no total limit: the engine's concurrency bounds it).  Asyncio only: the session is
    created on the first fetch, inside the running loop.  Raises only :class:`crawler.TransportError`
    subclasses and :class:`crawler.InvalidURL`."""

    def __init__(self, options: TransportOptions | None = None) -> None:
        self.options = options or TransportOptions()
        self._session: aiohttp.ClientSession | None = None
        # True: aiohttp's own verifying context (the system's CA store, loaded once at import); False: no checks
        self._ssl = bool(self.options.verify)
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            # as httpx: the limit applies to each phase (waiting for a pooled connection, connecting, each read)
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(
                total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
            )
        return timeout

    def _open(self) -> aiohttp.ClientSession:
        library = sniffio.current_async_library()
        if library != "asyncio":
            raise CrawlerError(f"the aiohttp transport runs on asyncio only, not {library}: use httpx or auto")
        options = self.options
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=options.pool_size,
            ssl=self._ssl,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=options.headers,
            timeout=self._timeout(options.timeout),
            auto_decompress=True,
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # as a browser and httpx do: IP-address hosts keep cookies
            trust_env=False,
            raise_for_status=False,
            max_line_size=64 * 1024,
            max_field_size=64 * 1024,
        )
        return self._session

    async def fetch(self, request: Request) -> Response:
        session = self._session or self._open()
        seconds = request.timeout if request.timeout is not None else self.options.timeout
        started = time.perf_counter()
        url = request.url
        try:
            target = URL(url, encoded=True)  # already canonical and percent-encoded: send it as it is
        except (ValueError, TypeError) as exc:
            raise InvalidURL(url, str(exc)) from None
        if target.scheme not in ("http", "https") or not target.host:
            raise InvalidURL(url, "not an absolute http(s) URL")
        try:
            async with session.request(
                request.method,
                target,
                headers=request.headers or None,
                data=request.body,
                allow_redirects=False,
                timeout=self._timeout(seconds),
            ) as response:
                body = await self._read(response, url)
                headers = response.headers
                status = response.status
        except TimeoutError as exc:
            raise FetchTimeout(f"{type(exc).__name__} after {seconds:g} s: {url}", url=url) from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(f"cannot connect to {request.host}: {exc.os_error or exc}", url=url) from None
        except aiohttp.InvalidURL as exc:
            raise InvalidURL(url, str(exc)) from None
        except (aiohttp.ClientPayloadError, ContentDecodingError) as exc:
            raise RemoteProtocolError(f"cannot read or decode body of {url}: {exc}", url=url) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise RemoteProtocolError(
                f"{type(exc).__name__} from {request.host}: {exc or 'connection closed'}", url=url
            ) from None
        return Response(
            url=url,
            status=status,
            headers=headers,
            body=body,
            request=request,
            elapsed=time.perf_counter() - started,
        )

    async def _read(self, response: aiohttp.ClientResponse, url: str) -> bytes:
        cap = self.options.max_body_size
        declared = response.content_length
        if declared is not None and declared > cap and "Content-Encoding" not in response.headers:
            raise BodyTooLarge(f"body of {url} is {declared} bytes, over the cap of {cap} bytes", url=url)
        content = response.content
        # aiohttp undoes one content coding; codings stacked by the server ("gzip, br") are undone here, in the
        # same bounded steps (RFC 9110 §8.4: listed in the order they were applied)
        coding = response.headers.get("Content-Encoding", "")
        decoder = ContentDecoder(coding) if "," in coding else None
        chunks: list[bytes] = []
        size = 0
        while True:
            raw = await content.read(_READ_CHUNK)  # decoded: the cap applies after decompression
            if not raw:
                break
            for chunk in decoder.feed(raw) if decoder is not None else (raw,):
                size += len(chunk)
                if size > cap:
                    response.close()  # drop the connection rather than read the rest
                    raise BodyTooLarge(f"body of {url} exceeds the cap of {cap} bytes", url=url)
                chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
