"""``crawler bench``: sweep concurrency settings against a target, measure each point, recommend one.

::

    --concurrency x --per-host x --backend x --transport ──► one PointSpec per point
        ──► run_point() in a fresh process, one at a time (crawler._bench_target) ──► PointResult
    results ──► recommend() (pure) ──► table on stdout, --csv, --json, --chart

The grid parsers and :func:`recommend` are pure; the built-in target is served by this process while the
points run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import attrs
import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from crawler._adaptive import parse_rate
from crawler._bench_target import (
    COLUMNS,
    TRANSPORTS,
    LocalTarget,
    PointResult,
    PointSpec,
    failed_point,
    make_spider,
    point_settings,
    run_point,
)
from crawler._exceptions import CrawlerError, SettingsError, SpiderLoadError
from crawler.testing import RateLimit

__all__ = [
    "BACKENDS",
    "Point",
    "PointResult",
    "Recommendation",
    "bench",
    "parse_int_grid",
    "parse_name_grid",
    "recommend",
]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: Event loops a point can run on.
BACKENDS = ("asyncio", "trio")
#: Throughput within this fraction of the best counts as "as good": the smallest such concurrency is recommended.
FLAT_TOLERANCE = 0.05
_GRACE = 5.0  # seconds the requests in flight get after --duration
_INSTALL_HINT = 'pip install "crawler[bench]"'


# -- the grid ----------------------------------------------------------------------------------------------------------
def parse_int_grid(text: str) -> tuple[int, ...]:
    """``"8,32, 64"`` -> ``(8, 32, 64)``: positive whole numbers, duplicates dropped, order kept.  Raises
    ValueError naming the first value that is not one."""
    values: list[int] = []
    for part in text.split(","):
        word = part.strip()
        if not word.isascii() or not word.isdigit() or int(word) < 1:
            raise ValueError(f"{word!r} is not a positive whole number (give a list such as 8,32,64)")
        if int(word) not in values:
            values.append(int(word))
    return tuple(values)


def parse_name_grid(text: str, known: Iterable[str], what: str) -> tuple[str, ...]:
    """``"trio, asyncio"`` -> ``("trio", "asyncio")``, each one of ``known`` (case-insensitive), duplicates
    dropped.  Raises ValueError naming the unknown value and the known ones."""
    names = tuple(known)
    values: list[str] = []
    for part in text.split(","):
        word = part.strip().lower()
        if word not in names:
            raise ValueError(f"{word!r} is not a {what} (known: {', '.join(names)})")
        if word not in values:
            values.append(word)
    return tuple(values)


def _grid_option(parse: Callable[[str], tuple[Any, ...]]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[Any, ...] | None:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return callback


def _rate_option(ctx: click.Context, param: click.Parameter, value: str | None) -> RateLimit | None:
    if value is None:
        return None
    try:
        quota, window = parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return RateLimit(quota=quota, window=window, dialect="ietf")


@attrs.frozen(kw_only=True)
class Point:
    """One setting of the sweep.  ``per_host`` and ``backend`` None: the crawl's own setting."""

    concurrency: int
    per_host: int | None = None
    backend: str | None = None
    transport: str = "auto"


def expand_grid(
    concurrency: Sequence[int],
    per_host: Sequence[int | None],
    backend: Sequence[str | None],
    transport: Sequence[str],
) -> list[Point]:
    """The cartesian product, concurrency varying fastest."""
    return [
        Point(concurrency=c, per_host=p, backend=b, transport=t)
        for t in transport
        for b in backend
        for p in per_host
        for c in concurrency
    ]


# -- the recommendation ------------------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class Recommendation:
    """The recommended ``point`` (None when no point was measured), whether it is ``within_budget``, and the
    ``reason`` in a few sentences."""

    point: PointResult | None
    within_budget: bool
    reason: str


def _percent(rate: float) -> str:
    """A fraction as a percentage without the sign, two significant digits below 10: ``0.0123`` -> ``"1.2"``."""
    value = rate * 100
    return "0" if not value else f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _pct(rate: float) -> str:
    return _percent(rate) + "%"


def _varying(results: Sequence[PointResult]) -> list[str]:
    """The settings other than concurrency that differ between ``results`` (per-host only when it is not simply
    the concurrency of every point, as on the built-in target)."""
    return [
        name
        for name in ("per_host", "backend", "transport")
        if len({getattr(r, name) for r in results}) > 1 and not (name == "per_host" and _follows_concurrency(results))
    ]


def _follows_concurrency(results: Sequence[PointResult]) -> bool:
    return all(r.per_host == r.concurrency for r in results)


def _setting(result: PointResult, name: str) -> str:
    value = getattr(result, name)
    return f"per-host {value}" if name == "per_host" else str(value)


def _labeller(results: Sequence[PointResult]) -> Callable[[PointResult], str]:
    """Names a point by its concurrency and the other settings that vary between ``results``."""
    varying = _varying(results)

    def label(result: PointResult) -> str:
        rest = ", ".join(_setting(result, name) for name in varying)
        return f"concurrency {result.concurrency}" + (f" ({rest})" if rest else "")

    return label


def _constants(results: Sequence[PointResult]) -> str:
    """The settings shared by every point: ``"per-host = concurrency, asyncio, httpx"``."""
    if not results:
        return ""
    varying = _varying(results)
    shared = [_setting(results[0], n) for n in ("per_host", "backend", "transport") if n not in varying]
    if "per_host" not in varying and _follows_concurrency(results) and len({r.concurrency for r in results}) > 1:
        shared[0] = "per-host = concurrency"
    return ", ".join(shared)


def _ms(seconds: float | None) -> str:
    """Seconds as milliseconds: ``0.0524`` -> ``"52.4"``, ``0.1234`` -> ``"123"``, ``0.00031`` -> ``"0.31"``."""
    if seconds is None:
        return "-"
    value = seconds * 1000
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def _throughput(pages_per_s: float) -> str:
    return f"{pages_per_s:.0f} pages/s" if pages_per_s >= 10 else f"{pages_per_s:.2g} pages/s"


def _figures(result: PointResult) -> str:
    p95 = f", p95 {_ms(result.latency_p95_s)} ms" if result.latency_p95_s is not None else ""
    return f"{_throughput(result.pages_per_s)}{p95}, {_pct(result.error_rate)} errors, {_pct(result.rate_429)} 429s"


def recommend(
    results: Sequence[PointResult],
    *,
    max_error_rate: float,
    max_429_rate: float,
    tolerance: float = FLAT_TOLERANCE,
) -> Recommendation:
    """Recommend the point with the highest throughput among those within the budget (``error_rate <=
    max_error_rate`` and ``rate_429 <= max_429_rate``, at least one page), preferring the smallest concurrency
    whose throughput is within ``tolerance`` (a fraction) of that best.  With nothing within the budget, the point
    with the lowest error and 429 rate together (one that fetched pages first, then the fastest).  Failed points
    are ignored."""
    measured = [r for r in results if r.failure is None]
    if not measured:
        return Recommendation(point=None, within_budget=False, reason="No point could be measured.")
    label = _labeller(measured)
    budget = f"errors <= {_pct(max_error_rate)}, 429s <= {_pct(max_429_rate)}"
    within = [r for r in measured if r.pages > 0 and r.error_rate <= max_error_rate and r.rate_429 <= max_429_rate]
    if not any(r.pages for r in measured):
        point = min(measured, key=lambda r: r.error_rate + r.rate_429)
        reason = f"No point fetched a page ({label(point)}: {_figures(point)}): check the target and robots.txt."
        return Recommendation(point=point, within_budget=False, reason=reason)
    if not within:
        point = min(measured, key=lambda r: (r.pages == 0, r.error_rate + r.rate_429, -r.pages_per_s))
        reason = (
            f"No point stayed within the budget ({budget}). The one with the fewest errors is {label(point)}: "
            f"{_figures(point)}; try a lower concurrency or per-host limit, or a larger budget."
        )
        return Recommendation(point=point, within_budget=False, reason=reason)
    best = max(within, key=lambda r: r.pages_per_s)
    as_good = [r for r in within if r.pages_per_s >= (1 - tolerance) * best.pages_per_s]
    point = min(as_good, key=lambda r: (r.concurrency, r.per_host, -r.pages_per_s))
    sentences = [f"{label(point)}: {_figures(point)}, within the budget ({budget})."]
    if point is not best:
        sentences.append(
            f"Throughput flattened: it is within {tolerance:.0%} of the best, {_throughput(best.pages_per_s)} at "
            f"{label(best)}, so the smaller concurrency is as good."
        )
    faster = sorted(
        (r for r in measured if r not in within and r.pages_per_s > point.pages_per_s),
        key=lambda r: -r.pages_per_s,
    )
    if faster:
        why = "; ".join(f"{label(r)} ({_figures(r)})" for r in faster[:3])
        more = f" and {len(faster) - 3} more" if len(faster) > 3 else ""
        sentences.append(f"Faster points were over the budget: {why}{more}.")
    return Recommendation(point=point, within_budget=True, reason=" ".join(sentences))


# -- running the points ------------------------------------------------------------------------------------------------
def _sweep(
    runs: Sequence[PointSpec],
    console: Console,
    label: Callable[[PointResult], str],
    pages: int,
    local: LocalTarget | None,
) -> tuple[list[PointResult], bool]:
    """Run every point with a progress display on ``console``; the built-in target ``local``, if any, is reset
    before each (a new rate-limit window).  Returns (results, interrupted)."""
    results: list[PointResult] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        tempfile.TemporaryDirectory(prefix="crawler-bench-") as tmp,
        Progress(*columns, console=console, transient=True, refresh_per_second=4) as progress,
    ):
        overall = progress.add_task("points", total=len(runs))
        for index, spec in enumerate(runs, 1):
            task = progress.add_task(f"{label(failed_point(spec, ''))}: pages", total=pages)

            def show(done: int, task: TaskID = task) -> None:
                progress.update(task, completed=done)

            if local is not None:
                local.reset()
            try:
                result = run_point(spec, Path(tmp), show)
            except KeyboardInterrupt:
                return results, True
            progress.remove_task(task)
            progress.advance(overall)
            results.append(result)
            summary = result.failure if result.failure is not None else f"{result.pages} pages, {_figures(result)}"
            progress.console.print(f"[{index}/{len(runs)}] {label(result)}: {summary}", highlight=False, soft_wrap=True)
    return results, False


# -- outputs -----------------------------------------------------------------------------------------------------------
def results_table(results: Sequence[PointResult], recommended: PointResult | None) -> Table:
    """The results as a rich table, one row per point, the recommended one marked ``◀``; settings shared by every
    point go in the caption.  Counts are in the CSV and JSON outputs; the table shows rates."""
    varying = _varying(results)
    table = Table(title="crawler bench", caption=_constants(results), box=box.SIMPLE_HEAD, padding=0, pad_edge=False)
    table.add_column("concur-\nrency", justify="right")
    for name in varying:
        table.add_column("per\nhost" if name == "per_host" else name, justify="right" if name == "per_host" else "left")
    headers = ("pages", "pages/s", "p50\nms", "p95\nms", "p99\nms", "errors\n%", "429s\n%", "CPU s /\n1k pages")
    for header in (*headers, "peak RSS\nMB", ""):
        table.add_column(header, justify="right")
    for r in results:
        settings = [str(r.concurrency), *(str(getattr(r, name)) for name in varying)]
        if r.failure is not None:
            table.add_row(*settings, f"[red]failed: {r.failure}[/]")
            continue
        table.add_row(
            *settings,
            str(r.pages),
            f"{r.pages_per_s:.1f}",
            *(_ms(v) for v in (r.latency_p50_s, r.latency_p95_s, r.latency_p99_s)),
            _percent(r.error_rate),
            _percent(r.rate_429),
            "-" if r.cpu_s_per_1k_pages is None else f"{r.cpu_s_per_1k_pages:.2f}",
            f"{r.peak_rss_mb:.1f}",
            "◀" if r is recommended else "",
            style="bold green" if r is recommended else None,
        )
    return table


def _rows(results: Sequence[PointResult], recommended: PointResult | None) -> list[dict[str, Any]]:
    return [{**attrs.asdict(r), "recommended": r is recommended} for r in results]


def write_csv(path: Path, results: Sequence[PointResult], recommended: PointResult | None) -> None:
    """One row per point, the columns of :data:`COLUMNS`; missing values are empty."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in _rows(results, recommended):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def write_json(path: Path, results: Sequence[PointResult], advice: Recommendation, options: dict[str, Any]) -> None:
    """Write ``{"options": {...}, "points": [row, ...], "recommendation": {"point": row or null, "within_budget":
    bool, "reason": str}}``, rows as in :func:`write_csv`."""
    rows = _rows(results, advice.point)
    chosen = next((row for row, r in zip(rows, results, strict=True) if r is advice.point), None)
    document = {
        "options": options,
        "points": rows,
        "recommendation": {"point": chosen, "within_budget": advice.within_budget, "reason": advice.reason},
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _check_chart(path: Path) -> None:
    """Fail early (exit 2) when the chart cannot be written: a suffix other than .png or .svg, no matplotlib."""
    if path.suffix.lower() not in (".png", ".svg"):
        raise click.BadParameter(f"{str(path)!r}: the chart is written as .png or .svg", param_hint="--chart")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.BadParameter(f"the chart needs matplotlib: {_INSTALL_HINT}", param_hint="--chart") from None


def write_chart(path: Path, results: Sequence[PointResult], recommended: PointResult | None) -> None:
    """Two panels against concurrency (log scale): throughput (pages/s) above, p95 latency (ms) below; one line per
    combination of the other settings; the recommended point starred.  PNG or SVG by the suffix of ``path``.
    Drawn with matplotlib's object-oriented API (no pyplot, no GUI backend): ImportError without it."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    measured = [r for r in results if r.failure is None]
    varying = _varying(measured)
    lines: dict[str, list[PointResult]] = {}
    for r in measured:
        lines.setdefault(", ".join(_setting(r, name) for name in varying) or _constants(measured), []).append(r)
    figure = Figure(figsize=(8.0, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    for name, points in lines.items():
        points = sorted(points, key=lambda r: r.concurrency)
        xs = [r.concurrency for r in points]
        top.plot(xs, [r.pages_per_s for r in points], marker="o", label=name)
        p95 = [math.nan if r.latency_p95_s is None else r.latency_p95_s * 1000 for r in points]
        bottom.plot(xs, p95, marker="o", label=name)
    if recommended is not None and recommended.failure is None:
        top.plot(
            [recommended.concurrency],
            [recommended.pages_per_s],
            "*",
            markersize=16,
            color="gold",
            zorder=5,
            markeredgecolor="black",
            label="recommended",
        )
    top.set_ylabel("throughput (pages/s)")
    bottom.set_ylabel("p95 latency (ms)")
    bottom.set_xlabel("concurrency (requests in flight)")
    bottom.set_xscale("log", base=2)
    ticks = sorted({r.concurrency for r in measured})
    bottom.set_xticks(ticks)
    bottom.xaxis.set_major_formatter(ScalarFormatter())
    bottom.xaxis.set_minor_formatter(NullFormatter())
    for axes in (top, bottom):
        axes.grid(True, alpha=0.3)
        axes.set_ylim(bottom=0)
    top.legend(fontsize="small")
    top.set_title(f"crawler bench ({_constants(measured)})" if varying else "crawler bench")
    figure.savefig(path)


# -- the command -------------------------------------------------------------------------------------------------------
def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint=option)
        pairs[key] = rest
    return pairs


def _plan(target: Sequence[str], points: Sequence[Point], options: dict[str, Any], *, local: bool) -> list[PointSpec]:
    """Check every point's settings and build its spec, with the per-host limit and backend it will run with
    (the frontier is always in memory, so that every point crawls afresh).  Raises SettingsError,
    SpiderLoadError, click.BadParameter."""
    spider_args = _pairs(options["spider_args"], "-a/--arg")
    try:
        spider = make_spider(target, spider_args)
    except CrawlerError:
        raise
    except Exception as exc:  # the spider's own __init__ refused the arguments
        raise SpiderLoadError(f"cannot create the spider {target[0]}: {type(exc).__name__}: {exc}") from None
    runs: list[PointSpec] = []
    for point in points:
        cli = {
            "crawl.concurrency": point.concurrency,
            "crawl.per_host": point.concurrency if local and point.per_host is None else point.per_host,
            "crawl.backend": point.backend,
            "crawl.max_pages": options["pages"],
            "crawl.frontier": "memory",
        }
        settings = point_settings(spider, cli, options["pairs"])
        kind = TRANSPORTS[point.transport]
        if settings.crawl.backend not in kind.backends:
            raise click.BadParameter(
                f"the {kind.name} transport runs on {', '.join(sorted(kind.backends))}, not {settings.crawl.backend}",
                param_hint="--transport",
            )
        cli.update({"crawl.per_host": settings.crawl.per_host, "crawl.backend": settings.crawl.backend})
        runs.append(
            PointSpec(
                target=tuple(target),
                spider_args=spider_args,
                cli=cli,
                pairs=tuple(options["pairs"]),
                transport=point.transport,
                duration=options["duration"],
                grace=min(_GRACE, options["duration"]),
            )
        )
    return runs


_LOCAL_ONLY = {"site_pages": 1000, "latency": 0.05, "error_rate": 0.0, "rate_limit": None}


@click.command()
@click.argument("target", nargs=-1)
@click.option(
    "--concurrency",
    default="8,32,64,128",
    show_default=True,
    metavar="N,...",
    callback=_grid_option(parse_int_grid),
    help="Requests in flight across all hosts: the values to sweep.",
)
@click.option(
    "--per-host",
    metavar="N,...",
    callback=_grid_option(parse_int_grid),
    help="Requests in flight per host: the values to sweep.  [the built-in target: the concurrency; otherwise the "
    "crawl's setting, 2 by default]",
)
@click.option(
    "--backend",
    metavar="NAME,...",
    callback=_grid_option(lambda text: parse_name_grid(text, BACKENDS, "backend")),
    help=f"Event loops to sweep: {', '.join(BACKENDS)}.  [the crawl's setting, asyncio by default]",
)
@click.option(
    "--transport",
    default="auto",
    show_default=True,
    metavar="NAME,...",
    callback=_grid_option(lambda text: parse_name_grid(text, TRANSPORTS, "transport")),
    help=f"HTTP transports to sweep: {', '.join(TRANSPORTS)}.",
)
@click.option(
    "--pages", type=click.IntRange(min=1), default=200, show_default=True, metavar="N", help="Pages per point at most."
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    show_default=True,
    metavar="SECONDS",
    help="Time per point at most; requests in flight then get 5 s more.",
)
@click.option(
    "--max-error-rate",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    metavar="FRACTION",
    help="Error budget: fetches that failed or answered 5xx, as a fraction of all fetches.",
)
@click.option(
    "--max-429-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    metavar="FRACTION",
    help="429 budget: fetches answered 429 Too Many Requests, as a fraction of all fetches.",
)
@click.option(
    "--site-pages",
    type=click.IntRange(min=1),
    metavar="N",
    help=f"Built-in target: pages of the generated site.  [{_LOCAL_ONLY['site_pages']}]",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help=f"Built-in target: seconds each answer waits.  [{_LOCAL_ONLY['latency']}]",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    metavar="FRACTION",
    help="Built-in target: fraction of requests answered 500.  [0]",
)
@click.option(
    "--rate-limit",
    metavar="N/SECONDS",
    callback=_rate_option,
    help="Built-in target: N pages per SECONDS, 429 with Retry-After beyond; RateLimit headers on every page.",
)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as CSV.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as JSON.")
@click.option(
    "--chart",
    "chart_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH.png|PATH.svg",
    help=f"Draw throughput and p95 latency against concurrency (needs {_INSTALL_HINT}).",
)
@click.option("-s", "--set", "pairs", multiple=True, metavar="KEY=VALUE", help="Any setting, as for crawl.")
@click.option("-a", "--arg", "spider_args", multiple=True, metavar="NAME=VALUE", help="Spider argument, as for crawl.")
def bench(target: tuple[str, ...], **options: Any) -> None:
    """Sweep concurrency settings against TARGET and recommend one: start URLs, a spider (file, module:Class or
    name, as for crawl), or nothing for a built-in generated site on 127.0.0.1.

    Each point of the grid (concurrency x per-host x backend x transport) crawls in a fresh process with the real
    engine, robots.txt obeyed and items written nowhere, and reports pages/s, latency p50/p95/p99, errors, 429s,
    CPU seconds per 1,000 pages and peak memory.

    \b
    Examples:
      crawler bench --concurrency 8,32,128 --latency 0.1 --chart bench.png
      crawler bench https://example.org/ --concurrency 4,8 --per-host 2,4 --pages 100 --max-429-rate 0.01
      crawler bench examples/pydocs.py -a start_url=http://127.0.0.1:8000/index.html --backend trio,asyncio
    """
    console, err = Console(), Console(stderr=True)
    if not (hasattr(os, "fork") and hasattr(os, "wait4")):
        raise click.ClickException("crawler bench needs fork() and wait4(): Linux or macOS")
    local = not target
    for name, default in _LOCAL_ONLY.items():
        if not local and options[name] is not None:
            flag = "--" + name.replace("_", "-")
            raise click.BadParameter("applies to the built-in target only (give no TARGET)", param_hint=flag)
        if options[name] is None:
            options[name] = default
    if options["chart_path"] is not None:
        _check_chart(options["chart_path"])
    points = expand_grid(
        options["concurrency"], options["per_host"] or (None,), options["backend"] or (None,), options["transport"]
    )
    server: LocalTarget | None = None
    with ExitStack() as stack:
        if local:
            server = stack.enter_context(
                LocalTarget(
                    pages=options["site_pages"],
                    latency=options["latency"],
                    error_rate=options["error_rate"],
                    rate_limit=options["rate_limit"],
                )
            )
            target = (server.start_url,)
            err.print(
                f"built-in target: {options['site_pages']} generated pages at {server.start_url}", highlight=False
            )
        try:
            runs = _plan(target, points, options, local=local)
        except (SettingsError, SpiderLoadError, CrawlerError) as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            sys.exit(EXIT_USAGE)
        label = _labeller([failed_point(spec, "") for spec in runs])
        results, interrupted = _sweep(runs, err, label, options["pages"], server)
    advice = recommend(results, max_error_rate=options["max_error_rate"], max_429_rate=options["max_429_rate"])
    console.print(results_table(results, advice.point))
    head = "[bold green]recommended:[/]" if advice.within_budget else "[bold yellow]warning:[/]"
    console.print(f"{head} {advice.reason}", highlight=False)
    _write_outputs(target, results, advice, options, local=local)
    if interrupted:
        err.print(f"interrupted: {len(results)} of {len(runs)} points measured", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    if any(r.failure is not None for r in results):
        sys.exit(1)


def _write_outputs(
    target: Sequence[str],
    results: Sequence[PointResult],
    advice: Recommendation,
    options: dict[str, Any],
    *,
    local: bool,
) -> None:
    if options["csv_path"] is not None:
        write_csv(options["csv_path"], results, advice.point)
    if options["json_path"] is not None:
        recorded = {k: v for k, v in options.items() if not k.endswith("_path") and (local or k not in _LOCAL_ONLY)}
        if local and options["rate_limit"] is not None:
            recorded["rate_limit"] = attrs.asdict(options["rate_limit"])
        recorded.update(target=list(target), builtin_target=local)
        write_json(options["json_path"], results, advice, recorded)
    if options["chart_path"] is not None and advice.point is not None:
        write_chart(options["chart_path"], results, advice.point)
