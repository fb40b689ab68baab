"""The Redis stream sink: each item appended to a Redis stream (XADD), one pipeline per batch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import structlog

from crawler import ItemRecord, SinkError
from crawler_redis._connection import RedisConnection, redact_uri

__all__ = ["RedisStreamSink"]

DEFAULT_STREAM = "crawler:items"


class RedisStreamSink:
    """Appends every item to a Redis stream, as the entry ``{key, spider, url, fetched_at, item}``: ``item`` is
    the item as JSON, ``fetched_at`` seconds since the epoch.

    ``uri``: ``redis://[:PASSWORD@]HOST:PORT/DB?stream=NAME&maxlen=N`` (``rediss://`` for TLS); ``stream``
    defaults to ``crawler:items``; ``maxlen`` caps the stream's length with approximate trimming (``MAXLEN ~
    N``, so Redis trims whole nodes: a little more than N entries may stay).  Other query parameters go to
    redis-py.  :meth:`error_sink` writes error records to the stream ``NAME:errors``.

    A stream is append-only: a request fetched twice (a worker died, a lease expired, a crawl resumed) appends
    its items twice, so consumers dedupe on the ``key`` field, the item's stable identity.

    Raises :class:`crawler.SinkError` naming the URI (password redacted) for a bad URI, a server that cannot be
    reached on :meth:`open` (tried for ``connect_timeout`` seconds), or a failed write (the engine retries it).
    """

    def __init__(self, uri: str, *, connect_timeout: float = 5.0) -> None:
        self.uri = uri
        self.connect_timeout = connect_timeout
        display = redact_uri(uri)
        try:
            parts = urlsplit(uri)
            query = parse_qsl(parts.query, keep_blank_values=True)
        except ValueError as exc:
            raise SinkError(f"invalid output {display}: {exc}") from None
        params = dict(query)
        self.stream = params.get("stream") or DEFAULT_STREAM
        self.maxlen: int | None = None
        if params.get("maxlen"):
            try:
                self.maxlen = int(params["maxlen"])
            except ValueError:
                self.maxlen = 0
            if self.maxlen <= 0:
                raise SinkError(f"maxlen must be a positive integer in output {display}")
        client_uri = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k not in _OWN_PARAMS])))
        self._conn = RedisConnection(client_uri, what="sink", log=structlog.get_logger("crawler.sink"))
        self._display = display

    def error_sink(self) -> RedisStreamSink:
        """A sink on the same server writing to the stream ``NAME:errors`` (the engine's error records)."""
        parts = urlsplit(self.uri)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "stream"]
        query.append(("stream", f"{self.stream}:errors"))
        return RedisStreamSink(urlunsplit(parts._replace(query=urlencode(query))), connect_timeout=self.connect_timeout)

    async def open(self) -> None:
        try:
            self._conn.connect()
        except ValueError as exc:
            raise SinkError(f"cannot use output {self._display}: {exc}") from None
        try:
            await self._conn.call(lambda client: client.ping(), give_up_after=self.connect_timeout)
        except redis.RedisError as exc:
            await self._conn.close()
            raise SinkError(f"cannot open output {self._display}: {type(exc).__name__}: {exc}") from None

    async def write(self, batch: Sequence[ItemRecord]) -> None:
        try:
            entries = [
                {
                    "key": _utf8(record.key),
                    "spider": _utf8(record.spider),
                    "url": _utf8(record.url),
                    "fetched_at": repr(record.fetched_at),
                    "item": _item_json(record.item),
                }
                for record in batch
            ]
        except (TypeError, ValueError) as exc:  # non-string keys, a circular item
            raise SinkError(f"cannot write to {self._display}: an item is not JSON: {exc}") from None
        stream, maxlen = self.stream, self.maxlen

        def send(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for fields in entries:
                pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)
            return pipe.execute()

        try:
            await self._conn.run(send)
        except redis.RedisError as exc:
            raise SinkError(f"cannot write to {self._display}: {type(exc).__name__}: {exc}") from None
        except RuntimeError as exc:  # not open
            raise SinkError(f"cannot write to {self._display}: {exc}") from None

    async def close(self) -> None:
        await self._conn.close()


_OWN_PARAMS = frozenset({"stream", "maxlen"})


def _utf8(text: str) -> str:
    """``text``, with lone surrogates (which UTF-8 cannot encode) written as ``\\udXXX`` escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _item_json(item: dict[str, Any]) -> str:
    """The item as JSON, non-ASCII characters kept, unless a lone surrogate forces ASCII escapes."""
    text = json.dumps(item, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(item, default=str)
    return text
