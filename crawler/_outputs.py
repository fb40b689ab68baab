"""The outputs of a crawl: items and error records, each through a bounded channel to its sinks, in batches.

A slow sink fills its channel and so slows the workers that produce items: memory stays bounded.  A sink write
that fails is retried with exponential backoff; a sink that still fails stops the crawl cleanly, and the items of
the batch it could not take are written to the error log, so that none disappears silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from crawler._exceptions import SinkError
from crawler._items import ItemRecord
from crawler.sinks import Sink, SqliteSink

__all__ = ["Outputs", "default_error_sinks"]

SINK_ATTEMPTS = 5
SINK_BACKOFF = 0.5  # seconds, doubled after each failed attempt


class _Channel:
    def __init__(self, sinks: Sequence[Sink], size: int) -> None:
        self.sinks = list(sinks)
        self.send, self.receive = anyio.create_memory_object_stream[ItemRecord](size)


class Outputs:
    """Items go to ``sinks``, error records to ``error_sinks``, ``batch_size`` records per write at most.

    ``on_failure(reason)`` is called when a sink fails for good (the engine stops the crawl); ``log`` is a
    structlog logger.  Use :meth:`start` inside the crawl's task group and :meth:`close` to flush.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        error_sinks: Sequence[Sink],
        *,
        batch_size: int,
        log: Any,
        on_failure: Callable[[str], None],
    ) -> None:
        self._items = _Channel(sinks, batch_size)
        self._errors = _Channel(error_sinks, batch_size)
        self._batch_size = batch_size
        self._log = log
        self._on_failure = on_failure

    @property
    def all_sinks(self) -> list[Sink]:
        return [*self._items.sinks, *self._errors.sinks]

    async def open(self) -> None:
        """Open every sink; raises :class:`crawler.SinkError` naming the one that cannot be opened."""
        for sink in self.all_sinks:
            await sink.open()

    def start(self, tg: TaskGroup) -> None:
        """Start the two writer tasks in ``tg``."""
        tg.start_soon(self._write, self._items)
        tg.start_soon(self._write, self._errors)

    async def item(self, record: ItemRecord) -> None:
        """Queue an item; waits while the channel is full."""
        await self._items.send.send(record)

    async def error(self, record: ItemRecord) -> None:
        """Queue an error record; without error sinks it is only logged (the engine logs every failure)."""
        if self._errors.sinks:
            await self._errors.send.send(record)

    async def close(self) -> None:
        """Close the channels: the writers flush what is queued and end."""
        await self._items.send.aclose()
        await self._errors.send.aclose()

    async def close_sinks(self) -> None:
        for sink in self.all_sinks:
            try:
                await sink.close()
            except SinkError as exc:
                self._log.error("sink close failed", sink=sink.uri, error=str(exc))

    async def _write(self, channel: _Channel) -> None:
        receive: MemoryObjectReceiveStream[ItemRecord] = channel.receive
        async with receive:
            async for record in receive:
                batch = [record]
                while len(batch) < self._batch_size:
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self._write_batch(channel, batch)

    async def _write_batch(self, channel: _Channel, batch: list[ItemRecord]) -> None:
        for sink in channel.sinks:
            for attempt in range(SINK_ATTEMPTS):
                try:
                    await sink.write(batch)
                    break
                except SinkError as exc:
                    if attempt == SINK_ATTEMPTS - 1:
                        self._log.error(
                            "sink failed for good; its batch goes to this log", sink=sink.uri, error=str(exc)
                        )
                        for record in batch:
                            self._log.error("unwritten record", sink=sink.uri, key=record.key, item=record.item)
                        self._on_failure("sink failed")
                        return
                    self._log.warning("sink write failed, retrying", sink=sink.uri, error=str(exc), attempt=attempt + 1)
                    await anyio.sleep(SINK_BACKOFF * 2**attempt)


def default_error_sinks(sinks: Sequence[Sink]) -> list[Sink]:
    """Error sinks used when none are configured: the ``errors`` table of each SQLite item sink's database."""
    return [SqliteSink(f"sqlite:///{sink.path}?table=errors") for sink in sinks if isinstance(sink, SqliteSink)]
