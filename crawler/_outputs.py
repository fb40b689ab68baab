"""The outputs of a crawl: items and error records, each through a bounded channel to its sinks, in batches.

A slow sink fills its channel and so slows the workers that produce items: memory stays bounded.  A sink write
that fails is retried with exponential backoff; a sink that still fails stops the crawl cleanly, and the items of
the batch it could not take are written to the error log, so that none disappears silently; their requests stay
leased in the frontier, so a persistent frontier fetches them again when the crawl resumes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from crawler._exceptions import SinkError
from crawler._items import ItemRecord
from crawler.sinks import Sink, SqliteSink

__all__ = ["Outputs", "default_error_sinks"]

SINK_BACKOFF = 0.5  # seconds before the first retry of a failed write, doubled after each attempt
SINK_BACKOFF_CAP = 10.0  # seconds between attempts at most


Checkpoint = Callable[[], Awaitable[None]]


@attrs.frozen
class _Error:
    record: ItemRecord


@attrs.frozen
class _Checkpoint:
    callback: Checkpoint


_Entry = ItemRecord | _Error | _Checkpoint


class Outputs:
    """Items go to ``sinks``, error records to ``error_sinks``, ``batch_size`` entries per write at most.

    A write that fails is retried with capped exponential backoff for ``retry_for`` seconds (the crawl waits: the
    channel fills and the workers block), then the sink has failed for good.
    Items, error records and checkpoints share one bounded channel, in order: a checkpoint's callback runs once
    every record queued before it is written (the engine ends a request's lease there, so a crash never loses
    an item whose request was marked done).  ``on_failure(reason)`` is called when a sink fails for good (the
    engine stops the crawl); ``log`` is a structlog logger.  Use :meth:`start` inside the crawl's task group and
    :meth:`close` to flush.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        error_sinks: Sequence[Sink],
        *,
        batch_size: int,
        log: Any,
        on_failure: Callable[[str], None],
        retry_for: float = 60.0,
    ) -> None:
        self.sinks = list(sinks)
        self.error_sinks = list(error_sinks)
        self._send, self._receive = anyio.create_memory_object_stream[_Entry](batch_size)
        self._batch_size = batch_size
        self._log = log
        self._on_failure = on_failure
        self._failed = False
        self._retry_for = retry_for

    @property
    def all_sinks(self) -> list[Sink]:
        return [*self.sinks, *self.error_sinks]

    async def open(self) -> None:
        """Open every sink; raises :class:`crawler.SinkError` naming the one that cannot be opened."""
        for sink in self.all_sinks:
            await sink.open()

    def start(self, tg: TaskGroup) -> None:
        """Start the writer task in ``tg``."""
        tg.start_soon(self._write)

    async def item(self, record: ItemRecord) -> None:
        """Queue an item; waits while the channel is full."""
        await self._send.send(record)

    async def error(self, record: ItemRecord) -> None:
        """Queue an error record; without error sinks it is only logged (the engine logs every failure)."""
        if self.error_sinks:
            await self._send.send(_Error(record))

    async def checkpoint(self, callback: Checkpoint) -> None:
        """Run ``callback`` once everything queued before it has been written.  If a sink fails for good, the
        callbacks of the records it could not take never run."""
        await self._send.send(_Checkpoint(callback))

    async def close(self) -> None:
        """Close the channel: the writer flushes what is queued and ends."""
        await self._send.aclose()

    async def close_sinks(self) -> None:
        for sink in self.all_sinks:
            try:
                await sink.close()
            except SinkError as exc:
                self._log.error("sink close failed", sink=sink.uri, error=str(exc))

    async def _write(self) -> None:
        receive: MemoryObjectReceiveStream[_Entry] = self._receive
        async with receive:
            async for entry in receive:
                batch = [entry]
                while len(batch) < self._batch_size:
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                items = [e for e in batch if isinstance(e, ItemRecord)]
                errors = [e.record for e in batch if isinstance(e, _Error)]
                written = await self._write_batch(self.sinks, items)
                if written:
                    written = await self._write_batch(self.error_sinks, errors)
                elif errors:
                    self._log_unwritten("(errors of a failed batch)", errors)
                if written and not self._failed:
                    for e in batch:
                        if isinstance(e, _Checkpoint):
                            await e.callback()

    async def _write_batch(self, sinks: list[Sink], batch: list[ItemRecord]) -> bool:
        if not batch:
            return True
        if self._failed:  # the crawl is stopping: keep the records in the log, and their requests leased
            self._log_unwritten("(stopped)", batch)
            return False
        for sink in sinks:
            give_up_at = anyio.current_time() + self._retry_for
            attempt = 0
            while True:
                try:
                    await sink.write(batch)
                    break
                except SinkError as exc:
                    wait = min(SINK_BACKOFF * 2**attempt, SINK_BACKOFF_CAP)
                    attempt += 1
                    if anyio.current_time() + wait > give_up_at:
                        self._log.error(
                            "sink failed for good; its batch goes to this log", sink=sink.uri, error=str(exc)
                        )
                        self._log_unwritten(sink.uri, batch)
                        self._failed = True
                        self._on_failure("sink failed")
                        return False
                    self._log.warning("sink write failed, retrying", sink=sink.uri, error=str(exc), attempt=attempt)
                    await anyio.sleep(wait)
        return True

    def _log_unwritten(self, sink: str, batch: list[ItemRecord]) -> None:
        for record in batch:
            self._log.error("unwritten record", sink=sink, key=record.key, item=record.item)


def default_error_sinks(sinks: Sequence[Sink]) -> list[Sink]:
    """Error sinks used when none are configured: for each item sink that offers one (an ``error_sink()``
    method, as plugin sinks may have), that sink; for each SQLite item sink, the ``errors`` table of its
    database."""
    found: list[Sink] = []
    for sink in sinks:
        if isinstance(sink, SqliteSink):
            found.append(SqliteSink(f"sqlite:///{sink.path}?table=errors"))
        elif callable(make := getattr(sink, "error_sink", None)):
            found.append(make())
    return found
