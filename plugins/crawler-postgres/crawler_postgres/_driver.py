"""How the sink's statements reach PostgreSQL, on either event loop.

psycopg's :class:`~psycopg.AsyncConnection` works on asyncio only, so :class:`AsyncDriver` uses it there, and
:class:`ThreadDriver` drives a blocking :class:`~psycopg.Connection` from a worker thread (one at a time, through
a ``CapacityLimiter(1)``) everywhere else (trio).  Both run the same :data:`Step` lists, so the SQL has one code
path; both raise :class:`psycopg.Error` as it comes, which the sink turns into :class:`crawler.SinkError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import anyio
import anyio.to_thread
import attrs
import psycopg
import sniffio
from psycopg import pq, sql

__all__ = ["AsyncDriver", "Copy", "Driver", "Execute", "Step", "ThreadDriver", "new_driver"]

Params = Sequence[Any] | Mapping[str, Any] | None
Result = list[tuple[Any, ...]]


@attrs.frozen
class Execute:
    """Run ``query`` with ``params``; a query returning rows makes them the result of the step list."""

    query: sql.SQL | sql.Composed
    params: Params = None


@attrs.frozen
class Copy:
    """``COPY ... FROM STDIN`` with ``query``, sending ``rows`` (sequences of Python values, one per column)."""

    query: sql.SQL | sql.Composed
    rows: Sequence[Sequence[Any]]


Step = Execute | Copy


class Driver(Protocol):
    """One connection, opened with :meth:`connect`, reopened after a loss (:attr:`connected` turns False)."""

    @property
    def connected(self) -> bool:
        """A connection is open, not broken, and idle (not inside a transaction)."""
        ...

    async def connect(self, conninfo: str, setup: Sequence[Step]) -> None:
        """Open a connection (autocommit) with the libpq ``conninfo``, then run ``setup``; raises psycopg.Error,
        leaving none open."""
        ...

    async def run(self, steps: Sequence[Step], *, transaction: bool) -> Result:
        """Run ``steps``, in one transaction if ``transaction``; returns the rows of the last step that had any."""
        ...

    async def discard_if_unusable(self) -> None:
        """Close the connection, without raising, unless it is :attr:`connected`."""
        ...

    async def close(self) -> None:
        """Close the connection; raises psycopg.Error."""
        ...


def new_driver() -> Driver:
    """The driver for the running event loop: :class:`AsyncDriver` on asyncio, :class:`ThreadDriver` elsewhere."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = ""
    return AsyncDriver() if library == "asyncio" else ThreadDriver()


def _usable(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any] | None) -> bool:
    return (
        conn is not None
        and not conn.closed
        and not conn.broken
        and conn.info.transaction_status == pq.TransactionStatus.IDLE
    )


def _run(conn: psycopg.Connection[Any], steps: Sequence[Step], transaction: bool) -> Result:
    result: Result = []
    with conn.transaction() if transaction else contextlib.nullcontext(), conn.cursor() as cur:
        for step in steps:
            if isinstance(step, Copy):
                with cur.copy(step.query) as copy:
                    for row in step.rows:
                        copy.write_row(row)
            else:
                cur.execute(step.query, step.params)
                if cur.description is not None:
                    result = cur.fetchall()
    return result


async def _run_async(conn: psycopg.AsyncConnection[Any], steps: Sequence[Step], transaction: bool) -> Result:
    result: Result = []
    async with conn.transaction() if transaction else contextlib.nullcontext(), conn.cursor() as cur:
        for step in steps:
            if isinstance(step, Copy):
                async with cur.copy(step.query) as copy:
                    for row in step.rows:
                        await copy.write_row(row)
            else:
                await cur.execute(step.query, step.params)
                if cur.description is not None:
                    result = await cur.fetchall()
    return result


class AsyncDriver:
    """:class:`Driver` on :class:`psycopg.AsyncConnection` (asyncio only)."""

    def __init__(self) -> None:
        self._conn: psycopg.AsyncConnection[Any] | None = None

    @property
    def connected(self) -> bool:
        return _usable(self._conn)

    async def connect(self, conninfo: str, setup: Sequence[Step]) -> None:
        await self.discard_if_unusable()
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        try:
            await _run_async(conn, setup, transaction=False)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.close()
            raise
        self._conn = conn

    async def run(self, steps: Sequence[Step], *, transaction: bool) -> Result:
        if self._conn is None:
            raise psycopg.OperationalError("the connection is closed")
        return await _run_async(self._conn, steps, transaction)

    async def discard_if_unusable(self) -> None:
        if self._conn is not None and not self.connected:
            conn, self._conn = self._conn, None
            with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error):
                await conn.close()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()


class ThreadDriver:
    """:class:`Driver` on a blocking :class:`psycopg.Connection` used from worker threads, one call at a time."""

    def __init__(self) -> None:
        self._conn: psycopg.Connection[Any] | None = None
        self._limiter = anyio.CapacityLimiter(1)

    @property
    def connected(self) -> bool:
        return _usable(self._conn)

    async def connect(self, conninfo: str, setup: Sequence[Step]) -> None:
        await self.discard_if_unusable()

        def connect() -> psycopg.Connection[Any]:
            conn = psycopg.Connection.connect(conninfo, autocommit=True)
            try:
                _run(conn, setup, transaction=False)
            except BaseException:
                conn.close()
                raise
            return conn

        self._conn = await anyio.to_thread.run_sync(connect, limiter=self._limiter)

    async def run(self, steps: Sequence[Step], *, transaction: bool) -> Result:
        if self._conn is None:
            raise psycopg.OperationalError("the connection is closed")
        return await anyio.to_thread.run_sync(_run, self._conn, steps, transaction, limiter=self._limiter)

    async def discard_if_unusable(self) -> None:
        if self._conn is not None and not self.connected:
            conn, self._conn = self._conn, None
            with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error):
                await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)
