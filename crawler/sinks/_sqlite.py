"""SQLite sink, the embedded default: items as JSON in one table, upserted on their key."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.to_thread

from crawler._exceptions import SinkError
from crawler._items import ItemRecord

__all__ = ["SqliteSink"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SqliteSink:
    """Stores items in ``TABLE(key TEXT PRIMARY KEY, spider TEXT, url TEXT, fetched_at REAL, item TEXT)`` of a
    SQLite database (WAL mode); ``item`` holds the JSON.  An item whose key is already stored replaces it, so a
    request fetched twice (a resumed crawl) writes no duplicate.

    ``uri``: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or a plain ``PATH.db``;
    ``?table=NAME`` picks the table (default ``items``).  Raises :class:`crawler.SinkError` for a bad table name
    or a database that cannot be opened.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        if uri.startswith("sqlite://"):
            parts = urlsplit(uri)
            self.path = parts.path[1:] if parts.path.startswith("/") else parts.path
            table = parse_qs(parts.query).get("table", ["items"])[0]
        else:
            path, _, query = uri.partition("?")
            self.path, table = path, parse_qs(query).get("table", ["items"])[0]
        if not _IDENT.match(table):
            raise SinkError(f"invalid table name {table!r} in output {uri!r}")
        if not self.path:
            raise SinkError(f"no database path in output {uri!r}; use sqlite:///items.db")
        self.table = table
        self._db: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)

    def _open(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, spider TEXT NOT NULL, "
            "url TEXT NOT NULL, fetched_at REAL NOT NULL, item TEXT NOT NULL)"
        )
        db.commit()
        self._db = db

    async def open(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._open, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise SinkError(f"cannot open output {self.uri!r}: {exc}") from None

    def _write(self, rows: list[tuple[str, str, str, float, str]]) -> None:
        assert self._db is not None
        with self._db:
            self._db.executemany(
                f"INSERT INTO {self.table} (key, spider, url, fetched_at, item) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET spider=excluded.spider, url=excluded.url, "
                "fetched_at=excluded.fetched_at, item=excluded.item",
                rows,
            )

    async def write(self, batch: Sequence[ItemRecord]) -> None:
        try:
            rows = [
                (r.key, r.spider, r.url, r.fetched_at, json.dumps(r.item, ensure_ascii=False, default=str))
                for r in batch
            ]
        except (TypeError, ValueError) as exc:  # non-string keys, a circular item
            raise SinkError(f"cannot write to {self.uri!r}: an item is not JSON: {exc}") from None
        try:
            await anyio.to_thread.run_sync(self._write, rows, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise SinkError(f"cannot write to {self.uri!r}: {exc}") from None

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await anyio.to_thread.run_sync(db.close, limiter=self._limiter)
