"""The ``crawler`` command line (click)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import click
from rich.console import Console

from crawler._engine import Engine
from crawler._exceptions import CrawlerError, FrontierError, SettingsError, SinkError, SpiderLoadError
from crawler._generic import SiteSpider
from crawler._harvest import ApiSpider
from crawler._loader import load_spider_class
from crawler._log import configure_logging
from crawler._observe import configure_otel_from_env
from crawler._progress import report_progress, summary_table
from crawler._settings import VERSION, Settings, load_settings
from crawler._spider import Spider

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _is_url(target: str) -> bool:
    return target.lower().startswith(("http://", "https://"))


def _spider_args(pairs: tuple[str, ...]) -> dict[str, str]:
    args = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="-a/--arg")
        args[key] = value
    return args


async def _run(engine: Engine, settings: Settings) -> bool:
    """Run the engine with signal handling and progress; True when interrupted."""
    interrupted = False
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    if interrupted:  # a second Ctrl-C: stop now
                        engine.stop("interrupted", deadline=0)
                        continue
                    interrupted = True
                    engine.log.warning(
                        "interrupted: finishing in-flight requests (Ctrl-C again to stop now)",
                        signal=signal.Signals(signum).name,
                        deadline=settings.crawl.shutdown_timeout,
                    )
                    engine.stop("interrupted", deadline=settings.crawl.shutdown_timeout)

        tg.start_soon(watch_signals)
        if settings.log.progress or not sys.stderr.isatty():
            live = settings.log.progress and sys.stderr.isatty()
            tg.start_soon(lambda: report_progress(engine, live=live, interval=settings.log.summary_interval))
        try:
            await engine.run()
        except (SinkError, FrontierError) as exc:  # raised as itself, not inside the task group's ExceptionGroup
            failure: CrawlerError | None = exc
        else:
            failure = None
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return interrupted


class _LazyGroup(click.Group):
    """A group whose heavier commands are imported when they are run or listed (click's documented pattern for
    lazy subcommands), so that ``crawler crawl`` starts without loading them."""

    LAZY = {  # command name -> (module, attribute)
        "bench": ("crawler._bench", "bench"),
        "fetch": ("crawler._inspect", "fetch"),
        "list": ("crawler._inspect", "list_spiders"),
        "new": ("crawler._scaffold", "new"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            import importlib

            module, attribute = self.LAZY[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(VERSION, prog_name="crawler")
def cli() -> None:
    """Crawl web sites and harvest HTTP APIs, politely, on trio or asyncio."""


@cli.command()
@click.argument("target", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="URI",
    help="Where items go (repeatable): items.jsonl, items.csv, sqlite:///items.db, - for stdout. "
    "Default: sqlite:///<spider name>.db.",
)
@click.option("--concurrency", type=int, metavar="N", help="Requests in flight across all hosts. [16]")
@click.option("--per-host", type=int, metavar="N", help="Requests in flight per host. [2]")
@click.option("--delay", type=float, metavar="SECONDS", help="Delay between requests to one host, jittered. [0]")
@click.option("--max-pages", type=int, metavar="N", help="Stop after N pages.")
@click.option("--max-items", type=int, metavar="N", help="Stop after N items.")
@click.option("--max-depth", type=int, metavar="N", help="Do not follow links deeper than N (start URLs: 0).")
@click.option("--timeout", type=float, metavar="SECONDS", help="Timeout per request. [30]")
@click.option("--backend", type=click.Choice(["trio", "asyncio"]), help="Event loop. [asyncio]")
@click.option(
    "--transport",
    type=click.Choice(["auto", "aiohttp", "httpx"]),
    help="HTTP client underneath: auto is aiohttp on asyncio, httpx on trio. [auto]",
)
@click.option("--ignore-robots", is_flag=True, default=None, help="Do not fetch or obey robots.txt.")
@click.option("--user-agent", metavar="TEXT", help="User-Agent header, also matched in robots.txt.")
@click.option(
    "-s",
    "--set",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any setting, e.g. -s crawl.jitter=0.2 (repeatable).",
)
@click.option(
    "-a",
    "--arg",
    "spider_args",
    multiple=True,
    metavar="NAME=VALUE",
    help="Spider argument, set as an attribute of the spider (repeatable).",
)
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]), help="Log format. [auto]")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Log level. [info]")
@click.option("--stats-file", type=click.Path(dir_okay=False), help="Write the final stats as JSON to this file.")
@click.option("--no-progress", is_flag=True, default=None, help="No live display on a terminal.")
@click.option(
    "--items",
    "items_path",
    metavar="PATH",
    help="Harvest an API: one item per JSON record at this JMESPath (data, results, @ for a list).",
)
@click.option(
    "--paginate",
    metavar="SPEC",
    help="Follow pagination: link, cursor:stripe|slack|relay|x|jsonapi|hal|odata, cursor:PATH->PARAM, "
    "next:PATH, offset:PARAM, page:PARAM.",
)
@click.option(
    "--errors",
    "error_outputs",
    multiple=True,
    metavar="URI",
    help="Where error records go (requests that gave up), repeatable. Default: the errors table of the SQLite output.",
)
@click.option(
    "--auth",
    "auth_kind",
    type=click.Choice(["api_key", "bearer", "basic", "oauth2"]),
    help="Send credentials (only to the start URLs' hosts unless auth.hosts says otherwise).",
)
@click.option("--secret", metavar="env:NAME|file:PATH", help="Where the key, token, password or client secret is.")
@click.option("--retries", type=int, metavar="N", help="Attempts per request in all, the first included. [4]")
@click.option(
    "--state",
    metavar="DIR",
    help="Keep the frontier in DIR (SQLite): run the same command again to resume after Ctrl-C or a crash.",
)
@click.option(
    "--frontier",
    metavar="URI",
    help="The frontier: memory, sqlite:///PATH.db, or a plugin's, e.g. redis://127.0.0.1:6379/0 to share one crawl "
    "between processes. [memory]",
)
@click.option("--crawl-id", metavar="NAME", help="Names the crawl in a shared frontier. [the spider's name]")
@click.option(
    "--middleware",
    "middleware",
    multiple=True,
    metavar="NAME",
    help="Add a middleware: an installed plugin's name (crawler plugins) or module:attribute (repeatable).",
)
@click.option(
    "--record",
    metavar="DIR",
    help="Record every HTTP exchange into DIR, one YAML file each, secrets redacted (replaces DIR's recordings).",
)
@click.option("--replay", metavar="DIR", help="Answer every request from the exchanges recorded in DIR: no network.")
@click.option(
    "--cache",
    metavar="DIR",
    help="HTTP cache in DIR (RFC 9111): fresh responses need no request, stale ones are revalidated (304).",
)
@click.option(
    "--otel",
    is_flag=True,
    default=None,
    help="OpenTelemetry spans and metrics, exported as the OTEL_* environment variables say (crawler[otel]).",
)
@click.option(
    "--metrics-port",
    type=int,
    metavar="PORT",
    help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics during the crawl (crawler[prometheus]).",
)
def crawl(
    target: tuple[str, ...],
    outputs: tuple[str, ...],
    pairs: tuple[str, ...],
    spider_args: tuple[str, ...],
    error_outputs: tuple[str, ...],
    middleware: tuple[str, ...],
    **options: Any,
) -> None:
    """Crawl TARGET: one or more start URLs (follow links within their hosts, one record per page), or a spider:
    a file (spiders/blog.py), a module path (mypkg.spiders:Blog) or a spider name.

    \b
    Examples:
      crawler crawl http://127.0.0.1:8000/index.html -o pages.jsonl
      crawler crawl examples/pydocs.py -o docs.jsonl --backend trio
      crawler crawl blog -s crawl.delay=1.5 -o sqlite:///blog.db --stats-file stats.json
      crawler crawl "https://api.example.com/v1/items?limit=100" --items data --paginate cursor:stripe \\
          --auth bearer --secret env:API_TOKEN -o records.jsonl
      crawler crawl examples/pydocs.py --state .crawl/pydocs      # resumable: run it again to resume
      crawler crawl spider.py --frontier redis://127.0.0.1:6379/0 --crawl-id docs -o postgresql://localhost/db
    """
    console = Console(stderr=True)
    try:
        if all(_is_url(t) for t in target) and (options["items_path"] or options["paginate"]):
            spider: Spider = ApiSpider(list(target), items=options["items_path"] or "@", paginate=options["paginate"])
        elif all(_is_url(t) for t in target):
            spider = SiteSpider(list(target))
        elif len(target) == 1:
            spider_class = load_spider_class(target[0])
            try:
                spider = spider_class(**_spider_args(spider_args))
            except (TypeError, ValueError) as exc:
                raise SpiderLoadError(f"cannot create spider {target[0]!r} with {list(spider_args)}: {exc}") from None
        else:
            raise click.UsageError("give start URLs, or one spider (file, module:Class or name)")
        cli_values = {
            "output.uris": tuple(outputs) or None,
            "crawl.concurrency": options["concurrency"],
            "crawl.per_host": options["per_host"],
            "crawl.delay": options["delay"],
            "crawl.max_pages": options["max_pages"],
            "crawl.max_items": options["max_items"],
            "crawl.max_depth": options["max_depth"],
            "crawl.timeout": options["timeout"],
            "crawl.backend": options["backend"],
            "crawl.transport": options["transport"],
            "crawl.obey_robots": False if options["ignore_robots"] else None,
            "crawl.user_agent": options["user_agent"],
            "log.format": options["log_format"],
            "log.level": options["log_level"],
            "log.progress": False if options["no_progress"] else None,
            "output.stats_file": options["stats_file"],
            "output.errors": tuple(error_outputs) or None,
            "auth.kind": options["auth_kind"],
            "auth.secret": options["secret"],
            "retry.max_attempts": options["retries"],
            "crawl.state": options["state"],
            "crawl.frontier": options["frontier"],
            "crawl.crawl_id": options["crawl_id"],
            "crawl.middleware": tuple(middleware) or None,
            "crawl.record": options["record"],
            "crawl.replay": options["replay"],
            "crawl.cache": options["cache"],
            "metrics.otel": True if options["otel"] else None,
            "metrics.port": options["metrics_port"],
        }
        settings = load_settings(
            spider=(type(spider).__name__, type(spider).custom_settings), cli=cli_values, cli_pairs=list(pairs)
        )
        configure_logging(settings.log.format, settings.log.level)
        if settings.metrics.otel:
            configure_otel_from_env()
        engine = Engine(spider, settings)
    except (SettingsError, SpiderLoadError, CrawlerError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_USAGE)
    try:
        interrupted = anyio.run(_run, engine, settings, backend=settings.crawl.backend)
    except (SinkError, FrontierError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    snapshot = engine.stats.snapshot(
        spider=spider.name, outputs=list(settings.output.uris) or [f"sqlite:///{spider.name}.db"]
    )
    console.print(summary_table(snapshot))
    if settings.output.stats_file:
        Path(settings.output.stats_file).write_text(json.dumps(snapshot, indent=2) + "\n", encoding="utf-8")
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if snapshot["reason"] == "sink failed":
        sys.exit(1)


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False), required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind (0: any free port).")
@click.option("--generate", type=int, metavar="PAGES", help="Serve a generated site of PAGES pages instead.")
def serve(directory: str | None, host: str, port: int, generate: int | None) -> None:
    """Serve DIRECTORY (or a generated site) over HTTP on 127.0.0.1, to crawl locally.

    \b
    Example (the Python documentation, Debian package python3.11-doc):
      crawler serve /usr/share/doc/python3.11/html --port 8000
    """
    from crawler.testing import LocalServer, generate_site

    if directory is None and generate is None:
        raise click.UsageError("give a DIRECTORY or --generate PAGES")
    source: Any = Path(directory) if directory else generate_site(pages=generate or 100, hosts=(host,))
    server = LocalServer(source, host=host, port=port)
    server.start()
    click.echo(f"serving {directory or f'a generated site of {generate} pages'} at {server.base_url}/ (Ctrl-C stops)")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


PYDOCS = Path("/usr/share/doc/python3.11/html")


@cli.command()
@click.option(
    "--docs",
    type=click.Path(file_okay=False, path_type=Path),
    default=PYDOCS,
    show_default=True,
    help="Folder of the Python documentation (Debian package python3.11-doc).",
)
@click.option(
    "--pages",
    type=int,
    default=500,
    show_default=True,
    help="Size of the generated site used when the documentation is not installed.",
)
@click.option("--backend", type=click.Choice(["trio", "asyncio"]), default="asyncio", show_default=True)
def demo(docs: Path, pages: int, backend: str) -> None:
    """Serve the Python documentation (or, without it, a generated site) on 127.0.0.1 and crawl all of it with
    the embedded defaults: in-memory frontier, items in the SQLite file site.db."""
    from crawler.testing import LocalServer, generate_site

    console = Console(stderr=True)
    if (docs / "index.html").is_file():
        source: Any = docs
        what = f"the Python documentation in {docs}"
    else:
        source = generate_site(pages=pages)
        what = f"a generated site of {pages} pages (apt-get install python3.11-doc to crawl the Python docs)"
    with LocalServer(source) as server:
        console.print(f"serving {what} at {server.base_url}/", highlight=False)
        configure_logging("console", "warning")
        settings = load_settings(cli={"crawl.backend": backend, "crawl.per_host": 8, "crawl.concurrency": 16})
        spider = SiteSpider([server.url("/index.html")])
        engine = Engine(spider, settings)
        anyio.run(_run, engine, settings, backend=backend)
    console.print(summary_table(engine.stats.snapshot()))
    console.print(f"items are in {Path('site.db').resolve()} (table items); the first three:", highlight=False)
    import sqlite3

    with sqlite3.connect("site.db") as db:
        for (item,) in db.execute("SELECT item FROM items ORDER BY fetched_at LIMIT 3"):
            click.echo(item)


#: The entry-point groups plugins register under, and what each provides.
PLUGIN_GROUPS = {
    "crawler.sinks": "sink (-o SCHEME://...)",
    "crawler.frontiers": "frontier (--frontier SCHEME://...)",
    "crawler.middleware": "middleware (--middleware NAME)",
}


@cli.command()
def plugins() -> None:
    """List the installed plugins: sinks, frontiers and middleware found through entry points, with the package
    that provides each."""
    from importlib.metadata import entry_points

    from rich.table import Table

    table = Table("kind", "name", "provided by", "object", title="installed plugins")
    count = 0
    for group, kind in PLUGIN_GROUPS.items():
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "?"
            table.add_row(kind.split(" ", 1)[0], ep.name, dist, ep.value)
            count += 1
    console = Console()
    if count:
        console.print(table)
    else:
        console.print("no plugins installed", highlight=False)
    console.print(
        "built in: sinks jsonl, csv, sqlite, - (stdout); frontiers memory, sqlite (--state DIR)", highlight=False
    )


def main() -> None:
    """Entry point of the ``crawler`` script."""
    cli()
