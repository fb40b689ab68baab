"""The sink seam and sink lookup by URI."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Protocol
from urllib.parse import urlsplit

from crawler._exceptions import SinkError
from crawler._items import ItemRecord

__all__ = ["Sink", "open_sink", "sink_schemes"]


class Sink(Protocol):
    """Where items go.  ``open`` before the first write; ``write`` receives batches of :class:`ItemRecord` in
    order; ``close`` flushes.  Errors are raised as :class:`crawler.SinkError` naming the sink."""

    uri: str

    async def open(self) -> None: ...

    async def write(self, batch: Sequence[ItemRecord]) -> None: ...

    async def close(self) -> None: ...


SinkFactory = Callable[[str], Sink]


def _builtin(uri: str) -> SinkFactory | None:
    from crawler.sinks._csv import CsvSink
    from crawler.sinks._jsonl import JsonLinesSink
    from crawler.sinks._sqlite import SqliteSink

    if uri == "-" or uri.startswith("stdout:"):
        return JsonLinesSink
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme == "sqlite":
        return SqliteSink
    if scheme in ("jsonl", "file", ""):
        path = uri.split("://", 1)[-1].lower().split("?", 1)[0]
        if path.endswith(".csv"):
            return CsvSink
        if path.endswith((".db", ".sqlite", ".sqlite3")):
            return SqliteSink
        if path.endswith((".jsonl", ".jl", ".ndjson", ".json")) or scheme == "jsonl":
            return JsonLinesSink
        return None
    if scheme == "csv":
        return CsvSink
    return None


def sink_schemes() -> dict[str, str]:
    """The URI schemes plugins registered under the ``crawler.sinks`` entry-point group, with their targets."""
    return {ep.name: ep.value for ep in entry_points(group="crawler.sinks")}


def open_sink(uri: str) -> Sink:
    """Make the sink for ``uri`` (not yet opened).

    ``-`` is JSON Lines on stdout; ``PATH.jsonl`` (or ``.jl``, ``.ndjson``) JSON Lines; ``PATH.csv`` CSV;
    ``sqlite:///PATH`` or ``PATH.db`` SQLite; any other ``scheme://`` is looked up in the ``crawler.sinks``
    entry points (``postgresql://`` with the PostgreSQL plugin).  Raises :class:`crawler.SinkError` for an
    output nothing handles, naming the URI and the schemes known.
    """
    factory = _builtin(uri)
    if factory is None and "://" in uri:
        scheme = urlsplit(uri).scheme.lower()
        for ep in entry_points(group="crawler.sinks"):
            if ep.name == scheme:
                factory = ep.load()
                break
    if factory is None:
        known = ", ".join(["-", "*.jsonl", "*.csv", "sqlite:///*.db", *(f"{s}://" for s in sink_schemes())])
        raise SinkError(f"no sink handles output {uri!r}; known: {known}")
    return factory(uri)
