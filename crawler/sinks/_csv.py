"""CSV sink (RFC 4180): one row per item, one column per field; nested values as JSON."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from typing import Any

import anyio.to_thread

from crawler._exceptions import SinkError
from crawler._items import ItemRecord

__all__ = ["CsvSink"]


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


class CsvSink:
    """Writes items to a CSV file with a header row.  The columns are the fields in the order first seen; when a
    later item brings a new field, the file is rewritten with the wider header, so no field is lost."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.path = uri.removeprefix("csv://").removeprefix("file://")
        self._fields: list[str] = []
        self._rows = 0

    async def open(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._truncate)
        except OSError as exc:
            raise SinkError(f"cannot open output {self.uri!r}: {exc.strerror}") from None

    def _truncate(self) -> None:
        with open(self.path, "w", encoding="utf-8", newline=""):
            pass

    def _write(self, rows: list[dict[str, Any]]) -> None:
        new = [k for row in rows for k in row if k not in self._fields]
        if new:
            for key in new:
                if key not in self._fields:
                    self._fields.append(key)
            self._rewrite()
        with open(self.path, "a", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self._fields)
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        self._rows += len(rows)

    def _rewrite(self) -> None:
        old: list[dict[str, str]] = []
        if self._rows:
            with open(self.path, encoding="utf-8", newline="") as handle:
                old = list(csv.DictReader(handle))
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self._fields)
            writer.writeheader()
            writer.writerows(old)
        os.replace(tmp, self.path)

    async def write(self, batch: Sequence[ItemRecord]) -> None:
        try:
            await anyio.to_thread.run_sync(self._write, [r.item for r in batch])
        except OSError as exc:
            raise SinkError(f"cannot write to {self.uri!r}: {exc.strerror}") from None

    async def close(self) -> None:
        return None
