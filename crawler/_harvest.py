"""The spider behind ``crawler crawl URL --items PATH --paginate SPEC``: harvest JSON records from an API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import jmespath
from jmespath.exceptions import JMESPathError

from crawler._exceptions import ResponseError, SettingsError
from crawler._request import Request
from crawler._response import Response
from crawler._spider import Spider
from crawler._url import host_key

__all__ = ["ApiSpider"]


class ApiSpider(Spider):
    """Fetches ``start_urls`` and writes one item per JSON record found at ``items`` (a JMESPath expression,
    https://jmespath.org: ``data``, ``results[]``, ``data.repository.issues.nodes``; ``@`` for a top-level list),
    following ``paginate`` (see :func:`crawler.from_spec`) with the same callback.

    A response that is not JSON, or where the path finds no list, is logged and counted (``no_records``); a record
    that is not an object is wrapped as ``{"value": record}``.  Raises :class:`crawler.SettingsError` for a
    malformed path.
    """

    name: ClassVar[str] = "api"

    def __init__(self, start_urls: Sequence[str], *, items: str = "@", paginate: str | None = None) -> None:
        super().__init__()
        self.start_urls = list(start_urls)  # type: ignore[misc]
        self.allowed_domains = sorted({host_key(url) for url in start_urls})  # type: ignore[misc]
        try:
            self.items_path = jmespath.compile(items)
        except JMESPathError as exc:
            raise SettingsError(f"invalid --items path {items!r}: {exc}") from None
        self.paginate = {"parse": paginate} if paginate else {}  # type: ignore[misc]

    async def start(self) -> AsyncIterator[Request | Any]:
        for url in self.start_urls:
            yield Request(url=url, callback="parse", headers={"Accept": "application/json"})

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        try:
            data = response.json()
        except ResponseError as exc:
            self.stats.inc("no_records")  # type: ignore[attr-defined]
            self.logger.warning("not JSON, no records", error=str(exc))  # type: ignore[attr-defined]
            return
        records = self.items_path.search(data)
        if records is None or not isinstance(records, list):
            self.stats.inc("no_records")  # type: ignore[attr-defined]
            self.logger.warning("no list of records at the --items path", found=type(records).__name__)  # type: ignore[attr-defined]
            return
        for record in records:
            yield record if isinstance(record, dict) else {"value": record}
