"""The spider of ``crawl_bench.py``: parse each page (title, h1), follow its same-host links, yield one item.

crawler crawl benchmarks/bench_spider.py -a start_url=http://127.0.0.1:8000/index.html -o pages.jsonl
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from crawler import Request, Response, Spider


class BenchSpider(Spider):
    name = "bench"
    start_url = "http://127.0.0.1:8000/index.html"

    async def start(self) -> AsyncIterator[Request]:
        yield Request(url=self.start_url, callback="parse")

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {
            "url": response.url,
            "status": response.status,
            "title": response.css("title::text").get(),
            "h1": response.css("h1::text").get(),
        }
        host = response.request.host
        for request in response.follow_all():
            if request.host == host:
                yield request
