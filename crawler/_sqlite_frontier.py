"""The SQLite frontier: the per-host queues, the seen fingerprints, the delayed requests and the leases of one
machine's crawl, in one SQLite database (WAL), so that a crawl resumes after Ctrl-C or ``kill -9``.

Every queued or leased request is a row of ``requests``; a row is deleted only when :meth:`SqliteFrontier.finish`
ends its lease, which the engine calls once the request's items are written and its new requests added.  A
crash therefore loses nothing: on the next :meth:`~SqliteFrontier.open`, the rows leased by the dead process are
queued again and fetched once more, and keyed sinks overwrite the items they had produced.

Writes are committed when a lease ends (and every :data:`COMMIT_EVERY` changes): SQLite commits in order, so a
committed ``finish`` implies the committed adds of the requests it produced.  Memory stays bounded: each host
keeps at most :data:`BUFFER` requests in memory, the rest (and the seen set) stay on disk.

The database is used from the event loop's thread: its statements take microseconds (WAL, ``synchronous =
NORMAL``: a commit survives a crash of the process, not of the machine), less than a hop to a worker thread.
"""

from __future__ import annotations

import fcntl
import heapq
import json
import os
import random
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import structlog

from crawler._exceptions import FrontierError
from crawler._frontier import HostQueue, HostScheduler
from crawler._politeness import Politeness
from crawler._request import Request, request_from_dict, request_to_dict

__all__ = ["SqliteFrontier"]

#: Requests of one host held in memory at most; the others wait on disk.
BUFFER = 32
#: Uncommitted changes at most before a commit that no lease's end triggered (a long ``start()``, say).
COMMIT_EVERY = 2000
SCHEMA_VERSION = "1"

_ON_DISK, _IN_MEMORY, _DELAYED = 0, 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    priority INTEGER NOT NULL,
    not_before REAL,
    state INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_host ON requests (host, state, priority DESC, id);
CREATE TABLE IF NOT EXISTS seen (fingerprint BLOB PRIMARY KEY) WITHOUT ROWID;
"""

log = structlog.get_logger("crawler.frontier")


def _path_of(uri: str) -> str:
    if uri.startswith("sqlite://"):
        path = uri[len("sqlite://") :].split("?", 1)[0]
        return path[1:] if path.startswith("/") else path  # sqlite:///rel.db, sqlite:////abs.db
    return uri


class SqliteFrontier(HostScheduler):
    """A persistent frontier in the SQLite database at ``uri`` (``sqlite:///PATH.db``, ``sqlite:////ABS.db`` or a
    plain path), created with its directory if missing.  One process at a time: a second one is refused.

    Raises :class:`crawler.FrontierError` from :meth:`open` when the database cannot be opened, is not a frontier,
    or is in use by another crawl; and from :meth:`add` for a request that cannot be stored as JSON.
    """

    def __init__(self, uri: str, politeness: Politeness | None = None, *, rng: random.Random | None = None) -> None:
        super().__init__(politeness, rng=rng)
        self.uri = uri
        self.path = _path_of(uri)
        if not self.path:
            raise FrontierError(f"no database path in frontier {uri!r}; use sqlite:///frontier.db")
        self._db: sqlite3.Connection | None = None
        self._lock: IO[str] | None = None
        self._leases: dict[int, tuple[int, Request]] = {}  # id(request) -> (row id, request)
        self._seen = 0
        self._pending = 0  # uncommitted changes

    # -- life cycle ---------------------------------------------------------------------------------------------
    async def open(self) -> None:
        self._open()

    def _open(self) -> None:
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = open(f"{path}.lock", "a+", encoding="utf-8")  # noqa: SIM115 - held until _close()
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._lock.close()
                self._lock = None
                raise FrontierError(f"frontier {self.uri!r} is in use by another crawl") from None
            self._lock.seek(0)
            self._lock.truncate()
            self._lock.write(f"{os.getpid()}\n")
            self._lock.flush()
            db = self._db = sqlite3.connect(path, isolation_level="DEFERRED")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if version is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif version[0] != SCHEMA_VERSION:
                raise FrontierError(
                    f"frontier {self.uri!r} has schema {version[0]}, this crawler reads {SCHEMA_VERSION}"
                )
            # the leases and buffers of a previous run (stopped or killed) go back to their queues
            db.execute("UPDATE requests SET state = ? WHERE state = ?", (_ON_DISK, _IN_MEMORY))
            db.commit()
        except (OSError, sqlite3.Error) as exc:
            self._close()
            raise FrontierError(f"cannot open frontier {self.uri!r}: {exc}") from None
        except FrontierError:
            self._close()
            raise
        self._db = db
        for host, count in db.execute("SELECT host, count(*) FROM requests WHERE state = ? GROUP BY host", (_ON_DISK,)):
            queue = self._queue(host)
            queue.stored = count
            self._queued += count
            self._schedule(queue)
        for row_id, host, not_before in db.execute(
            "SELECT id, host, not_before FROM requests WHERE state = ?", (_DELAYED,)
        ):
            self._delay(not_before, (row_id, host))
            self._queued += 1
        self._seen = db.execute("SELECT count(*) FROM seen").fetchone()[0]
        if self._queued:
            log.info("frontier resumed", frontier=self.uri, queued=self._queued, seen=self._seen)

    async def close(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            try:
                db.commit()
            finally:
                db.close()
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.close()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise FrontierError(f"frontier {self.uri!r} is not open")
        return self._db

    def _changed(self, count: int = 1) -> None:
        self._pending += count
        if self._pending >= COMMIT_EVERY:
            self._commit()

    def _commit(self) -> None:
        try:
            self._conn().commit()
        except sqlite3.Error as exc:
            raise FrontierError(f"cannot write frontier {self.uri!r}: {exc}") from None
        self._pending = 0

    # -- adding -----------------------------------------------------------------------------------------------
    async def add(self, requests: Iterable[Request]) -> int:
        db = self._conn()
        added = 0
        try:
            for request in requests:
                data = self._encode(request)
                if not request.dont_filter:
                    if (
                        db.execute(
                            "INSERT OR IGNORE INTO seen VALUES (?)", (bytes.fromhex(request.fingerprint),)
                        ).rowcount
                        == 0
                    ):
                        continue
                    self._seen += 1
                self._insert(db, request, data)
                added += 1
        except sqlite3.Error as exc:
            raise FrontierError(f"cannot write frontier {self.uri!r}: {exc}") from None
        if added:
            self._changed(added)
        return added

    def _encode(self, request: Request) -> str:
        try:
            return json.dumps(request_to_dict(request), separators=(",", ":"))  # ASCII: lone surrogates escaped
        except TypeError as exc:
            raise FrontierError(str(exc)) from None

    def _insert(self, db: sqlite3.Connection, request: Request, data: str) -> None:
        """Store a request (a new one, or a retry) and queue it in memory."""
        host = request.host
        if request.not_before is not None:
            row = db.execute(
                "INSERT INTO requests (host, priority, not_before, state, data) VALUES (?, ?, ?, ?, ?)",
                (host, request.priority, request.not_before, _DELAYED, data),
            ).lastrowid
            self._queued += 1
            self._delay(request.not_before, (row, host))
            return
        queue = self._queue(host)
        in_memory = queue.stored == 0 and len(queue.heap) < BUFFER
        row = db.execute(
            "INSERT INTO requests (host, priority, not_before, state, data) VALUES (?, ?, NULL, ?, ?)",
            (host, request.priority, _IN_MEMORY if in_memory else _ON_DISK, data),
        ).lastrowid
        assert row is not None
        self._queued += 1
        if in_memory:
            heapq.heappush(queue.heap, (-request.priority, row, request))
        else:
            queue.stored += 1
        self._schedule(queue)

    def _undelay(self, payload: Any) -> None:
        row, host = payload
        self._conn().execute("UPDATE requests SET state = ?, not_before = NULL WHERE id = ?", (_ON_DISK, row))
        self._changed()
        queue = self._queue(host)
        queue.stored += 1
        self._schedule(queue)

    # -- claiming ---------------------------------------------------------------------------------------------
    def _take(self, queue: HostQueue) -> Request | None:
        if not queue.heap:
            self._refill(queue)
        if not queue.heap:
            return None
        _, row, request = heapq.heappop(queue.heap)
        self._leases[id(request)] = (row, request)
        return request

    def _refill(self, queue: HostQueue) -> None:
        db = self._conn()
        rows = db.execute(
            "SELECT id, priority, data FROM requests WHERE host = ? AND state = ? ORDER BY priority DESC, id LIMIT ?",
            (queue.host, _ON_DISK, BUFFER),
        ).fetchall()
        if not rows:  # the count drifted from the table: trust the table
            self._queued -= queue.stored
            queue.stored = 0
            return
        db.executemany("UPDATE requests SET state = ? WHERE id = ?", [(_IN_MEMORY, row[0]) for row in rows])
        self._changed(len(rows))
        queue.stored -= len(rows)
        for row, priority, data in rows:
            try:
                request = request_from_dict(json.loads(data))
            except Exception as exc:  # any stored row that no longer makes a Request must not stop a resume
                log.error("unreadable request dropped from the frontier", frontier=self.uri, row=row, error=str(exc))
                db.execute("DELETE FROM requests WHERE id = ?", (row,))
                self._queued -= 1
                continue
            heapq.heappush(queue.heap, (-priority, row, request))

    async def finish(self, request: Request, retry: Request | None = None) -> None:
        data = self._encode(retry) if retry is not None else None  # may raise: the lease then stays as it was
        row, _ = self._leases.pop(id(request))
        db = self._conn()
        try:
            if retry is not None and data is not None:
                self._insert(db, retry, data)
            db.execute("DELETE FROM requests WHERE id = ?", (row,))
        except sqlite3.Error as exc:
            raise FrontierError(f"cannot write frontier {self.uri!r}: {exc}") from None
        self._leased -= 1
        self._commit()

    def _seen_count(self) -> int:
        return self._seen
