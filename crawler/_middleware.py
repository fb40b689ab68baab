"""Middleware: an explicit list of typed hooks around the transport.

Each middleware may change the request on its way out (headers, credentials) and look at the response on its way
back.  ``process_response`` may return a :class:`Request` instead of the response: that request is queued again
(bypassing the dedup), which is how an expired OAuth 2 token is refreshed and the request retried.  The request
a middleware changes is only what goes on the wire: the frontier keeps the original, so credentials are never
persisted or logged.

Order: ``process_request`` runs in list order, ``process_response`` in reverse, as in structlog's processor chain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from crawler._request import Request
from crawler._response import Response

__all__ = ["Fetch", "Middleware"]

Fetch = Callable[[Request], Awaitable[Response]]


class Middleware(Protocol):
    """The hooks of one middleware.  All three are required; a middleware that needs no set-up returns from
    ``open`` at once."""

    async def open(self, fetch: Fetch) -> None:
        """Called once before the crawl with the transport's ``fetch`` (for token requests)."""
        ...

    async def process_request(self, request: Request) -> Request:
        """Return the request to send (the same one, or a changed copy)."""
        ...

    async def process_response(self, request: Request, response: Response) -> Response | Request:
        """Return the response to hand on, or a request to queue again instead."""
        ...
