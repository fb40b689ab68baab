"""JSON Lines sink: one JSON object per line (https://jsonlines.org), to a file or stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import IO

import anyio.to_thread

from crawler._exceptions import SinkError
from crawler._items import ItemRecord

__all__ = ["JsonLinesSink"]


#: Batches up to this many characters are written from the event loop's thread; larger ones from a worker thread.
INLINE_WRITE = 64 * 1024


def _default(value: object) -> str:
    return str(value)


class JsonLinesSink:
    """Writes each item as one line of JSON (non-JSON values as their ``str``).  ``uri`` is a path, or ``-`` for
    stdout.  The file is opened for appending, so a resumed crawl adds to it."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.path = (
            None if uri == "-" or uri.startswith("stdout:") else uri.removeprefix("jsonl://").removeprefix("file://")
        )
        self._file: IO[str] | None = None

    async def open(self) -> None:
        if self.path is None:
            self._file = sys.stdout
            return
        try:
            self._file = await anyio.to_thread.run_sync(self._open_file, self.path)
        except OSError as exc:
            raise SinkError(f"cannot open output {self.uri!r}: {exc.strerror}") from None

    @staticmethod
    def _open_file(path: str) -> IO[str]:
        return open(path, "a", encoding="utf-8")

    def _write(self, lines: str) -> None:
        assert self._file is not None
        self._file.write(lines)
        self._file.flush()

    async def write(self, batch: Sequence[ItemRecord]) -> None:
        lines = "".join(json.dumps(r.item, ensure_ascii=False, default=_default) + "\n" for r in batch)
        try:
            if self.path is None or len(lines) <= INLINE_WRITE:
                self._write(lines)  # a small write to the page cache costs less than a trip to a thread
            else:
                await anyio.to_thread.run_sync(self._write, lines)
        except OSError as exc:
            raise SinkError(f"cannot write to {self.uri!r}: {exc.strerror}") from None

    async def close(self) -> None:
        if self._file is not None and self.path is not None:
            self._file.close()
        self._file = None
