"""``crawler new NAME URL [--api]``: write a runnable spider and an offline test for it.

The layout is the one ``crawler crawl NAME`` and ``crawler list`` search (see :mod:`crawler._loader`) and Scrapy users
know: ``DIR/spiders/NAME.py`` and ``DIR/tests/test_NAME.py``, ``DIR`` being the project folder (the current one by
default).  The templates are package data (``crawler/templates/*.py.tmpl``, :class:`string.Template` syntax).
"""

from __future__ import annotations

import keyword
import re
import sys
from importlib.resources import files
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

import attrs
import click
from rich.console import Console
from rich.markup import escape

from crawler._exceptions import InvalidURL
from crawler._url import host_key, normalize_url

__all__ = ["Scaffold", "ScaffoldError", "check_name", "new", "plan", "render", "write"]

EXIT_USAGE = 2

#: Names a spider module must not take: they would shadow a module that the spider, its test or pytest imports.
RESERVED_NAMES = frozenset({"crawler", "jmespath", "pytest", "conftest", "spiders", "tests"})
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9/._~-]*")


class ScaffoldError(ValueError):
    """A spider cannot be scaffolded: a bad name or URL, or a file that exists (the message names it)."""


@attrs.frozen(kw_only=True)
class Scaffold:
    """What ``crawler new`` writes: ``files`` maps each path to its content; ``class_name`` is the spider's class."""

    name: str
    class_name: str
    url: str
    api: bool
    files: dict[Path, str]


def check_name(name: str) -> str:
    """Return ``name`` if it can name a spider module: a Python identifier, not a keyword, not a standard library
    module (``json``) nor one of :data:`RESERVED_NAMES`, not a test module name (``test_x``, ``x_test``).
    Raises :class:`ScaffoldError` saying which rule it breaks."""
    if not name.isidentifier() or not name.isascii():
        raise ScaffoldError(f"spider name {name!r} is not a Python identifier (letters, digits, _; not first a digit)")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ScaffoldError(f"spider name {name!r} is a Python keyword")
    if name in sys.stdlib_module_names or name in RESERVED_NAMES:
        raise ScaffoldError(f"spider name {name!r} would shadow the module {name} when imported; choose another")
    if name.startswith("test") or name.endswith("_test"):
        raise ScaffoldError(f"spider name {name!r} looks like a test module to pytest; choose another")
    return name


def class_name_for(name: str) -> str:
    """``books`` -> ``BooksSpider``, ``my_api`` -> ``MyApiSpider``, ``news_spider`` -> ``NewsSpider``."""
    words = [w for w in name.split("_") if w]
    if words and words[-1].lower() == "spider" and len(words) > 1:
        words.pop()
    camel = "".join(w[:1].upper() + w[1:] for w in words) or "My"
    return camel + "Spider"


def render(template: str, **values: str) -> str:
    """The package template ``crawler/templates/<template>.py.tmpl`` with ``${...}`` replaced by ``values``.
    Raises KeyError for a placeholder without a value."""
    text = files("crawler").joinpath("templates", f"{template}.py.tmpl").read_text(encoding="utf-8")
    return Template(text).substitute(values)


def plan(name: str, url: str, *, api: bool = False, directory: Path = Path()) -> Scaffold:
    """The files ``crawler new`` writes for spider ``name`` starting at ``url``: ``directory/spiders/NAME.py`` and
    ``directory/tests/test_NAME.py``, from the HTML template or, with ``api``, the JSON API template.

    Raises :class:`ScaffoldError` for a bad name and :class:`crawler.InvalidURL` for a URL crawler cannot fetch
    (not http or https, no host, a malformed port or IP literal)."""
    check_name(name)
    normalized = normalize_url(url)  # raises InvalidURL; the normal form has no quote or backslash in it
    path = urlsplit(normalized).path or "/"
    values = {
        "name": name,
        "class_name": class_name_for(name),
        "url": normalized,
        "host": host_key(normalized),
        # the test server's route for the start page: the target's path when it is plain, else "/"
        "path": path if _PLAIN_PATH.fullmatch(path) else "/",
        "token_var": f"{name.upper()}_TOKEN",
    }
    kind = "api" if api else "html"
    return Scaffold(
        name=name,
        class_name=values["class_name"],
        url=normalized,
        api=api,
        files={
            directory / "spiders" / f"{name}.py": render(f"{kind}_spider", **values),
            directory / "tests" / f"test_{name}.py": render(f"{kind}_test", **values),
        },
    )


def write(scaffold: Scaffold, *, force: bool = False) -> list[Path]:
    """Write the files of ``scaffold`` (creating folders) and return their paths.  Raises :class:`ScaffoldError`
    naming the files that exist, before writing any, unless ``force``."""
    existing = [path for path in scaffold.files if path.exists()]
    if existing and not force:
        shown = ", ".join(str(p) for p in existing)
        raise ScaffoldError(f"{shown} already exist{'s' if len(existing) == 1 else ''}; --force overwrites")
    for path, text in scaffold.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(scaffold.files)


@click.command()
@click.argument("name")
@click.argument("url")
@click.option("--api", is_flag=True, help="A JSON API harvester (records at a JMESPath, pagination, a token).")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="The project folder: the spider goes in DIR/spiders/, its test in DIR/tests/.",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def new(name: str, url: str, api: bool, directory: Path, force: bool) -> None:
    """Write a new spider NAME that starts at URL, spiders/NAME.py, and its offline test, tests/test_NAME.py.

    The spider crawls the pages of URL's host (one item per page: URL, title, headings) or, with --api, harvests
    the JSON records of an API page after page, with a token from the environment.  The test serves a small
    copy of the target on 127.0.0.1 and runs the spider against it with crawler's pytest plugin.

    \b
    Examples:
      crawler new books https://books.toscrape.com/
      crawler new issues "https://api.example.com/v1/issues?per_page=100" --api
      crawler crawl books -o books.jsonl && python -m pytest tests/test_books.py
    """
    err = Console(stderr=True)
    try:
        scaffold = plan(name, url, api=api, directory=directory)
        written = write(scaffold, force=force)
    except (ScaffoldError, InvalidURL) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        err.print(
            f"[red]error:[/] cannot write {escape(str(exc.filename))}: {exc.strerror}", highlight=False, soft_wrap=True
        )
        sys.exit(1)
    spider_file, test_file = written
    kind = "API harvester" if api else "site crawler"
    where = "" if directory == Path() else f"cd {directory} && "
    click.echo(f"wrote {spider_file} ({kind} {scaffold.class_name}, name {name!r}) and {test_file}; next:")
    click.echo(f"  {where}python -m pytest {test_file.relative_to(directory)}    # offline")
    click.echo(f"  {where}crawler crawl {name} -o {name}.jsonl")
