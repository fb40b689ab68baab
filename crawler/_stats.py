"""Crawl statistics: counters kept by the engine, snapshotted for the progress display, the periodic summary and
the final summary (printed, and written as JSON with ``--stats-file``)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import structlog

__all__ = ["Stats", "current_stats", "report_invalid_url"]


class Stats:
    """Counters of one crawl.  ``inc(name)`` counts events (``pages``, ``items``, ``errors``, ``retries``,
    ``offsite``, ``robots_disallowed``, ``duplicates``, ...); ``response(status, size, host)`` counts a response
    and its bytes; ``snapshot()`` returns everything as JSON-compatible data.  Times are seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self.finished: float | None = None
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()

    def start(self) -> None:
        """Mark the start of the crawl (the elapsed time counts from here; creation marks it too)."""
        self.started = self._clock()
        self.bytes = 0
        self.reason = "finished"

    def inc(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount

    def response(self, status: int, size: int, host: str) -> None:
        self.statuses[status] += 1
        self.hosts[host] += 1
        self.bytes += size
        self.counts["responses"] += 1

    def error(self, kind: str) -> None:
        self.errors[kind] += 1
        self.counts["errors"] += 1

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else self._clock()
        return max(end - self.started, 1e-9)

    def finish(self, reason: str) -> None:
        self.finished = self._clock()
        self.reason = reason

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        elapsed = self.elapsed
        return {
            "reason": self.reason,
            "elapsed": round(elapsed, 3),
            "pages": self.counts["pages"],
            "responses": self.counts["responses"],
            "items": self.counts["items"],
            "bytes": self.bytes,
            "pages_per_second": round(self.counts["pages"] / elapsed, 2),
            "statuses": {str(k): n for k, n in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "counts": dict(sorted(self.counts.items())),
            "hosts": dict(self.hosts.most_common(50)),
            **extra,
        }

    def to_json(self, **extra: Any) -> str:
        return json.dumps(self.snapshot(**extra), indent=2, sort_keys=False)


#: The stats of the crawl running in this task (set by the engine for each worker and callback).
current_stats: ContextVar[Stats | None] = ContextVar("crawler_stats", default=None)


def report_invalid_url(exc: Exception, page: str) -> None:
    """Log a malformed link found on ``page`` and count it in the current crawl's stats."""
    stats = current_stats.get()
    if stats is not None:
        stats.error("InvalidURL")
    structlog.get_logger("crawler").warning("malformed link", link=getattr(exc, "url", str(exc)), page=page)
