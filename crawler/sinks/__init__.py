"""Sinks: where items go.  Built in: JSON Lines, CSV, SQLite (the embedded default) and stdout; more come from
plugins through the ``crawler.sinks`` entry-point group (a URI scheme names the sink class)."""

from crawler.sinks._base import Sink, open_sink, sink_schemes
from crawler.sinks._csv import CsvSink
from crawler.sinks._jsonl import JsonLinesSink
from crawler.sinks._sqlite import SqliteSink

__all__ = ["CsvSink", "JsonLinesSink", "Sink", "SqliteSink", "open_sink", "sink_schemes"]
