"""The PostgreSQL sink: items upserted on their key into a table with a JSONB column."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import anyio
import psycopg
from crawler import ItemRecord, SinkError
from psycopg.conninfo import make_conninfo

from crawler_postgres import _sql
from crawler_postgres._driver import Copy, Driver, Execute, new_driver
from crawler_postgres._uri import ERRORS_TABLE, Target, parse_uri

__all__ = ["PostgresSink"]


class PostgresSink:
    """Stores items in the PostgreSQL table
    ``TABLE(key TEXT PRIMARY KEY, item JSONB NOT NULL, spider TEXT NOT NULL, url TEXT NOT NULL,
    fetched_at TIMESTAMPTZ NOT NULL)``, created by :meth:`open` when missing.  An item whose key is already
    stored replaces it, so a request fetched twice (a resumed or redelivered crawl) writes no duplicate.

    ``uri``: ``postgresql://user:password@host:port/dbname?table=items`` (or ``postgres://``), a libpq connection
    URI (PostgreSQL documentation, "Connection Strings").  ``table`` is ``NAME`` or ``SCHEMA.NAME`` (the schema must
    exist), default ``items``; every other query parameter (``sslmode``, ``connect_timeout``...) goes to libpq, as
    do the ``PG*`` environment variables and ``~/.pgpass``, so the password need not be in the URI (``PGPASSWORD``).
    ``connect_timeout`` defaults to 10 seconds.

    The :attr:`uri` attribute, the ``repr`` and every message show the URI with its password replaced by ``***``.
    Every failure is a :class:`crawler.SinkError` naming that URI.  A write that loses the connection (the server
    restarted) raises, and the next write reconnects; writes are idempotent upserts, so retrying a batch is safe.

    Works on asyncio (psycopg's ``AsyncConnection``) and on trio (a blocking connection in a worker thread).
    """

    def __init__(self, uri: str) -> None:
        """Parse ``uri``; no I/O.  Raises :class:`crawler.SinkError` for a URI libpq cannot read or a bad table
        name."""
        self._target = parse_uri(uri)
        self._init()

    @classmethod
    def _for(cls, target: Target) -> PostgresSink:
        sink = cls.__new__(cls)
        sink._target = target
        sink._init()
        return sink

    def _init(self) -> None:
        target = self._target
        self.uri: str = target.redacted
        #: The table as SQL text, each part double-quoted (``"crawl"."items"``).
        self.table: str = target.qualified
        self._upsert = _sql.upsert(target.parts)
        self._driver: Driver | None = None
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"PostgresSink({self.uri!r})"

    def error_sink(self) -> PostgresSink:
        """A new, unopened sink for the same database and schema, writing to the table ``errors`` (error records
        of requests that gave up)."""
        schema = self._target.schema
        return PostgresSink._for(self._target.with_table(f"{schema}.{ERRORS_TABLE}" if schema else ERRORS_TABLE))

    async def open(self) -> None:
        """Connect, and create the table if it is missing; opening an open sink does nothing.

        Raises :class:`crawler.SinkError` when the server cannot be reached, refuses the credentials, or the
        table cannot be created or exists without the columns above or a unique index on ``key`` alone.
        """
        async with self._lock:
            if self._driver is not None:
                return
            driver = new_driver()
            await self._connect(driver)
            try:
                await self._ensure_table(driver)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _close_quietly(driver)
                raise
            self._driver = driver

    async def write(self, batch: Sequence[ItemRecord]) -> None:
        """Upsert ``batch`` in one transaction: all of it is stored, or none (a key repeated in the batch keeps its
        last record).  Reconnects first if the connection was lost.

        Raises :class:`crawler.SinkError` if the sink is not open, a record cannot be stored (its item cannot be
        JSON), or the database fails (the connection is then reopened by the next write).
        """
        if not batch:
            return
        try:
            rows = _sql.rows(batch)
        except ValueError as exc:
            raise SinkError(f"cannot write to {self.uri!r}: {exc}") from None
        async with self._lock:
            driver = self._driver
            if driver is None:
                raise SinkError(f"cannot write to {self.uri!r}: the sink is not open")
            if not driver.connected:
                await self._connect(driver)
            try:
                await driver.run([Copy(_sql.COPY_STAGE, rows), Execute(self._upsert)], transaction=True)
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await driver.discard_if_unusable()
                if isinstance(exc, psycopg.Error):
                    lost = "" if driver.connected else " (the connection is reopened on the next write)"
                    raise SinkError(
                        f"cannot write {len(rows)} items to {self.uri!r}: {self._describe(exc)}{lost}"
                    ) from None
                raise

    async def close(self) -> None:
        """Close the connection; closing a closed sink does nothing.  Raises :class:`crawler.SinkError`."""
        async with self._lock:
            driver, self._driver = self._driver, None
            if driver is None:
                return
            try:
                await driver.close()
            except psycopg.Error as exc:
                raise SinkError(f"cannot close {self.uri!r}: {self._describe(exc)}") from None

    async def _connect(self, driver: Driver) -> None:
        target = self._target
        try:
            conninfo = make_conninfo(target.conninfo, **target.connect_kwargs)
            await driver.connect(conninfo, [Execute(_sql.CREATE_STAGE)])
        except psycopg.Error as exc:
            raise SinkError(f"cannot connect to {self.uri!r}: {self._describe(exc)}") from None

    async def _ensure_table(self, driver: Driver) -> None:
        try:
            [(exists, columns, unique_key)] = await driver.run(
                [Execute(_sql.describe_table, {"table": self.table})], transaction=False
            )
            if not exists:
                await driver.run(
                    [Execute(_sql.LOCK_CREATE, {"table": self.table}), Execute(_sql.create_table(self._target.parts))],
                    transaction=True,
                )
                return
        except psycopg.Error as exc:
            raise SinkError(f"cannot create table {self.table} of {self.uri!r}: {self._describe(exc)}") from None
        missing = [c for c in _sql.COLUMNS if c not in columns]
        if missing:
            raise SinkError(f"table {self.table} of {self.uri!r} has no column {', '.join(missing)}")
        if not unique_key:
            raise SinkError(f"table {self.table} of {self.uri!r} has no primary key or unique index on key")

    def _describe(self, exc: psycopg.Error) -> str:
        return self._target.scrub(str(exc)) or type(exc).__name__


async def _close_quietly(driver: Driver) -> None:
    with contextlib.suppress(psycopg.Error):
        await driver.close()
