"""``crawler new``: the files it writes run, crawl and pass their own tests, offline; bad input is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from crawler import InvalidURL
from crawler._cli import cli
from crawler._scaffold import ScaffoldError, check_name, class_name_for, plan
from crawler.testing import LocalServer, Reply, RequestInfo

RUFF = Path(sys.executable).with_name("ruff")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRAWLER_", "PYTEST_"))}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def run_process(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=120
    )


def new(*args: str) -> Result:
    return CliRunner().invoke(cli, ["new", *args], catch_exceptions=False)


def pytest_in(project: Path) -> subprocess.CompletedProcess[str]:
    """Run pytest on the project's tests in a fresh process, as its user would (the plugin by entry point)."""
    return run_process("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=project)


def items_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- the HTML template ------------------------------------------------------------------------------------------


def test_new_html_spider_passes_its_test_and_crawls_a_local_site(tmp_path: Path) -> None:
    result = new("books", "https://Books.example.com/catalogue/index.html", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    spider, test = tmp_path / "spiders" / "books.py", tmp_path / "tests" / "test_books.py"
    assert spider.is_file() and test.is_file()
    assert f"wrote {spider}" in result.stdout
    source = spider.read_text()
    assert 'start_url = "https://books.example.com/catalogue/index.html"' in source
    assert "class BooksSpider(Spider):" in source and 'name = "books"' in source
    assert '"/catalogue/index.html": page(' in test.read_text()  # the test's site is shaped like the target

    tested = pytest_in(tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout

    site = {
        "/": (200, {"Content-Type": "text/html"}, b"<title>Home</title><h1>Hi</h1><a href='/p.html'>p</a>"),
        "/p.html": (200, {"Content-Type": "text/html"}, b"<title>P</title><h2>Sub</h2><a href='/'>home</a>"),
    }
    with LocalServer(site) as server:
        crawled = run_process(
            "-m", "crawler", "crawl", "books", "-a", f"start_url={server.url('/')}", "-o", "out.jsonl", cwd=tmp_path
        )
    assert crawled.returncode == 0, crawled.stderr
    items = sorted(items_of(tmp_path / "out.jsonl"), key=lambda item: str(item["title"]))
    assert items == [
        {"url": server.url("/"), "title": "Home", "headings": ["Hi"]},
        {"url": server.url("/p.html"), "title": "P", "headings": ["Sub"]},
    ]


def test_the_generated_test_fails_when_the_spider_is_wrong(tmp_path: Path) -> None:
    assert new("books", "https://books.example.com/", "--dir", str(tmp_path)).exit_code == 0
    spider = tmp_path / "spiders" / "books.py"
    spider.write_text(spider.read_text().replace('"title": response.title,', '"title": "?",'))
    tested = pytest_in(tmp_path)
    assert tested.returncode == 1, tested.stdout
    assert "1 failed" in tested.stdout


@pytest.mark.skipif(not RUFF.is_file(), reason="ruff is not installed next to this Python")
def test_generated_files_are_clean_for_ruff_with_default_settings(tmp_path: Path) -> None:
    assert new("books", "https://books.example.com/", "--dir", str(tmp_path)).exit_code == 0
    assert (
        new("issues", "https://api.example.com/v1/issues?per_page=100", "--api", "--dir", str(tmp_path)).exit_code == 0
    )
    for command in (["check", "--select", "E,F,W,I,B,UP,SIM"], ["format", "--check"]):
        checked = subprocess.run(
            [str(RUFF), *command, "--isolated", "--no-cache", "."], cwd=tmp_path, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


# -- the API template -------------------------------------------------------------------------------------------


def test_new_api_spider_passes_its_test(tmp_path: Path) -> None:
    result = new("issues", "https://api.example.com/v1/issues?per_page=100", "--api", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    source = (tmp_path / "spiders" / "issues.py").read_text()
    assert 'TOKEN_VARIABLE = "ISSUES_TOKEN"' in source and '"hosts": ["api.example.com"]' in source
    assert '"/v1/issues?cursor=c2": reply(LAST)' in (tmp_path / "tests" / "test_issues.py").read_text()
    tested = pytest_in(tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout


def test_new_api_spider_crawls_with_the_token_from_the_environment(tmp_path: Path) -> None:
    pages = {
        "": {"data": [{"id": 1}, {"id": 2}], "next_cursor": "c2"},
        "cursor=c2": {"data": [{"id": 3}], "next_cursor": None},
    }

    def api(request: RequestInfo) -> Reply:
        if request.headers.get("authorization") != "Bearer s3cret":
            return 401, {"Content-Type": "application/json"}, b'{"error": "unauthorized"}'
        return 200, {"Content-Type": "application/json"}, json.dumps(pages[request.query]).encode()

    with LocalServer({"/v1/items": api}) as server:
        assert new("items", server.url("/v1/items"), "--api", "--dir", str(tmp_path)).exit_code == 0
        command = ("-m", "crawler", "crawl", "items", "-o", "out.jsonl", "--stats-file", "stats.json")
        crawled = run_process(*command, "--log-format", "json", cwd=tmp_path, ITEMS_TOKEN="s3cret")
        assert crawled.returncode == 0, crawled.stderr
        assert sorted(item["id"] for item in items_of(tmp_path / "out.jsonl")) == [1, 2, 3]  # type: ignore[type-var]
        assert "s3cret" not in crawled.stderr
        # without the variable no credentials are sent: the API refuses
        (tmp_path / "out.jsonl").unlink()
        refused = run_process(*command, "--retries", "1", cwd=tmp_path)
    assert refused.returncode == 0, refused.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["statuses"] == {"401": 1} and stats["items"] == 0


# -- refusals ---------------------------------------------------------------------------------------------------


def test_new_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    assert new("books", "https://books.example.com/", "--dir", str(tmp_path)).exit_code == 0
    spider = tmp_path / "spiders" / "books.py"
    spider.write_text("# my work\n")
    again = new("books", "https://books.example.com/", "--dir", str(tmp_path))
    assert again.exit_code == 2
    assert str(spider) in again.stderr and str(tmp_path / "tests" / "test_books.py") in again.stderr
    assert "--force" in again.stderr
    assert spider.read_text() == "# my work\n"
    forced = new("books", "https://books.example.com/", "--dir", str(tmp_path), "--force")
    assert forced.exit_code == 0 and "class BooksSpider" in spider.read_text()


def test_new_writes_nothing_when_only_the_test_exists(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_books.py").write_text("# mine\n")
    result = new("books", "https://books.example.com/", "--dir", str(tmp_path))
    assert result.exit_code == 2 and "test_books.py already exists" in result.stderr
    assert not (tmp_path / "spiders").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1books", "not a Python identifier"),
        ("my-books", "not a Python identifier"),
        ("class", "Python keyword"),
        ("json", "would shadow the module json"),
        ("crawler", "would shadow the module crawler"),
        ("test_books", "looks like a test module"),
    ],
)
def test_new_refuses_a_bad_name(tmp_path: Path, name: str, message: str) -> None:
    result = new(name, "https://books.example.com/", "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert message in result.stderr and repr(name) in result.stderr
    assert not any(tmp_path.iterdir())
    with pytest.raises(ScaffoldError, match=message):
        check_name(name)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://books.example.com/", "scheme must be http or https"),
        ("books.example.com", "scheme must be http or https"),
        ("http://", "no host"),
        ("http://[bad/", "invalid URL"),
        ("http://books.example.com:99999/", "invalid URL"),
    ],
)
def test_new_refuses_a_bad_url(tmp_path: Path, url: str, message: str) -> None:
    result = new("books", url, "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())
    with pytest.raises(InvalidURL):
        plan("books", url, directory=tmp_path)


def test_class_names() -> None:
    assert class_name_for("books") == "BooksSpider"
    assert class_name_for("my_api") == "MyApiSpider"
    assert class_name_for("news_spider") == "NewsSpider"
    assert class_name_for("_private") == "PrivateSpider"


def test_an_unusual_start_path_gives_the_test_a_plain_route(tmp_path: Path) -> None:
    scaffold = plan("shop", "https://shop.example.com/it's/here?q=1", directory=tmp_path)
    test_source = scaffold.files[tmp_path / "tests" / "test_shop.py"]
    assert '"/": page(' in test_source  # the quote would break the test's string literals
    compile(test_source, "test_shop.py", "exec")


def test_list_shows_the_new_spiders(tmp_path: Path) -> None:
    assert new("books", "https://books.example.com/", "--dir", str(tmp_path)).exit_code == 0
    assert new("issues", "https://api.example.com/v1/issues", "--api", "--dir", str(tmp_path)).exit_code == 0
    listed = run_process("-m", "crawler", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    spiders = json.loads(listed.stdout)["spiders"]
    assert [(s["name"], s["cls"], s["source"], s["start_urls"]) for s in spiders] == [
        ("books", "BooksSpider", "spiders/books.py", ["https://books.example.com/"]),
        ("issues", "IssuesSpider", "spiders/issues.py", ["https://api.example.com/v1/issues"]),
    ]
    assert spiders[0]["description"] == "Crawls books.example.com: one item per page (URL, title, headings)."


def test_templates_ship_with_the_package() -> None:
    import crawler

    folder = Path(crawler.__file__).parent / "templates"
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".tmpl") == [
        "api_spider.py.tmpl",
        "api_test.py.tmpl",
        "html_spider.py.tmpl",
        "html_test.py.tmpl",
    ]
