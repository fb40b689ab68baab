"""``crawler fetch`` and ``crawler list``: one URL as crawler sees it, and the spiders of a project.

``crawler fetch URL`` sends one request through the crawl's own transport and middleware (settings, User-Agent,
headers, credentials) and reports what the crawl would make of the answer: the rate-limit state its headers
announce (:func:`crawler.parse_rate_limit`), the next page each paginator finds (:data:`crawler._pagination.PRESETS`
and the numbered forms), robots.txt's verdict and Crawl-delay (RFC 9309, Protego) and the links of the page.
:func:`analyse` is the pure part: a :class:`crawler.Response` in, a JSON-ready dict out.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import sys
import time
from collections.abc import Sequence
from http import HTTPStatus
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import anyio
import attrs
import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crawler._exceptions import CrawlerError, InvalidURL, SpiderLoadError, TransportError
from crawler._generic import HTML_TYPES, SiteSpider
from crawler._link_header import parse_link_header
from crawler._log import _SECRET_KEYS, redact
from crawler._middleware import Middleware
from crawler._pagination import PRESETS, Paginator, from_spec
from crawler._ratelimit_headers import RateLimitInfo, parse_rate_limit
from crawler._request import Request
from crawler._response import Response
from crawler._robots import RobotsCache, RobotsUnavailable
from crawler._settings import Settings, load_settings
from crawler._spider import Spider
from crawler._transport import Transport

__all__ = ["analyse", "fetch", "find_project_spiders", "list_spiders", "robots_agent"]

EXIT_USAGE = 2

#: The paginators ``crawler fetch`` tries, by spec: every preset once (aliases left out), then the numbered forms.
FETCH_PAGINATORS: tuple[str, ...] = (
    *(spec for i, (spec, p) in enumerate(PRESETS.items()) if all(q is not p for q in list(PRESETS.values())[:i])),
    "offset:offset",
    "page:page",
)

_SET_COOKIE_VALUE = re.compile(r"^([^=;]*=)[^;]*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a field name, RFC 9110 §5.1
_TEXT_TYPES = ("json", "xml", "javascript", "yaml", "csv", "x-www-form-urlencoded")


def robots_agent(user_agent: str) -> str:
    """The name matched in robots.txt for ``user_agent``: its product token (``crawler/0.1 (...)`` -> ``crawler``),
    as the engine does."""
    return user_agent.split("/", 1)[0].split(" ", 1)[0] or user_agent


def _is_text(content_type: str) -> bool:
    return not content_type or content_type.startswith("text/") or any(t in content_type for t in _TEXT_TYPES)


def _show_header(name: str, value: str) -> str:
    """Header values safe to print: credentials and cookies hidden (cookie names and attributes kept)."""
    lower = name.lower()
    if lower == "set-cookie":
        return _SET_COOKIE_VALUE.sub(r"\1***", value)
    if _SECRET_KEYS.search(lower):
        return "***"
    return redact(value)


def _rate_limit(info: RateLimitInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    out = attrs.asdict(
        info, recurse=True, value_serializer=lambda _, __, v: v.decode("latin-1") if isinstance(v, bytes) else v
    )
    out["policies"] = list(out["policies"])
    out["exhausted"] = info.exhausted
    out["delay"] = info.delay
    return out


def _next_page(paginator: Paginator, response: Response) -> dict[str, Any] | None:
    request = paginator.next_request(response)
    if request is None:
        return None
    return {
        "url": redact(request.url),
        "method": request.method,
        "body": request.body.decode("utf-8", "replace") if request.body else None,
        "cursor": redact(paginator.next_cursor(response) or ""),
    }


def analyse(response: Response, *, now: float, paginate: Sequence[str] = (), links: int = 10) -> dict[str, Any]:
    """What a crawl would make of ``response``, as a JSON-ready dict (no I/O):

    ``rate_limit`` (the fields of :class:`crawler.RateLimitInfo`, with ``exhausted`` and ``delay`` in seconds, or
    None), ``pagination`` (spec -> the next page's ``url``, ``method``, ``body`` and ``cursor``, or None; for each of
    :data:`FETCH_PAGINATORS` and then ``paginate``, specs of :func:`crawler.from_spec`), ``link_header`` (RFC 8288
    links: ``url``, ``rels``), ``links`` (``count`` and the ``first`` ``links`` absolute URLs of an HTML page) and
    ``redirect`` (the resolved ``Location`` of a 3xx, else None).  ``now``: seconds since the epoch, for reset
    timestamps and HTTP-dates.  Raises :class:`ValueError` naming a malformed spec of ``paginate``.
    """
    paginators = {spec: from_spec(spec) for spec in (*FETCH_PAGINATORS, *paginate)}
    found = list(response.iter_links()) if response.content_type in HTML_TYPES else []
    location = response.headers.get("location")
    redirect = None
    if 300 <= response.status < 400 and location:
        try:
            redirect = redact(response.urljoin(location))
        except InvalidURL:
            redirect = redact(location)
    return {
        "rate_limit": _rate_limit(parse_rate_limit(response.headers, now)),
        "pagination": {spec: _next_page(p, response) for spec, p in paginators.items()},
        "link_header": [
            {"url": redact(link.url), "rels": sorted(link.rels)}
            for link in parse_link_header(response.headers.getall("link", []), base_url=response.url)
        ],
        "links": {"count": len(found), "first": [redact(u) for u in found[:links]]},
        "redirect": redirect,
    }


def _body(response: Response, limit: int) -> dict[str, Any]:
    out: dict[str, Any] = {"bytes": len(response.body), "text": None, "truncated": False}
    if not _is_text(response.content_type):
        return out
    text = response.text
    if "json" in response.content_type:
        with contextlib.suppress(CrawlerError):
            text = json.dumps(response.json(), indent=2, ensure_ascii=False)
    out["truncated"] = len(text) > limit
    out["text"] = text[:limit]
    return out


@attrs.frozen(kw_only=True)
class _Options:
    url: str
    method: str
    follow: bool
    robots: bool
    paginate: tuple[str, ...]
    links: int
    body_limit: int


async def _send(transport: Transport, chain: Sequence[Middleware], request: Request) -> Response:
    """One exchange through ``chain`` (a request a middleware hands back, e.g. after an OAuth refresh, is sent once
    more).  Raises :class:`crawler.TransportError` with any credential put in the URL replaced by the plain URL."""
    for _ in range(2):
        sent = request
        for middleware in chain:
            sent = await middleware.process_request(sent)
        try:
            response = await transport.fetch(sent)
        except TransportError as exc:
            if sent.url != request.url:
                exc.args = tuple(str(a).replace(sent.url, request.url) for a in exc.args)
            raise
        result: Response | Request = response
        for middleware in reversed(chain):
            result = await middleware.process_response(sent, response)
            if isinstance(result, Request):
                request = result
                break
            response = result
        else:
            return response
    return response


async def _inspect(
    settings: Settings, chain: Sequence[Middleware], options: _Options, transport: Transport
) -> dict[str, Any]:
    request = Request(url=options.url, method=options.method)
    try:
        for middleware in chain:
            await middleware.open(transport.fetch)
        robots: dict[str, Any] = {"checked": False, "allowed": None, "crawl_delay": None, "agent": None, "reason": ""}
        if options.robots:
            agent = robots_agent(settings.crawl.user_agent)
            cache = RobotsCache(transport.fetch, agent)
            robots.update(checked=True, agent=agent)
            try:
                parser = await cache.get(request)
            except RobotsUnavailable as exc:
                robots.update(allowed=False, reason=f"{exc}: every URL of the host is disallowed (RFC 9309 §2.3.1.4)")
            else:
                robots["allowed"] = await cache.allowed(request)
                robots["crawl_delay"] = cache.crawl_delay(request.host)
                robots["reason"] = "no robots.txt: everything allowed" if parser is None else "robots.txt"
        else:
            robots["reason"] = "not checked (--ignore-robots or crawl.obey_robots = false)"
        chain_of_redirects: list[dict[str, Any]] = []
        response = await _send(transport, chain, request)
        while options.follow and 300 <= response.status < 400 and response.headers.get("location"):
            if len(chain_of_redirects) >= settings.crawl.max_redirects:
                break
            try:
                target = Request(url=response.urljoin(response.headers["location"]), method="GET")
            except InvalidURL:
                break  # reported as the unresolved redirect
            chain_of_redirects.append({"url": redact(request.url), "status": response.status})
            request = target
            response = await _send(transport, chain, request)
    finally:
        with anyio.CancelScope(shield=True):
            await transport.aclose()
    report: dict[str, Any] = {
        "url": redact(request.url),
        "method": request.method,
        "redirects": chain_of_redirects,
        "status": response.status,
        "reason": _phrase(response.status),
        "elapsed": round(response.elapsed, 4),
        "content_type": response.content_type,
        "headers": [[name, _show_header(name, value)] for name, value in response.headers.items()],
        "body": _body(response, options.body_limit),
        "robots": robots,
    }
    # analysed as the crawl's callbacks see it: the request as made, without credentials a middleware added
    seen = Response(
        url=request.url, status=response.status, headers=response.headers, body=response.body, request=request
    )
    report.update(analyse(seen, now=time.time(), paginate=options.paginate, links=options.links))
    return report


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _fail(console: Console, message: str, code: int) -> NoReturn:
    console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _headers(pairs: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep or not _TOKEN.fullmatch(name.strip()):
            raise click.BadParameter(f"{pair!r} is not 'Name: value'", param_hint="-H/--header")
        headers[name.strip()] = value.strip()
    return headers


@click.command()
@click.argument("url")
@click.option("-X", "--method", default="GET", show_default=True, help="HTTP method.")
@click.option(
    "-H", "--header", "header_pairs", multiple=True, metavar="'NAME: VALUE'", help="Extra header (repeatable)."
)
@click.option("--user-agent", metavar="TEXT", help="User-Agent header, also matched in robots.txt.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Timeout of the request. [30]")
@click.option(
    "--auth",
    "auth_kind",
    type=click.Choice(["api_key", "bearer", "basic", "oauth2"]),
    help="Send credentials, as crawl does (only to this URL's host unless auth.hosts says otherwise).",
)
@click.option("--secret", metavar="env:NAME|file:PATH", help="Where the key, token, password or client secret is.")
@click.option(
    "-s", "--set", "pairs", multiple=True, metavar="KEY=VALUE", help="Any setting, as for crawl (repeatable)."
)
@click.option("-L", "--follow", is_flag=True, help="Follow redirects (up to crawl.max_redirects).")
@click.option("--ignore-robots", is_flag=True, help="Do not fetch robots.txt.")
@click.option(
    "--paginate",
    "paginate",
    multiple=True,
    metavar="SPEC",
    help="Also try this pagination spec (as for crawl --paginate; repeatable).",
)
@click.option("--body/--no-body", "show_body", default=True, show_default=True, help="Show the body.")
@click.option(
    "--max-body",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    metavar="CHARS",
    help="Body shown at most.",
)
@click.option(
    "--links",
    "link_count",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    metavar="N",
    help="Links listed at most.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def fetch(
    url: str,
    method: str,
    header_pairs: tuple[str, ...],
    user_agent: str | None,
    timeout: float | None,
    auth_kind: str | None,
    secret: str | None,
    pairs: tuple[str, ...],
    follow: bool,
    ignore_robots: bool,
    paginate: tuple[str, ...],
    show_body: bool,
    max_body: int,
    link_count: int,
    as_json: bool,
) -> None:
    """Fetch URL once through crawler's transport and show the status, headers and body, and what a crawl makes of
    them: the rate-limit state the headers announce, the next page each paginator finds, robots.txt's verdict and
    Crawl-delay, and the links of the page.  The URL is fetched even when robots.txt disallows it: the report
    says so.

    Exit status: 0 for any HTTP answer, 1 when the host cannot be reached, 2 for a malformed URL or bad option.

    \b
    Examples:
      crawler fetch https://api.github.com/orgs/python/repos
      crawler fetch "https://api.example.com/v1/items?limit=2" --auth bearer --secret env:API_TOKEN --no-body
      crawler fetch http://127.0.0.1:8000/index.html --json | jq .robots
    """
    err = Console(stderr=True)
    try:
        headers = _headers(header_pairs)
        for spec in paginate:
            from_spec(spec)
        cli_values = {
            "crawl.user_agent": user_agent,
            "crawl.timeout": timeout,
            "crawl.headers": headers or None,
            "auth.kind": auth_kind,
            "auth.secret": secret,
        }
        settings = load_settings(cli=cli_values, cli_pairs=list(pairs))
        request = Request(url=url, method=method.upper())
        from crawler._engine import default_transport
        from crawler._setup import build_middleware

        chain = build_middleware(SiteSpider([request.url]), settings)
        options = _Options(
            url=request.url,
            method=request.method,
            follow=follow,
            robots=settings.crawl.obey_robots and not ignore_robots,
            paginate=paginate,
            links=link_count,
            body_limit=max_body,
        )
        transport = default_transport(settings)
    except click.BadParameter:
        raise
    except (ValueError, CrawlerError) as exc:  # InvalidURL, SettingsError, AuthError, a bad --paginate spec
        _fail(err, str(exc), EXIT_USAGE)
    try:
        report = anyio.run(_inspect, settings, chain, options, transport, backend=settings.crawl.backend)
    except CrawlerError as exc:  # TransportError; AuthError from a token endpoint; InvalidURL from a Location
        _fail(err, str(exc), 1)
    if not show_body:
        report["body"].update(text=None, truncated=False)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    _render(Console(), report)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{round(value, 1):g} s"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _render(console: Console, report: dict[str, Any]) -> None:
    for hop in report["redirects"]:
        console.print(f"[dim]{hop['status']} {escape(hop['url'])} ->[/]", highlight=False)
    style = "green" if 200 <= report["status"] < 300 else ("yellow" if report["status"] < 400 else "red")
    body = report["body"]
    kind = report["content_type"] or "no content type"
    console.print(
        f"[bold]{report['method']} {escape(report['url'])}[/] -> [{style} bold]{report['status']} {report['reason']}[/]"
        f"  ({report['elapsed'] * 1000:.0f} ms, {body['bytes']:,} bytes, {kind})",
        highlight=False,
    )
    headers = Table(title="response headers", title_justify="left", show_edge=False)
    headers.add_column("header", no_wrap=True)
    headers.add_column("value", overflow="fold")  # folded, not cut: a Link or a cookie is read to its end
    for name, value in report["headers"]:
        headers.add_row(name, escape(value))
    console.print(headers)
    if body["text"] is not None:
        console.rule("body" + (" (truncated)" if body["truncated"] else ""), align="left")
        console.print(escape(body["text"]), highlight=False, soft_wrap=True)
        console.rule()
    elif body["bytes"] and not _is_text(report["content_type"]):
        console.print(f"body: {body['bytes']:,} bytes of {report['content_type']} (not shown)", highlight=False)
    if report["redirect"]:
        console.print(f"redirect to {escape(report['redirect'])} (-L follows it)", highlight=False)
    info = report["rate_limit"]
    if info is None:
        console.print("rate limit: no rate-limit headers", highlight=False)
    else:
        console.print(
            f"rate limit ({info['source']}): limit {_number(info['limit'])}, remaining {_number(info['remaining'])}, "
            f"reset in {_seconds(info['reset_after'])}, window {_seconds(info['window'])}, "
            f"Retry-After {_seconds(info['retry_after'])}; next request to this host after {_seconds(info['delay'])}"
            + (" (quota exhausted)" if info["exhausted"] else ""),
            highlight=False,
        )
    pages = Table(title="pagination", title_justify="left", show_edge=False)
    pages.add_column("paginator", overflow="fold")
    pages.add_column("next page", overflow="fold")  # folded, not cut: the URL is what you came for
    pages.add_column("cursor", overflow="fold")
    none = []
    for spec, page in report["pagination"].items():
        if page is None:
            none.append(spec)
            continue
        target = f"{page['method']} {page['url']}" + (f"  body {page['body']}" if page["body"] else "")
        pages.add_row(spec, escape(target), escape(page["cursor"]))
    if pages.row_count:
        console.print(pages)
    if none:
        console.print(f"no next page from: {', '.join(none)}", highlight=False)
    robots = report["robots"]
    if not robots["checked"]:
        console.print(f"robots.txt: {robots['reason']}", highlight=False)
    else:
        verdict = "[green]allowed[/]" if robots["allowed"] else "[red]disallowed[/]"
        delay = f", Crawl-delay {robots['crawl_delay']:g} s" if robots["crawl_delay"] else ""
        skipped = "" if robots["allowed"] else "; fetched because you asked, a crawl would skip it"
        console.print(
            f"robots.txt: {verdict} for {robots['agent']!r} ({escape(robots['reason'])}){delay}{skipped}",
            highlight=False,
        )
    links = report["links"]
    console.print(f"links: {links['count']} on the page" + (", the first:" if links["first"] else ""), highlight=False)
    for link in links["first"]:
        console.print(f"  {escape(link)}", highlight=False)


# -- crawler list ------------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SpiderEntry:
    """One spider found in a project: its ``name``, ``cls`` (the class's qualified name), where it was found
    (``file``, or ``entry point NAME (DIST)``), its ``start_urls`` and ``description`` (first docstring line), and
    ``shadowed_by`` (where the spider that the name resolves to lives, when another one has the same name)."""

    name: str
    cls: str
    source: str
    start_urls: tuple[str, ...]
    description: str
    shadowed_by: str | None = None


def _first_line(text: str | None) -> str:
    return inspect.cleandoc(text).split("\n", 1)[0].strip() if text else ""


def _entry(cls: type[Spider], source: str, module: ModuleType | None) -> SpiderEntry:
    urls: Any = cls.start_urls
    single = getattr(cls, "start_url", None)
    start = [single] if isinstance(single, str) else []
    start += [urls] if isinstance(urls, str) else list(urls or ())
    doc = cls.__dict__.get("__doc__") or (module.__doc__ if module is not None else None)
    return SpiderEntry(
        name=cls.name,
        cls=cls.__qualname__,
        source=source,
        start_urls=tuple(redact(str(u)) for u in start),
        description=_first_line(doc),
    )


def find_project_spiders(directory: Path) -> tuple[list[SpiderEntry], list[tuple[str, str]]]:
    """The spiders of the project in ``directory``, in the order ``crawler crawl NAME`` looks them up (see
    :func:`crawler._loader.find_spiders`): the ``crawler.spiders`` entry points, then the ``*.py`` files of
    ``directory``, then those of ``directory/spiders``.  A later spider with a name already found is listed with
    ``shadowed_by``.  Returns (spiders, problems), a problem being (file or entry point, one-line reason)."""
    from crawler._loader import _import_file, _spiders_in

    spiders: list[SpiderEntry] = []
    problems: list[tuple[str, str]] = []
    first: dict[str, str] = {}

    def add(entry: SpiderEntry) -> None:
        shadow = first.get(entry.name)
        spiders.append(attrs.evolve(entry, shadowed_by=shadow) if shadow else entry)
        first.setdefault(entry.name, entry.source)

    for ep in sorted(entry_points(group="crawler.spiders"), key=lambda e: e.name):
        where = f"entry point {ep.name} ({ep.dist.name if ep.dist else '?'})"
        try:
            obj = ep.load()
        except Exception as exc:
            problems.append((where, f"{type(exc).__name__}: {exc}"))
            continue
        if inspect.isclass(obj) and issubclass(obj, Spider):
            add(_entry(obj, where, sys.modules.get(obj.__module__)))
        else:
            problems.append((where, f"{ep.value} is not a Spider subclass"))
    for folder in (directory, directory / "spiders"):
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
            shown = str(path.relative_to(directory)) if path.is_relative_to(directory) else str(path)
            try:
                module = _import_file(path.resolve())
            except SpiderLoadError as exc:
                problems.append((shown, str(exc)))
                continue
            except SystemExit as exc:  # a script that exits when imported (setup.py)
                problems.append((shown, f"exited when imported (SystemExit: {exc.code})"))
                continue
            for cls in _spiders_in(module):
                add(_entry(cls, shown, module))
    return spiders, problems


@click.command("list")
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="The project directory.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the spiders as JSON.")
def list_spiders(directory: Path, as_json: bool) -> None:
    """List the spiders of the project: those of the crawler.spiders entry points, of the *.py files of the
    directory and of its spiders/ folder, with the class, the file, the start URLs and the first line of the
    docstring.  `crawler crawl NAME` runs one by its name."""
    spiders, problems = find_project_spiders(directory)
    if as_json:
        out = {
            "spiders": [
                attrs.asdict(s, value_serializer=lambda _, __, v: list(v) if isinstance(v, tuple) else v)
                for s in spiders
            ],
            "problems": [{"source": s, "error": e} for s, e in problems],
        }
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    console = Console()
    if spiders:
        table = Table(title="spiders", title_justify="left", show_lines=True)
        table.add_column("name", no_wrap=True)
        table.add_column("spider (file:class)", overflow="fold", ratio=2)
        table.add_column("start URLs", overflow="fold", ratio=2)
        table.add_column("description", overflow="fold", ratio=3)
        for s in spiders:
            name = s.name if s.shadowed_by is None else f"{s.name}\n[dim](shadowed by {escape(s.shadowed_by)})[/]"
            where = f"{s.source}:{s.cls}" if s.source.endswith(".py") else f"{s.source}\n{s.cls}"
            table.add_row(name, escape(where), escape("\n".join(s.start_urls)), escape(s.description))
        console.print(table)
    else:
        console.print(
            f"no spiders in {directory.resolve()} (looked in *.py, spiders/*.py and entry points; "
            "crawler new NAME URL writes one)",
            highlight=False,
        )
    err = Console(stderr=True)
    for source, error in problems:
        err.print(f"[yellow]warning:[/] {escape(source)}: {escape(error)}", highlight=False, soft_wrap=True)
