"""What the crawler sends, and how it reads rate-limit headers, shown against httpbin.

Serve httpbin (PyPI package ``httpbin``, a Flask app) and crawl it:

    pip install httpbin
    python -m httpbin.core --port 8080 &
    crawler crawl examples/httpbin_headers.py -o headers.jsonl

The first item is httpbin's echo of our request headers (``/headers``): the User-Agent (``crawl.user_agent``), the
Accept this spider asks for, what httpx adds.  Then one item per rate-limit dialect: ``/response-headers?NAME=VALUE``
answers with the headers it is given, and :func:`crawler.parse_rate_limit` reads them back: the dialect found
(``source``), ``limit``, ``remaining``, ``reset_after`` and ``window`` (seconds), ``retry_after`` and the ``delay``
before the next request.  The crawl obeys these headers too: they pace this host.  Another server:
``-a api=http://127.0.0.1:5000``.

Harvesting JSON needs no code at all: one item per slide of httpbin's ``/json``,

    crawler crawl http://127.0.0.1:8080/json --items slideshow.slides -o slides.jsonl
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import attrs

from crawler import Request, Response, Spider, parse_rate_limit


def dialects(now: float) -> dict[str, dict[str, str]]:
    """Rate-limit headers as APIs send them, by dialect; ``now`` (epoch seconds) for GitHub's epoch reset."""
    return {
        "ietf-draft-08": {"RateLimit-Policy": '"minute";q=600;w=60', "RateLimit": '"minute";r=597;t=58'},
        "ietf-draft-06": {"RateLimit-Limit": "600", "RateLimit-Remaining": "596", "RateLimit-Reset": "57"},
        "github": {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "4990",
            "X-RateLimit-Used": "10",
            "X-RateLimit-Reset": str(int(now) + 60),
        },
        "exhausted": {  # Retry-After takes precedence over the reset time: delay 1 s, not 3600 s
            "X-RateLimit-Limit": "60",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(now) + 3600),
            "Retry-After": "1",
        },
    }


class HttpbinHeaders(Spider):
    name = "httpbin_headers"
    api = "http://127.0.0.1:8080"

    async def start(self) -> AsyncIterator[Request]:
        accept = {"Accept": "application/json"}
        yield Request(url=f"{self.api}/headers", headers=accept, callback=self.parse_sent, priority=9)
        for priority, (dialect, headers) in enumerate(reversed(dialects(time.time()).items())):
            yield Request(
                url=f"{self.api}/response-headers",
                params=headers,
                callback=self.parse_rate_limit,
                cb_kwargs={"dialect": dialect},
                priority=priority,  # the exhausted quota last: it pauses this host
            )

    def parse_sent(self, response: Response) -> dict[str, Any]:
        return {"endpoint": "/headers", "sent": response.json()["headers"]}

    def parse_rate_limit(self, response: Response, dialect: str) -> dict[str, Any]:
        info = parse_rate_limit(response.headers, now=time.time())
        found = attrs.asdict(info, filter=lambda field, _: field.name != "policies") if info else {}
        return {"endpoint": "/response-headers", "dialect": dialect, **found, "delay": info.delay if info else None}
