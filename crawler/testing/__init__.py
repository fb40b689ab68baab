"""Local HTTP servers and generated sites for testing and benchmarking crawls over real sockets.

Typical use in a test::

    site = generate_site(pages=50, hosts=("127.0.0.1", "127.0.0.2", "127.0.0.3"))
    with serve_many(site) as servers:           # one port P, three hosts 127.0.0.x:P
        start = servers.url("/index.html")      # http://127.0.0.1:P/index.html
        expected = servers.site.reachable_urls(start)
        ...                                     # crawl
        assert servers.stats().hits_by_url() == dict.fromkeys(expected, 1)

And :class:`FrontierContract`, the tests every frontier passes, for a frontier's own test suite to subclass.

The testing kit for spiders: :func:`run_spider` / :func:`arun_spider` (a crawl to the end, items, errors and stats
kept in memory, optionally replaying or recording a cassette), :class:`FakeClock`, and the assertions
:func:`assert_max_in_flight_per_host` and :func:`assert_honoured_retry_after`.  The pytest plugin
:mod:`crawler.testing.pytest_plugin` (registered by entry point) gives tests the ``crawl``, ``serve``,
``fake_clock`` and ``cassette`` fixtures.
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
from crawler.testing._kit import (
    CrawlResult,
    FakeClock,
    arun_spider,
    assert_honoured_retry_after,
    assert_max_in_flight_per_host,
    run_spider,
)
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
    "CrawlResult",
    "FakeClock",
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
    "arun_spider",
    "assert_honoured_retry_after",
    "assert_max_in_flight_per_host",
    "generate_site",
    "resolve_href",
    "run_spider",
    "serve_many",
    "split_authority",
]
