"""Local HTTP servers and generated sites for testing and benchmarking crawls over real sockets.

Typical use in a test::

    site = generate_site(pages=50, hosts=("127.0.0.1", "127.0.0.2", "127.0.0.3"))
    with serve_many(site) as servers:           # one port P, three hosts 127.0.0.x:P
        start = servers.url("/index.html")      # http://127.0.0.1:P/index.html
        expected = servers.site.reachable_urls(start)
        ...                                     # crawl
        assert servers.stats().hits_by_url() == dict.fromkeys(expected, 1)

And :class:`FrontierContract`, the tests every frontier passes, for a frontier's own test suite to subclass.
"""

from crawler.testing._api import (
    ApiAuth,
    ApiServer,
    ApiStatistics,
    IssuedToken,
    PaginationStyle,
    RateLimit,
    RateLimitDialect,
    RateWindow,
)
from crawler.testing._frontier_contract import FrontierContract
from crawler.testing._server import (
    Headers,
    LocalServer,
    Reply,
    RequestCounter,
    RequestInfo,
    RequestRecord,
    RouteValue,
    ServerGroup,
    ServerStatistics,
    serve_many,
)
from crawler.testing._site import Page, Site, SiteSpec, generate_site, resolve_href, split_authority

__all__ = [
    "ApiAuth",
    "ApiServer",
    "ApiStatistics",
    "FrontierContract",
    "Headers",
    "IssuedToken",
    "LocalServer",
    "Page",
    "PaginationStyle",
    "RateLimit",
    "RateLimitDialect",
    "RateWindow",
    "Reply",
    "RequestCounter",
    "RequestInfo",
    "RequestRecord",
    "RouteValue",
    "ServerGroup",
    "ServerStatistics",
    "Site",
    "SiteSpec",
    "generate_site",
    "resolve_href",
    "serve_many",
    "split_authority",
]
