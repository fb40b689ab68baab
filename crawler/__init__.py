"""crawler: crawl web sites and harvest HTTP APIs at scale, on trio or asyncio, politely.

The public API is re-exported here; everything else lives in private modules.
"""

from crawler._engine import Engine, crawl
from crawler._exceptions import (
    BodyTooLarge,
    CloseSpider,
    ConnectError,
    CrawlerError,
    DropItem,
    FetchTimeout,
    IgnoreRequest,
    InvalidURL,
    RemoteProtocolError,
    ResponseError,
    SettingsError,
    SinkError,
    SpiderLoadError,
    TransportError,
)
from crawler._frontier import Frontier, FrontierStatistics, MemoryFrontier
from crawler._generic import SiteSpider
from crawler._items import ItemRecord
from crawler._politeness import HostPolicy, Outcome, Politeness
from crawler._request import Request, fingerprint
from crawler._response import Response
from crawler._settings import VERSION as __version__
from crawler._settings import CrawlSettings, LogSettings, OutputSettings, Settings, load_settings
from crawler._spider import Failure, Spider
from crawler._stats import Stats
from crawler._transport import HandlerTransport, HttpxTransport, Transport, TransportOptions
from crawler._url import ASSET_EXTENSIONS, canonicalize_url, host_key, is_asset_url, normalize_url
from crawler.sinks import Sink, open_sink

__all__ = [
    "ASSET_EXTENSIONS",
    "BodyTooLarge",
    "CloseSpider",
    "ConnectError",
    "CrawlSettings",
    "CrawlerError",
    "DropItem",
    "Engine",
    "Failure",
    "FetchTimeout",
    "Frontier",
    "FrontierStatistics",
    "HandlerTransport",
    "HostPolicy",
    "HttpxTransport",
    "IgnoreRequest",
    "InvalidURL",
    "ItemRecord",
    "LogSettings",
    "MemoryFrontier",
    "Outcome",
    "OutputSettings",
    "Politeness",
    "RemoteProtocolError",
    "Request",
    "Response",
    "ResponseError",
    "Settings",
    "SettingsError",
    "Sink",
    "SinkError",
    "SiteSpider",
    "Spider",
    "SpiderLoadError",
    "Stats",
    "Transport",
    "TransportError",
    "TransportOptions",
    "__version__",
    "canonicalize_url",
    "crawl",
    "fingerprint",
    "host_key",
    "is_asset_url",
    "load_settings",
    "normalize_url",
    "open_sink",
]
