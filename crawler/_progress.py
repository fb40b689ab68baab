"""Seeing a crawl work: a live display on a terminal, a one-line summary at intervals otherwise, and the final
summary."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import anyio
from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from crawler._engine import Engine

__all__ = ["report_progress", "summary_table"]


def _line(engine: Engine) -> dict[str, Any]:
    stats = engine.stats
    frontier = engine.frontier.statistics()
    return {
        "pages": stats.counts["pages"],
        "items": stats.counts["items"],
        "errors": stats.counts["errors"],
        "pages_per_second": round(stats.counts["pages"] / stats.elapsed, 1),
        "in_flight": engine.in_flight,
        "queued": frontier.queued,
    }


def _live_table(engine: Engine) -> Table:
    data = _line(engine)
    table = Table.grid(padding=(0, 2))
    for key in data:
        table.add_column(key.replace("_", " "), justify="right")
    table.add_row(*(f"[bold]{key.replace('_', ' ')}[/]" for key in data))
    table.add_row(*(str(value) for value in data.values()))
    return table


async def report_progress(engine: Engine, *, live: bool, interval: float) -> None:
    """Show progress until cancelled: a live table on stderr when ``live`` (a terminal), else one log line every
    ``interval`` seconds."""
    if live:
        console = Console(file=sys.stderr)
        with Live(_live_table(engine), console=console, refresh_per_second=4, transient=True) as display:
            while True:
                await anyio.sleep(0.25)
                display.update(_live_table(engine))
    while True:
        await anyio.sleep(interval)
        engine.log.info("progress", **_line(engine))


def summary_table(snapshot: dict[str, Any]) -> Table:
    """The end-of-crawl summary as a rich table."""
    table = Table(title=f"crawl {snapshot['reason']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("pages", snapshot["pages"]),
        ("items", snapshot["items"]),
        ("bytes", f"{snapshot['bytes']:,}"),
        ("elapsed", f"{snapshot['elapsed']:.2f} s"),
        ("pages/s", snapshot["pages_per_second"]),
        ("statuses", ", ".join(f"{k}: {v}" for k, v in snapshot["statuses"].items()) or "-"),
        ("errors", ", ".join(f"{k}: {v}" for k, v in snapshot["errors"].items()) or "0"),
    ]
    for key in ("retries", "redirects", "duplicates", "offsite", "robots_disallowed", "skipped_assets"):
        if snapshot["counts"].get(key):
            rows.append((key.replace("_", " "), snapshot["counts"][key]))
    cache = {key[6:]: n for key, n in snapshot["counts"].items() if key.startswith("cache_")}
    if cache:  # the HTTP cache (--cache) was on
        rows.append(
            (
                "http cache",
                f"{cache.get('hits', 0)} hits, {cache.get('revalidated', 0)} 304s, {cache.get('misses', 0)} misses; "
                f"saved {cache.get('bytes_saved', 0):,} B",
            )
        )
    for name, value in rows:
        table.add_row(name, str(value))
    return table
