"""crawler: crawl web sites and harvest HTTP APIs at scale, on trio or asyncio, politely.

The public API is re-exported here; everything else lives in private modules.
"""

import typing

from crawler._adaptive import AdaptiveHostPolicy, AdaptivePoliteness, HostOverride, parse_rate
from crawler._auth import ApiKeyAuth, AuthError, BasicAuth, BearerAuth, OAuth2ClientCredentials, Secret
from crawler._cassette import CassetteError, NoRecording, RecordingFailed, RecordingTransport, ReplayTransport
from crawler._engine import Engine, crawl
from crawler._exceptions import (
    BodyTooLarge,
    CloseSpider,
    ConnectError,
    CrawlerError,
    DropItem,
    FetchTimeout,
    FrontierError,
    IgnoreRequest,
    InvalidURL,
    RemoteProtocolError,
    ResponseError,
    SettingsError,
    SinkError,
    SpiderLoadError,
    TransportError,
)
from crawler._frontier import Frontier, FrontierStatistics, HostQueue, HostScheduler, MemoryFrontier, open_frontier
from crawler._generic import SiteSpider
from crawler._harvest import ApiSpider
from crawler._items import ItemRecord
from crawler._link_header import Link, find_link, parse_link_header
from crawler._log import redact
from crawler._middleware import Middleware
from crawler._pagination import (
    JsonCursorPaginator,
    LinkHeaderPaginator,
    OffsetPaginator,
    PagePaginator,
    Paginator,
    from_spec,
)
from crawler._politeness import HostPolicy, Outcome, Politeness
from crawler._ratelimit_headers import RateLimitInfo, parse_rate_limit
from crawler._request import Request, fingerprint, request_from_dict, request_to_dict
from crawler._response import Response, network_exchange
from crawler._retry import RetryPolicy
from crawler._retry_after import parse_retry_after
from crawler._settings import VERSION as __version__
from crawler._settings import (
    AuthSettings,
    CrawlSettings,
    HostSettings,
    LogSettings,
    MetricsSettings,
    OutputSettings,
    RetrySettings,
    Settings,
    load_settings,
)
from crawler._spider import Failure, Spider
from crawler._sqlite_frontier import SqliteFrontier
from crawler._stats import Stats
from crawler._transport import AutoTransport, HandlerTransport, Transport, TransportOptions
from crawler._url import ASSET_EXTENSIONS, canonicalize_url, host_key, is_asset_url, normalize_url
from crawler.sinks import Sink, open_sink

__all__ = [
    "ASSET_EXTENSIONS",
    "AdaptiveHostPolicy",
    "AdaptivePoliteness",
    "AiohttpTransport",
    "ApiKeyAuth",
    "ApiSpider",
    "AuthError",
    "AuthSettings",
    "AutoTransport",
    "BasicAuth",
    "BearerAuth",
    "BodyTooLarge",
    "CacheTransport",
    "CassetteError",
    "CloseSpider",
    "ConnectError",
    "CrawlSettings",
    "CrawlerError",
    "DropItem",
    "Engine",
    "Failure",
    "FetchTimeout",
    "Frontier",
    "FrontierError",
    "FrontierStatistics",
    "HandlerTransport",
    "HostOverride",
    "HostPolicy",
    "HostQueue",
    "HostScheduler",
    "HostSettings",
    "HttpxTransport",
    "IgnoreRequest",
    "InvalidURL",
    "ItemRecord",
    "JsonCursorPaginator",
    "Link",
    "LinkHeaderPaginator",
    "LogSettings",
    "MemoryFrontier",
    "MetricsSettings",
    "Middleware",
    "NoRecording",
    "OAuth2ClientCredentials",
    "OffsetPaginator",
    "Outcome",
    "OutputSettings",
    "PagePaginator",
    "Paginator",
    "Politeness",
    "RateLimitInfo",
    "RecordingFailed",
    "RecordingTransport",
    "RemoteProtocolError",
    "ReplayTransport",
    "Request",
    "Response",
    "ResponseError",
    "RetryPolicy",
    "RetrySettings",
    "Secret",
    "Settings",
    "SettingsError",
    "Sink",
    "SinkError",
    "SiteSpider",
    "Spider",
    "SpiderLoadError",
    "SqliteFrontier",
    "Stats",
    "Transport",
    "TransportError",
    "TransportOptions",
    "__version__",
    "canonicalize_url",
    "crawl",
    "find_link",
    "fingerprint",
    "from_spec",
    "host_key",
    "is_asset_url",
    "load_settings",
    "network_exchange",
    "normalize_url",
    "open_frontier",
    "open_sink",
    "parse_link_header",
    "parse_rate",
    "parse_rate_limit",
    "parse_retry_after",
    "redact",
    "request_from_dict",
    "request_to_dict",
]

if typing.TYPE_CHECKING:
    from crawler._aiohttp_transport import AiohttpTransport
    from crawler._cache import CacheTransport
    from crawler._httpx_transport import HttpxTransport


def __getattr__(name: str) -> typing.Any:
    """Import the HTTP cache (hishel) and the transports only when they are asked for: a crawl on asyncio never
    loads httpx, one on trio never loads aiohttp."""
    if name == "CacheTransport":
        from crawler._cache import CacheTransport

        return CacheTransport
    if name == "AiohttpTransport":
        from crawler._aiohttp_transport import AiohttpTransport

        return AiohttpTransport
    if name == "HttpxTransport":
        from crawler._httpx_transport import HttpxTransport

        return HttpxTransport
    raise AttributeError(f"module 'crawler' has no attribute {name!r}")
