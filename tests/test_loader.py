"""Loading spiders by file path, ``file.py:Class``, ``module:Class`` and name; and the errors for bad files."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler import Spider, SpiderLoadError
from crawler._loader import find_spiders, load_spider_class

ONE = """
from crawler import Spider

class Books(Spider):
    name = "books"
    start_urls = ["http://example.com/"]
"""

TWO = """
from crawler import Spider

class Books(Spider):
    name = "books"

class Authors(Spider):
    name = "authors"
"""


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def load_error(target: str, **kwargs: object) -> str:
    with pytest.raises(SpiderLoadError) as info:
        load_spider_class(target, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.fixture(autouse=True)
def _forget_test_modules() -> Iterator[None]:
    """Restore sys.path and unload the modules the test created, so that tests do not see each other's files."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name in [n for n in sys.modules if n.startswith(("crawler_spider_", "loader_", "helpers_for_books"))]:
        del sys.modules[name]


# -- loading ---------------------------------------------------------------------------------------------------


def test_load_by_file_path(tmp_path: Path) -> None:
    path = write(tmp_path, "books.py", ONE)
    cls = load_spider_class(str(path))
    assert issubclass(cls, Spider)
    assert cls.__name__ == "Books" and cls.name == "books"
    assert list(cls.start_urls) == ["http://example.com/"]
    assert str(tmp_path) not in sys.path


def test_load_by_relative_file_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "spiders/books.py", ONE)
    monkeypatch.chdir(tmp_path)
    assert load_spider_class("spiders/books.py").name == "books"


def test_file_may_import_its_neighbours(tmp_path: Path) -> None:
    write(tmp_path, "helpers_for_books.py", "START = 'http://example.com/start'\n")
    path = write(
        tmp_path,
        "books.py",
        """
        from crawler import Spider
        from helpers_for_books import START

        class Books(Spider):
            name = "books"
            start_urls = [START]
        """,
    )
    assert list(load_spider_class(str(path)).start_urls) == ["http://example.com/start"]


def test_load_file_colon_class(tmp_path: Path) -> None:
    path = write(tmp_path, "two.py", TWO)
    assert load_spider_class(f"{path}:Authors").name == "authors"
    assert load_spider_class(f"{path}:books").__name__ == "Books"  # the spider name works too


def test_load_file_colon_missing_class(tmp_path: Path) -> None:
    path = write(tmp_path, "two.py", TWO)
    message = load_error(f"{path}:Nope")
    assert "'Nope'" in message
    assert str(path) in message
    assert "Books" in message and "Authors" in message  # what there is


def test_load_module_colon_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "loader_pkg_a/__init__.py", "")
    write(tmp_path, "loader_pkg_a/spiders.py", TWO)
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = load_spider_class("loader_pkg_a.spiders:Authors")
    assert cls.name == "authors"
    assert cls.__module__ == "loader_pkg_a.spiders"


def test_load_module_colon_missing_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "loader_mod_b.py", ONE + "\nclass NotASpider:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("Missing", "NotASpider"):
        message = load_error(f"loader_mod_b:{name}")
        assert "loader_mod_b" in message
        assert repr(name) in message


def test_load_missing_module() -> None:
    message = load_error("no_such_module_for_crawler_tests:Spider")
    assert "no_such_module_for_crawler_tests" in message


def test_load_module_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "loader_mod_c.py", "raise RuntimeError('config missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = load_error("loader_mod_c:Books")
    assert "loader_mod_c" in message
    assert "RuntimeError: config missing" in message


def test_load_by_name_from_a_directory(tmp_path: Path) -> None:
    write(tmp_path, "books.py", ONE)
    write(tmp_path, "spiders/more.py", TWO.replace('"books"', '"books2"'))
    write(tmp_path, "broken.py", "def oops(:\n")  # a broken neighbour does not hide the others
    write(tmp_path, "notes.txt", "not python")
    assert load_spider_class("books", search_dir=tmp_path).__name__ == "Books"
    assert load_spider_class("authors", search_dir=tmp_path).name == "authors"
    assert set(find_spiders(tmp_path)) >= {"books", "books2", "authors"}


def test_load_by_name_defaults_to_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "books.py", ONE)
    monkeypatch.chdir(tmp_path)
    assert load_spider_class("books").name == "books"


def test_unknown_name_lists_the_known_spiders(tmp_path: Path) -> None:
    write(tmp_path, "books.py", ONE)
    message = load_error("magazines", search_dir=tmp_path)
    assert "'magazines'" in message
    assert "books" in message


# -- errors name the file --------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = load_error(str(tmp_path / "nothing.py"))
    assert "nothing.py" in message
    assert "not found" in message


def test_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "bad_syntax.py", "from crawler import Spider\n\nclass Bad(Spider:\n    pass\n")
    message = load_error(str(path))
    assert str(path) in message
    assert "syntax error" in message
    assert "line 3" in message


def test_import_error(tmp_path: Path) -> None:
    path = write(tmp_path, "bad_import.py", "import crawler\nimport no_such_dependency_xyz\n")
    message = load_error(str(path))
    assert str(path) in message
    assert "no_such_dependency_xyz" in message
    assert "ModuleNotFoundError" in message
    assert ":2)" in message  # the line of the failing import


def test_error_raised_at_import_time(tmp_path: Path) -> None:
    path = write(tmp_path, "raises.py", "x = 1\nraise ValueError('bad\\nmultiline message')\n")
    message = load_error(str(path))
    assert str(path) in message
    assert "ValueError" in message


def test_no_spider_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "empty_spiders.py", "from crawler import Spider  # imported, not defined here\nX = 1\n")
    message = load_error(str(path))
    assert str(path) in message
    assert "no Spider subclass" in message


def test_two_spiders_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "two.py", TWO)
    message = load_error(str(path))
    assert str(path) in message
    assert "Books" in message and "Authors" in message
    assert f"{path}:ClassName" in message  # how to pick one


def test_not_a_python_file(tmp_path: Path) -> None:
    path = write(tmp_path, "spider.txt", ONE)
    with pytest.raises(SpiderLoadError) as info:
        load_spider_class(str(path), search_dir=tmp_path)
    assert str(path) in str(info.value) or "spider.txt" in str(info.value)
