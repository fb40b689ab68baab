"""Crawl the Python documentation and extract, per page, its title, headings and the documented API objects.

Serve the docs first (Debian package python3.11-doc):

    crawler serve /usr/share/doc/python3.11/html --port 8000 &
    crawler crawl examples/pydocs.py -o docs.jsonl

Set another start URL with ``-a start_url=http://127.0.0.1:9000/index.html``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs

from crawler import Request, Response, Spider, is_asset_url

#: Sphinx marks each documented object as <dl class="py KIND"><dt id="ANCHOR">.
API_KINDS = ("function", "class", "method", "attribute", "exception", "data", "module", "classmethod", "staticmethod")


@attrs.frozen
class ApiObject:
    name: str
    kind: str
    url: str


@attrs.frozen
class DocPage:
    url: str
    title: str
    headings: list[str]
    objects: list[ApiObject]


class PythonDocs(Spider):
    name = "pydocs"
    start_url = "http://127.0.0.1:8000/index.html"
    custom_settings = {"crawl": {"per_host": 4}}

    async def start(self) -> AsyncIterator[Request]:
        yield Request(url=self.start_url, callback=self.parse)

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        if "html" not in response.content_type:
            return
        objects = [
            ApiObject(name=dt.attrib["id"], kind=kind, url=response.urljoin("#" + dt.attrib["id"]))
            for kind in API_KINDS
            for dt in response.css(f"dl.py.{kind} > dt[id]")
        ]
        yield DocPage(
            url=response.url,
            title=response.title,
            headings=[
                " ".join(" ".join(h.xpath(".//text()").getall()).replace("¶", "").split())
                for h in response.xpath("//div[@role='main']//*[self::h1 or self::h2 or self::h3]")
            ],
            objects=objects,
        )
        host = response.request.host
        for link in response.iter_links():
            if not is_asset_url(link) and not link.endswith((".txt", ".zip", ".bz2")):
                request = response.follow(link)
                if request.host == host:
                    yield request
