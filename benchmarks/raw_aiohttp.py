"""Baseline for ``crawl_bench.py``: crawl one host with a bare ``aiohttp.ClientSession`` loop on asyncio.

The same loop as ``raw_httpx.py`` with aiohttp underneath: C worker tasks share a queue, links are found with a
regex, resolved with ``urljoin`` and kept when they stay on the start URL's host and have not been seen; one
``aiohttp.ClientSession`` with ``TCPConnector(limit=C)``.  One JSON line (url, status) is written per page and a
summary goes to stdout.

    python benchmarks/raw_aiohttp.py http://127.0.0.1:8000/index.html --concurrency 64 -o pages.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from typing import TextIO
from urllib.parse import urldefrag, urljoin, urlsplit

import aiohttp

HREF = re.compile(r'href="([^"]+)"')


class RawCrawler:
    """A shared queue, a seen set and C workers that fetch, write a line and enqueue new same-host links."""

    def __init__(self, start: str, concurrency: int, out: TextIO) -> None:
        self.host = urlsplit(start).netloc
        self.concurrency = concurrency
        self.out = out
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.seen = {start}
        self.queue.put_nowait(start)
        self.pages = 0
        self.errors = 0
        self.bytes = 0

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=30.0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            workers = [asyncio.create_task(self.worker(session)) for _ in range(self.concurrency)]
            await self.queue.join()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def worker(self, session: aiohttp.ClientSession) -> None:
        while True:
            url = await self.queue.get()
            try:
                async with session.get(url) as response:
                    body = await response.read()
                    text = await response.text(errors="replace")  # decodes the body read above
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.errors += 1
                print(f"error: {url}: {exc!r}", file=sys.stderr)
            else:
                self.handle(url, response, body, text)
            finally:
                self.queue.task_done()

    def handle(self, url: str, response: aiohttp.ClientResponse, body: bytes, text: str) -> None:
        self.pages += 1
        self.bytes += len(body)
        self.out.write(json.dumps({"url": url, "status": response.status}) + "\n")
        if not response.headers.get("content-type", "").startswith("text/html"):
            return
        for href in HREF.findall(text):
            try:
                link = urldefrag(urljoin(url, href)).url
                parts = urlsplit(link)
            except ValueError:  # e.g. "http://[bad"
                continue
            if parts.scheme in ("http", "https") and parts.netloc == self.host and link not in self.seen:
                self.seen.add(link)
                self.queue.put_nowait(link)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="start URL")
    parser.add_argument("--concurrency", type=int, default=64, help="worker tasks and connector limit [64]")
    parser.add_argument("-o", "--output", required=True, help="JSON Lines file, one line per page")
    args = parser.parse_args()
    started = time.perf_counter()
    with open(args.output, "w", encoding="utf-8") as out:
        crawler = RawCrawler(args.url, args.concurrency, out)
        asyncio.run(crawler.run())
    summary = {
        "pages": crawler.pages,
        "errors": crawler.errors,
        "bytes": crawler.bytes,
        "seconds": round(time.perf_counter() - started, 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
