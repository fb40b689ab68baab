"""Harvest a json-server 0.17 API: every post, with its comments, following the Link header's rel="next".

Serve the example data (npm package json-server, version 0.17; version 1 pages differently), then crawl it:

    npx --yes json-server@0.17 --port 3000 examples/json_server_db.json &
    crawler crawl examples/json_server.py -o posts.jsonl

json-server 0.17 pages a collection with ``_page`` and ``_limit`` and answers ``X-Total-Count: 120`` and
``Link: <...?_page=1&_limit=25>; rel="first", <...?_page=2&_limit=25>; rel="next", <...>; rel="last"``; the last
page has no rel="next".  Another server or page size: ``-a api=http://127.0.0.1:3001 -a limit=50``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from crawler import Request, Response, Spider


class JsonServerPosts(Spider):
    name = "json_server"
    api = "http://127.0.0.1:3000"
    limit = "25"
    paginate = {"parse": "link"}  # the engine follows rel="next" with the same callback
    item_key = "id"

    async def start(self) -> AsyncIterator[Request]:
        yield Request(url=f"{self.api}/posts", params={"_page": 1, "_limit": self.limit})

    async def parse(self, response: Response) -> AsyncIterator[Request]:
        for post in response.json():
            yield Request(
                url=f"{self.api}/posts/{post['id']}/comments", callback=self.parse_comments, cb_kwargs={"post": post}
            )

    def parse_comments(self, response: Response, post: dict[str, Any]) -> dict[str, Any]:
        return {**post, "comments": response.json()}
