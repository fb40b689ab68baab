"""The spider of ``frontier_memory.py``: every page yields one item, follows its real links, and queues
``fanout`` synthetic links that are never fetched (the crawl stops at ``--max-pages``), so that the frontier grows
to ``pages x fanout`` URLs.

crawler crawl benchmarks/frontier_spider.py -a start_url=http://127.0.0.1:8000/index.html -a fanout=1000 \
    --max-pages 1000 --state /tmp/state
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from crawler import Request, Response, Spider


class FrontierSpider(Spider):
    name = "frontier"
    start_url = "http://127.0.0.1:8000/index.html"
    fanout = "1000"

    async def start(self) -> AsyncIterator[Request]:
        yield Request(url=self.start_url, priority=1)

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url, "title": response.title}
        for request in response.follow_all():
            yield request.replace(priority=1)  # real pages first, so the crawl keeps finding pages to fetch
        base = response.urljoin("/synthetic/")
        page = response.request.fingerprint[:12]
        for i in range(int(self.fanout)):
            yield Request(url=f"{base}{page}/{i}.html")
