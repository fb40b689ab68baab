"""Scrapy's counterpart of ``bench_spider.py`` for ``crawl_bench.py``: parse each page (title, h1), follow its
same-host links, yield one item.

Runs in the Scrapy environment ``crawl_bench.py`` creates (``benchmarks/_venvs/scrapy``), not the project's:

    benchmarks/_venvs/scrapy/bin/scrapy runspider benchmarks/scrapy_spider.py \\
        -a start_url=http://127.0.0.1:8000/index.html -s CONCURRENT_REQUESTS=64 \\
        -s CONCURRENT_REQUESTS_PER_DOMAIN=64 -O pages.jsonl:jsonl

``-O`` fills Scrapy's FEEDS setting: items go to a JSON Lines feed.  The concurrency comes from ``-s`` so that one
file serves every point of the benchmark; the rest of the settings are fixed below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urldefrag, urlsplit

import scrapy
from scrapy.http import Response


class BenchSpider(scrapy.Spider):
    name = "bench"
    start_url = "http://127.0.0.1:8000/index.html"
    custom_settings = {
        "ROBOTSTXT_OBEY": False,
        "AUTOTHROTTLE_ENABLED": False,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "DOWNLOAD_DELAY": 0,
        "LOG_LEVEL": "WARNING",
        "FEED_EXPORT_ENCODING": "utf-8",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # sets start_url from -a start_url=...
        self.host = urlsplit(self.start_url).netloc

    async def start(self) -> AsyncIterator[Any]:
        # Not start_urls: Scrapy sends those with dont_filter=True, which keeps the start URL out of the duplicate
        # filter, so the page's own links to it would fetch it a second time.
        yield scrapy.Request(self.start_url, callback=self.parse)

    def start_requests(self) -> Iterator[Any]:  # Scrapy < 2.13, which has no start()
        yield scrapy.Request(self.start_url, callback=self.parse)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        yield {
            "url": response.url,
            "status": response.status,
            "title": response.css("title::text").get(),
            "h1": response.css("h1::text").get(),
        }
        for href in response.css("a::attr(href)").getall():
            try:
                url = urldefrag(response.urljoin(href)).url
                parts = urlsplit(url)
            except ValueError:  # the malformed "http://[bad"
                continue
            if parts.scheme in ("http", "https") and parts.netloc == self.host:
                yield response.follow(url, callback=self.parse)
