"""Layered settings: defaults, config file, spider, environment, command line; and their error messages."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from crawler import CrawlSettings, LogSettings, OutputSettings, Settings, SettingsError, load_settings


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    """A directory without config files."""
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def load(config_dir: Path, **layers: Any) -> Settings:
    layers.setdefault("environ", {})
    return load_settings(config_dir=config_dir, **layers)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def error(config_dir: Path, **layers: Any) -> str:
    with pytest.raises(SettingsError) as info:
        load(config_dir, **layers)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- layers ----------------------------------------------------------------------------------------------------


def test_defaults(empty_dir: Path) -> None:
    settings = load(empty_dir)
    assert settings == Settings()
    crawl = settings.crawl
    assert (crawl.concurrency, crawl.per_host, crawl.delay, crawl.jitter, crawl.timeout) == (16, 2, 0.0, 0.5, 30.0)
    assert (crawl.max_pages, crawl.max_items, crawl.max_depth) == (None, None, None)
    assert crawl.obey_robots is True and crawl.verify is True
    assert crawl.user_agent.startswith("crawler/")
    assert settings.output == OutputSettings(uris=(), batch_size=100, stats_file=None)
    assert settings.log == LogSettings(format="auto", level="info", progress=True, summary_interval=10.0)


def test_settings_are_frozen_and_keyword_only() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Settings().crawl.concurrency = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        CrawlSettings(3)  # type: ignore[misc]


def test_crawler_toml(tmp_path: Path) -> None:
    write(
        tmp_path,
        "crawler.toml",
        '[crawl]\nconcurrency = 4\ndelay = 1\nheaders = { Accept = "text/html" }\n'
        '[output]\nuris = ["a.jsonl", "sqlite:///a.db"]\n[log]\nlevel = "debug"\n',
    )
    settings = load(tmp_path)
    assert settings.crawl.concurrency == 4
    assert settings.crawl.delay == 1.0 and isinstance(settings.crawl.delay, float)
    assert settings.crawl.headers == {"Accept": "text/html"}
    assert settings.output.uris == ("a.jsonl", "sqlite:///a.db")
    assert settings.log.level == "debug"
    assert settings.crawl.per_host == 2  # untouched keys keep their defaults


def test_pyproject_tool_crawler(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n[tool.crawler.crawl]\nper_host = 5\n')
    assert load(tmp_path).crawl.per_host == 5


def test_pyproject_without_tool_crawler_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n[tool.ruff]\nline-length = 100\n')
    assert load(tmp_path) == Settings()


def test_crawler_toml_wins_over_pyproject(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", "[tool.crawler.crawl]\nper_host = 5\nconcurrency = 7\n")
    write(tmp_path, "crawler.toml", "[crawl]\nper_host = 3\n")
    settings = load(tmp_path)
    assert settings.crawl.per_host == 3
    assert settings.crawl.concurrency == 16  # only one config file is read


def test_current_directory_is_the_default_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "crawler.toml", "[crawl]\nconcurrency = 9\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).crawl.concurrency == 9


def test_spider_custom_settings(empty_dir: Path) -> None:
    settings = load(empty_dir, spider=("Books", {"crawl": {"delay": 2.5, "max_pages": 10}}))
    assert settings.crawl.delay == 2.5
    assert settings.crawl.max_pages == 10


def test_environment(empty_dir: Path) -> None:
    environ = {
        "CRAWLER_CRAWL_CONCURRENCY": "32",
        "CRAWLER_CRAWL_PER_HOST": "4",
        "CRAWLER_CRAWL_OBEY_ROBOTS": "false",
        "CRAWLER_CRAWL_DELAY": "0.25",
        "CRAWLER_CRAWL_USER_AGENT": "mybot/1.0 (+https://example.com/bot)",
        "CRAWLER_OUTPUT_URIS": '["a.jsonl", "b.csv"]',
        "CRAWLER_LOG_LEVEL": "warning",
        "HOME": "/root",  # not ours
        "CRAWLER_UNRELATED": "1",  # not a settings group: not ours either
    }
    settings = load(empty_dir, environ=environ)
    assert settings.crawl.concurrency == 32
    assert settings.crawl.per_host == 4
    assert settings.crawl.obey_robots is False
    assert settings.crawl.delay == 0.25
    assert settings.crawl.user_agent == "mybot/1.0 (+https://example.com/bot)"
    assert settings.output.uris == ("a.jsonl", "b.csv")
    assert settings.log.level == "warning"


def test_os_environ_is_the_default(empty_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWLER_CRAWL_CONCURRENCY", "32")
    assert load_settings(config_dir=empty_dir).crawl.concurrency == 32


def test_command_line_pairs_dotted_and_bare(empty_dir: Path) -> None:
    settings = load(
        empty_dir,
        cli_pairs=["crawl.concurrency=8", "per_host = 3", "level=error", "batch_size=7", "user_agent=my bot"],
    )
    assert settings.crawl.concurrency == 8
    assert settings.crawl.per_host == 3
    assert settings.log.level == "error"
    assert settings.output.batch_size == 7
    assert settings.crawl.user_agent == "my bot"


def test_command_line_options(empty_dir: Path) -> None:
    settings = load(empty_dir, cli={"crawl.max_pages": 5, "output.uris": ("x.jsonl",), "crawl.delay": None})
    assert settings.crawl.max_pages == 5
    assert settings.output.uris == ("x.jsonl",)
    assert settings.crawl.delay == 0.0  # None: the option was not given


@pytest.mark.parametrize(
    ("value", "expected"),
    [("items.jsonl", ("items.jsonl",)), ('["a.jsonl", "b.csv"]', ("a.jsonl", "b.csv"))],
)
def test_output_uris_from_a_string(empty_dir: Path, value: str, expected: tuple[str, ...]) -> None:
    """A single URI given as text is one URI, never a tuple of its characters."""
    assert load(empty_dir, cli_pairs=[f"output.uris={value}"]).output.uris == expected
    assert load(empty_dir, environ={"CRAWLER_OUTPUT_URIS": value}).output.uris == expected


def test_output_uris_string_in_config_file(tmp_path: Path) -> None:
    write(tmp_path, "crawler.toml", '[output]\nuris = "items.jsonl"\n')
    try:
        uris = load(tmp_path).output.uris
    except SettingsError as exc:  # rejecting it clearly is acceptable too
        assert "output.uris" in str(exc)
    else:
        assert uris == ("items.jsonl",)


def test_precedence(tmp_path: Path) -> None:
    write(
        tmp_path,
        "crawler.toml",
        "[crawl]\nconcurrency = 2\ndelay = 1.0\nper_host = 3\ntimeout = 5.0\nmax_pages = 100\n",
    )
    settings = load(
        tmp_path,
        spider=("S", {"crawl": {"concurrency": 3, "delay": 2.0, "per_host": 4, "max_pages": 50}}),
        environ={"CRAWLER_CRAWL_CONCURRENCY": "4", "CRAWLER_CRAWL_DELAY": "3.0", "CRAWLER_CRAWL_MAX_PAGES": "25"},
        cli_pairs=["concurrency=5"],
        cli={"crawl.max_pages": 12},
    )
    crawl = settings.crawl
    assert crawl.concurrency == 5  # command line
    assert crawl.max_pages == 12  # command line
    assert crawl.delay == 3.0  # environment
    assert crawl.per_host == 4  # spider
    assert crawl.timeout == 5.0  # file
    assert crawl.jitter == 0.5  # defaults


def test_layers_merge_within_a_group(tmp_path: Path) -> None:
    write(tmp_path, "crawler.toml", "[crawl]\nper_host = 3\n[log]\nlevel = 'debug'\n")
    settings = load(tmp_path, spider=("S", {"crawl": {"concurrency": 6}}))
    assert (settings.crawl.per_host, settings.crawl.concurrency, settings.log.level) == (3, 6, "debug")


def test_loading_leaves_the_layers_unchanged(empty_dir: Path) -> None:
    """custom_settings is a class attribute: merging the layers must not write into it."""
    custom = {"crawl": {"headers": {"X-From": "spider"}, "delay": 1.0}}
    first = load(empty_dir, spider=("S", custom), cli_pairs=['crawl.headers={X-Extra = "cli"}'])
    assert first.crawl.headers == {"X-From": "spider", "X-Extra": "cli"}
    assert custom == {"crawl": {"headers": {"X-From": "spider"}, "delay": 1.0}}
    second = load(empty_dir, spider=("S", custom))
    assert second.crawl.headers == {"X-From": "spider"}


# -- errors name the key and the layer -------------------------------------------------------------------------


def test_unknown_key_in_config_file_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "crawler.toml", "[crawl]\nconcurency = 4\n")
    message = error(tmp_path)
    assert str(path) in message
    assert "crawl.concurency" in message
    assert "did you mean 'concurrency'" in message


def test_unknown_group_suggests(empty_dir: Path) -> None:
    message = error(empty_dir, spider=("Books", {"crawll": {"concurrency": 3}}))
    assert "spider Books" in message
    assert "'crawll'" in message
    assert "did you mean 'crawl'" in message


def test_unknown_key_in_pyproject(tmp_path: Path) -> None:
    path = write(tmp_path, "pyproject.toml", "[tool.crawler.output]\nuri = 'x.jsonl'\n")
    message = error(tmp_path)
    assert str(path) in message
    assert "output.uri" in message
    assert "did you mean 'uris'" in message


def test_unknown_key_in_environment(empty_dir: Path) -> None:
    message = error(empty_dir, environ={"CRAWLER_CRAWL_CONCURENCY": "3"})
    assert "environment" in message
    assert "crawl.concurency" in message
    assert "did you mean 'concurrency'" in message


@pytest.mark.parametrize("pair", ["concurrenc=3", "crawl.concurrenc=3"])
def test_unknown_key_on_command_line(empty_dir: Path, pair: str) -> None:
    message = error(empty_dir, cli_pairs=[pair])
    assert "command line" in message
    assert "concurrenc" in message
    assert "did you mean 'concurrency'" in message


def test_command_line_pair_without_equals(empty_dir: Path) -> None:
    message = error(empty_dir, cli_pairs=["concurrency"])
    assert "command line" in message
    assert "'concurrency'" in message
    assert "KEY=VALUE" in message


@pytest.mark.parametrize(
    ("layer", "label"),
    [
        ("spider", "spider Books"),
        ("environ", "environment"),
        ("cli_pairs", "command line"),
        ("file", "crawler.toml"),
    ],
)
@pytest.mark.parametrize(
    ("key", "raw", "value", "expected"),
    [
        ("crawl.concurrency", '"many"', "many", "expected a whole number"),
        ("crawl.concurrency", "1.5", 1.5, "expected a whole number"),
        ("crawl.delay", '"fast"', "fast", "expected a number"),
        ("crawl.obey_robots", '"yes"', "yes", "expected true or false"),
        ("log.summary_interval", "true", True, "expected a number"),
    ],
)
def test_wrong_type(tmp_path: Path, layer: str, label: str, key: str, raw: str, value: Any, expected: str) -> None:
    message = error(tmp_path, **_layer(tmp_path, layer, key, raw, value))
    assert label in message
    assert key in message
    assert expected in message


@pytest.mark.parametrize(
    ("layer", "label"),
    [("spider", "spider Books"), ("environ", "environment"), ("cli_pairs", "command line"), ("file", "crawler.toml")],
)
@pytest.mark.parametrize(
    ("key", "raw", "value"),
    [
        ("crawl.concurrency", "0", 0),
        ("crawl.per_host", "-1", -1),
        ("crawl.jitter", "1.5", 1.5),
        ("crawl.timeout", "0", 0),
        ("crawl.delay", "-0.5", -0.5),
        ("crawl.max_depth", "-1", -1),
        ("output.batch_size", "0", 0),
    ],
)
def test_out_of_range(tmp_path: Path, layer: str, label: str, key: str, raw: str, value: Any) -> None:
    message = error(tmp_path, **_layer(tmp_path, layer, key, raw, value))
    assert label in message
    assert key.split(".")[1] in message
    assert key.split(".")[0] in message
    assert str(value) in message


@pytest.mark.parametrize(
    ("layer", "label"),
    [("spider", "spider Books"), ("environ", "environment"), ("cli_pairs", "command line"), ("file", "crawler.toml")],
)
@pytest.mark.parametrize(("key", "value"), [("log.format", "xml"), ("log.level", "loud"), ("crawl.backend", "curio")])
def test_bad_literal(tmp_path: Path, layer: str, label: str, key: str, value: str) -> None:
    message = error(tmp_path, **_layer(tmp_path, layer, key, f'"{value}"', value))
    assert label in message
    assert key in message
    assert repr(value) in message
    assert "expected one of" in message


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "crawler.toml", "[crawl]\nconcurrency = 4\ndelay = \n")
    message = error(tmp_path)
    assert str(path) in message
    assert "not valid TOML" in message
    assert "line 3" in message


def test_invalid_pyproject_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "pyproject.toml", "[tool.crawler\n")
    message = error(tmp_path)
    assert str(path) in message
    assert "not valid TOML" in message


def test_error_in_a_lower_layer_is_reported_even_when_overridden(tmp_path: Path) -> None:
    """Each layer is checked on its own: a typo in the file is an error even if the command line sets the key."""
    path = write(tmp_path, "crawler.toml", "[crawl]\nconcurrency = 'x'\n")
    message = error(tmp_path, cli_pairs=["concurrency=4"])
    assert str(path) in message
    assert "crawl.concurrency" in message


def _layer(folder: Path, layer: str, key: str, raw: str, value: Any) -> Mapping[str, Any]:
    """The load_settings arguments that set ``key`` in ``layer``: ``raw`` is its TOML text, ``value`` the value."""
    group, name = key.split(".")
    if layer == "spider":
        return {"spider": ("Books", {group: {name: value}})}
    if layer == "environ":
        return {"environ": {f"CRAWLER_{group.upper()}_{name.upper()}": raw.strip('"')}}
    if layer == "cli_pairs":
        return {"cli_pairs": [f"{key}={raw}"]}
    write(folder, "crawler.toml", f"[{group}]\n{name} = {raw}\n")
    return {}
