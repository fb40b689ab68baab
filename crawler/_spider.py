"""The :class:`Spider` base class that users subclass, and :class:`Failure`, what an errback receives."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from crawler._request import Request
from crawler._response import Response

__all__ = ["Failure", "Spider", "iterate_output"]


@attrs.frozen(kw_only=True)
class Failure:
    """Why a request gave up: the ``request``, the ``exception`` (a :class:`crawler.TransportError`, an exception
    raised by the callback, ...) or None, and the last ``response`` if one arrived (an error status)."""

    request: Request
    exception: BaseException | None = None
    response: Response | None = None

    @property
    def reason(self) -> str:
        """A one-line description: the exception's type and message, or the status."""
        if self.exception is not None:
            return f"{type(self.exception).__name__}: {self.exception}"
        if self.response is not None:
            return f"HTTP {self.response.status}"
        return "unknown"


class Spider:
    """Subclass this to describe a crawl.

    Class attributes:

    - ``name``: how the spider is found (``crawler crawl NAME``) and labelled in logs and sinks.
    - ``start_urls``: URLs requested first, with :meth:`parse` as their callback (or override :meth:`start`).
    - ``allowed_domains``: host names (a domain allows its subdomains); requests elsewhere are dropped and
      counted as ``offsite``.  Empty means any host.
    - ``custom_settings``: settings for this spider, shaped like ``crawler.toml`` (``{"crawl": {"delay": 1.0}}``),
      checked like every other layer: an unknown key or a wrong type is a :class:`crawler.SettingsError`.
    - ``item_key``: the item field that identifies an item in sinks that support keys (upsert); by default an
      item's key is its request's fingerprint and its position in the callback's output.
    - ``paginate``: pagination by callback name, ``{"parse": "link"}`` or ``{"parse": "cursor:stripe"}`` (see
      :func:`crawler.from_spec`); the engine then follows next pages with the same callback.  A request can
      also carry its own in ``meta["paginate"]``.
    - ``middleware``: extra :class:`crawler.Middleware` objects, after the auth of the settings.

    Callbacks take a :class:`crawler.Response` and may be ``async def`` or ``def``, generators or not; they yield or
    return :class:`crawler.Request` objects and items (dicts, attrs or dataclass instances), a list of them, one
    of them, or None.  An errback takes a :class:`Failure` and may produce the same.
    """

    name: ClassVar[str] = "spider"
    start_urls: ClassVar[Sequence[str]] = ()
    allowed_domains: ClassVar[Sequence[str]] = ()
    custom_settings: ClassVar[Mapping[str, Any]] = {}
    item_key: ClassVar[str | None] = None
    paginate: ClassVar[Mapping[str, Any]] = {}
    middleware: ClassVar[Sequence[Any]] = ()

    def __init__(self, **kwargs: Any) -> None:
        """Keyword arguments (``crawler crawl spider.py -a key=value``) become instance attributes."""
        for key, value in kwargs.items():
            setattr(self, key, value)

    async def start(self) -> AsyncIterator[Request | Any]:
        """Yield the first requests.  By default, one GET per ``start_urls`` entry, handled by :meth:`parse`."""
        for url in self.start_urls:
            yield Request(url=url, callback="parse")

    def parse(self, response: Response) -> Any:
        """The default callback.  Override it (``async def`` or ``def``, generator or not); the base implementation
        raises NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__}.parse() is not defined")

    def errback(self, failure: Failure) -> Any:
        """The default errback, called when a request gives up.  The base implementation does nothing (the engine
        logs and counts the failure, and records it in the error output)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


async def iterate_output(result: Any) -> AsyncIterator[Any]:
    """Normalize what a callback produced: an async generator, a generator, an awaitable resolving to any of
    these, an iterable, a single value, or None.  Yields each request or item."""
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return
    if inspect.isasyncgen(result):
        async for value in result:
            yield value
        return
    if isinstance(result, (Request, Mapping, str, bytes)) or attrs.has(type(result)):
        yield result
        return
    if isinstance(result, Iterable):
        for value in result:
            yield value
        return
    yield result
