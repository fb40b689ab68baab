"""robots.txt (RFC 9309): one fetch per host, parsed by Protego, cached for the crawl."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from protego import Protego

from crawler._exceptions import CrawlerError, TransportError
from crawler._request import Request
from crawler._response import Response

__all__ = ["RobotsCache", "RobotsUnavailable"]

MAX_ROBOTS_BYTES = 500 * 1024  # RFC 9309 §2.5: parse at least the first 500 KiB


class RobotsUnavailable(CrawlerError):
    """robots.txt could not be fetched because of a server error (5xx) or a network failure: RFC 9309 §2.3.1.4
    requires assuming complete disallow for the host."""


class _Entry:
    __slots__ = ("done", "error", "parser")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.parser: Protego | None = None
        self.error: str | None = None


class RobotsCache:
    """Fetches ``/robots.txt`` once per host with ``fetch`` (so the request goes through the transport) and
    answers :meth:`allowed` and :meth:`crawl_delay` for ``user_agent``.

    Per RFC 9309 §2.3.1: 2xx is parsed; 4xx means everything is allowed; 5xx and network errors make every URL of
    the host fail with :class:`RobotsUnavailable` (complete disallow).  Redirects are followed up to 5 hops.
    """

    def __init__(self, fetch: Callable[[Request], Awaitable[Response]], user_agent: str) -> None:
        self._fetch = fetch
        self.user_agent = user_agent
        self._entries: dict[str, _Entry] = {}

    async def _load(self, url: str, entry: _Entry) -> None:
        try:
            for _ in range(6):
                response = await self._fetch(Request(url=url, headers={"Accept": "text/plain"}))
                location = response.headers.get("location")
                if 300 <= response.status < 400 and location:
                    url = response.urljoin(location)
                    continue
                break
            if 200 <= response.status < 300:
                entry.parser = Protego.parse(response.body[:MAX_ROBOTS_BYTES].decode("utf-8", "replace"))
            elif response.status >= 500:
                entry.error = f"robots.txt answered HTTP {response.status}"
        except TransportError as exc:
            entry.error = f"robots.txt unreachable: {exc}"
        finally:
            entry.done.set()

    async def get(self, request: Request) -> Protego | None:
        """The parsed robots.txt of the request's host (None: everything allowed).  Raises
        :class:`RobotsUnavailable` when the host's robots.txt could not be fetched."""
        host = request.host
        entry = self._entries.get(host)
        if entry is None:
            entry = self._entries[host] = _Entry()
            scheme = request.url.split(":", 1)[0]
            await self._load(f"{scheme}://{host}/robots.txt", entry)
        else:
            await entry.done.wait()
        if entry.error is not None:
            raise RobotsUnavailable(entry.error)
        return entry.parser

    async def allowed(self, request: Request) -> bool:
        """True when robots.txt lets ``user_agent`` fetch the request's URL."""
        parser = await self.get(request)
        return parser is None or bool(parser.can_fetch(request.url, self.user_agent))

    def crawl_delay(self, host: str) -> float:
        """The host's ``Crawl-delay`` for ``user_agent`` in seconds (also from ``Request-rate``), 0 if none.
        Call after :meth:`get` resolved for the host."""
        entry = self._entries.get(host)
        if entry is None or entry.parser is None:
            return 0.0
        delay = entry.parser.crawl_delay(self.user_agent)
        rate = entry.parser.request_rate(self.user_agent)
        from_rate = rate.seconds / rate.requests if rate is not None and rate.requests else 0.0
        return float(max(delay or 0.0, from_rate))
