"""The spider behind ``crawler crawl URL``: follow links within the start URLs' hosts, one record per page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from crawler._exceptions import InvalidURL
from crawler._request import Request
from crawler._response import Response
from crawler._spider import Spider
from crawler._stats import report_invalid_url
from crawler._url import host_key, is_asset_url

__all__ = ["HTML_TYPES", "SiteSpider"]

#: Content types treated as pages.
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


class SiteSpider(Spider):
    """Crawls every HTML page reachable from ``start_urls`` without leaving their hosts (``host[:port]``).

    Links to assets (by extension, see :data:`crawler.ASSET_EXTENSIONS`) are not fetched; responses that are not
    HTML (by Content-Type) produce no record.  Each page yields one record: ``url`` (final, after redirects),
    ``status``, ``title``, ``depth``, ``content_type``, ``elapsed`` (seconds) and ``links`` (the number of links
    found on the page).
    """

    name: ClassVar[str] = "site"

    def __init__(self, start_urls: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_urls = list(start_urls)  # type: ignore[misc]
        self.allowed_domains = sorted({host_key(url) for url in start_urls})  # type: ignore[misc]

    async def start(self) -> AsyncIterator[Request | Any]:
        for url in self.start_urls:
            yield Request(url=url, callback="parse")

    async def parse(self, response: Response) -> AsyncIterator[Request | dict[str, Any]]:
        if response.content_type not in HTML_TYPES:
            self.stats.inc("skipped_content_type")  # type: ignore[attr-defined]
            return
        links = list(response.iter_links())
        yield {
            "url": response.url,
            "status": response.status,
            "title": response.title,
            "depth": response.request.depth,
            "content_type": response.content_type,
            "elapsed": round(response.elapsed, 4),
            "links": len(links),
        }
        for request in self._follow(response, links):
            yield request

    def _follow(self, response: Response, links: list[str]) -> Iterator[Request]:
        for url in links:
            if is_asset_url(url):
                self.stats.inc("skipped_assets")  # type: ignore[attr-defined]
                continue
            try:
                yield response.follow(url)
            except InvalidURL as exc:
                report_invalid_url(exc, response.url)
