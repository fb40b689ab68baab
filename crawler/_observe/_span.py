"""The span seam the engine calls around each request and each callback, and its no-op: :data:`NO_SPAN`.

The engine writes ``with NO_SPAN if observer is None else observer.request(request) as span:``, so a crawl without
observability pays for one comparison and two empty method calls per request, and allocates nothing.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crawler._response import Response

__all__ = ["NO_SPAN", "Span"]


class Span:
    """A context manager around one request (middleware and transport) or one callback.

    ``record(response)`` notes the response of a request; ``items`` is set by the engine to the items a callback
    has yielded so far.  This base does nothing: it is the no-op the engine uses when observability is off.
    """

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items = 0

    def __enter__(self) -> Span:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def record(self, response: Response) -> None:
        """Note the response a request got (status, body size)."""


#: The shared no-op span (its ``items`` is written by every callback and never read).
NO_SPAN = Span()
