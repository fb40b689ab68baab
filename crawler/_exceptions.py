"""The crawler's exception tree, and the control-flow signals that are not errors.

Errors::

    CrawlerError
     ├── SettingsError          a setting has the wrong key, type or value (names key, layer, expectation)
     ├── SpiderLoadError        a spider file, module or name cannot be loaded
     ├── InvalidURL             a URL cannot be parsed or has no http(s) scheme and host
     ├── ResponseError          a response cannot be read as asked (invalid JSON, undecodable body)
     ├── SinkError              a sink cannot be opened or written to
     ├── FrontierError          a frontier cannot be opened, reached or given a request it cannot store
     └── TransportError         a request failed before a complete response arrived
          ├── ConnectError      DNS failure, connection refused or reset while connecting
          ├── FetchTimeout      connect, read, write or pool timeout
          ├── RemoteProtocolError  the peer broke HTTP (malformed response, early close)
          └── BodyTooLarge      the decoded body exceeded the configured cap

Signals (not errors; raised by user code to steer the crawl):

    IgnoreRequest   drop this request quietly (counted in the stats)
    DropItem        drop this item quietly (counted in the stats)
    CloseSpider     stop dispatching new requests and end the crawl cleanly

Library errors (httpx, parsel, sqlite3, ...) are mapped to this tree at the seam that calls the library
(the transport, the sinks), so user code only ever catches crawler's own types.
"""

from __future__ import annotations


class CrawlerError(Exception):
    """Base of every error raised by crawler."""


class SettingsError(CrawlerError):
    """A setting is unknown, has the wrong type or an invalid value.

    The message names the key (``crawl.concurrency``), the layer it came from (``defaults``, ``crawler.toml``,
    ``spider MySpider``, ``environment``, ``command line``) and what was expected.
    """


class SpiderLoadError(CrawlerError):
    """A spider given as a file, a ``module:Class`` path or a name could not be loaded."""


class InvalidURL(CrawlerError, ValueError):
    """A URL cannot be parsed, or lacks an ``http``/``https`` scheme or a host.

    ``url`` holds the offending text.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"invalid URL {url!r}: {reason}")
        self.url = url
        self.reason = reason


class ResponseError(CrawlerError):
    """A response body could not be read as asked (for example ``Response.json()`` on invalid JSON)."""


class SinkError(CrawlerError):
    """A sink could not be opened, written or closed; the message names the sink URI."""


class FrontierError(CrawlerError):
    """A frontier could not be opened or reached, or was given a request it cannot store; the message names the
    frontier (its URI) or the request."""


class TransportError(CrawlerError):
    """A request failed before a complete response arrived. ``url`` names the request's URL."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class ConnectError(TransportError):
    """The host could not be reached: DNS failure, connection refused, TLS handshake failure."""


class FetchTimeout(TransportError):
    """The request exceeded its timeout (seconds) while connecting, writing or reading."""


class RemoteProtocolError(TransportError):
    """The server violated HTTP: a malformed status line or headers, or it closed the connection early."""


class BodyTooLarge(TransportError):
    """The decoded response body exceeded ``crawl.max_body_size`` bytes; reading stopped at the cap."""


class IgnoreRequest(Exception):
    """Signal: drop the current request without treating it as an error."""


class DropItem(Exception):
    """Signal: drop the current item without treating it as an error."""


class CloseSpider(Exception):
    """Signal: stop dispatching, let in-flight requests finish, flush the sinks, end the crawl.

    ``reason`` is recorded in the final stats.
    """

    def __init__(self, reason: str = "closed by spider") -> None:
        super().__init__(reason)
        self.reason = reason
