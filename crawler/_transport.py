"""The transport seam: ``async fetch(request) -> Response``, with aiohttp (asyncio) or httpx (trio) behind it.

Each transport maps its library's errors to crawler's own exception tree (``_aiohttp_transport``,
``_httpx_transport``), and nothing above the seam sees a library exception.  Redirects are not followed
by the transport: the engine turns a 3xx into a new request, so that the redirect target goes through the
frontier (dedup, politeness, robots.txt) like any other URL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import sniffio

from crawler._request import Request
from crawler._response import Response

__all__ = ["AutoTransport", "HandlerTransport", "Transport", "TransportOptions"]


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


class AutoTransport:
    """The default transport (``crawl.transport = "auto"``): the fastest one for the event loop it runs in,
    chosen at the first fetch: :class:`crawler.AiohttpTransport` on asyncio, :class:`HttpxTransport` on trio."""

    def __init__(self, options: TransportOptions | None = None) -> None:
        self.options = options or TransportOptions()
        self.chosen: Transport | None = None

    async def fetch(self, request: Request) -> Response:
        chosen = self.chosen
        if chosen is None:
            chosen = self.chosen = self._choose()
        return await chosen.fetch(request)

    def _choose(self) -> Transport:
        if sniffio.current_async_library() == "asyncio":
            from crawler._aiohttp_transport import AiohttpTransport

            return AiohttpTransport(self.options)
        from crawler._httpx_transport import HttpxTransport

        return HttpxTransport(self.options)

    async def aclose(self) -> None:
        chosen, self.chosen = self.chosen, None
        if chosen is not None:
            await chosen.aclose()
