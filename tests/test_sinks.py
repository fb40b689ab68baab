"""The built-in sinks (JSON Lines, CSV, SQLite) written to temporary files, and sink lookup by URI."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from crawler import ItemRecord, SinkError, open_sink
from crawler.sinks import CsvSink, JsonLinesSink, Sink, SqliteSink

pytestmark = pytest.mark.anyio


def record(item: dict[str, Any], key: str = "k", url: str = "http://example.com/", at: float = 1.0) -> ItemRecord:
    return ItemRecord(key=key, item=item, spider="test", url=url, fetched_at=at)


async def write_all(sink: Sink, *batches: list[ItemRecord]) -> None:
    await sink.open()
    try:
        for batch in batches:
            await sink.write(batch)
    finally:
        await sink.close()


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def table_rows(path: Path, table: str = "items") -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT key, spider, url, fetched_at, item FROM {table} ORDER BY key").fetchall()


def database_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm")))


# -- JSON Lines ------------------------------------------------------------------------------------------------


async def test_jsonl_writes_one_object_per_line_and_keeps_unicode(tmp_path: Path) -> None:
    out = tmp_path / "items.jsonl"
    sink = JsonLinesSink(str(out))
    await write_all(sink, [record({"name": "Café ☕", "n": 1}), record({"name": "naïve", "tags": ["ü"]})])

    text = out.read_text(encoding="utf-8")
    assert "Café ☕" in text  # written as UTF-8, not \u escapes
    assert [json.loads(line) for line in text.splitlines()] == [
        {"name": "Café ☕", "n": 1},
        {"name": "naïve", "tags": ["ü"]},
    ]


async def test_jsonl_appends_to_an_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "items.jsonl"
    await write_all(JsonLinesSink(str(out)), [record({"run": 1})])
    await write_all(JsonLinesSink(str(out)), [record({"run": 2})], [record({"run": 3})])

    assert [json.loads(line)["run"] for line in out.read_text().splitlines()] == [1, 2, 3]


async def test_jsonl_writes_non_json_values_as_text(tmp_path: Path) -> None:
    out = tmp_path / "items.jsonl"
    await write_all(JsonLinesSink(str(out)), [record({"path": Path("/a/b")})])
    assert json.loads(out.read_text()) == {"path": "/a/b"}


async def test_jsonl_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = open_sink("-")
    await write_all(sink, [record({"out": "stdout"})])
    assert json.loads(capsys.readouterr().out) == {"out": "stdout"}


async def test_jsonl_open_failure_is_a_sink_error(tmp_path: Path) -> None:
    sink = JsonLinesSink(str(tmp_path / "missing" / "items.jsonl"))
    with pytest.raises(SinkError, match=r"items\.jsonl"):
        await sink.open()


# -- CSV -------------------------------------------------------------------------------------------------------


async def test_csv_writes_a_header_and_rows(tmp_path: Path) -> None:
    out = tmp_path / "items.csv"
    await write_all(CsvSink(str(out)), [record({"title": "a, b", "n": 1}), record({"title": 'say "hi"', "n": 2})])

    header, rows = read_csv(out)
    assert header == ["title", "n"]
    assert rows == [{"title": "a, b", "n": "1"}, {"title": 'say "hi"', "n": "2"}]


async def test_csv_widens_the_header_without_losing_rows(tmp_path: Path) -> None:
    out = tmp_path / "items.csv"
    await write_all(
        CsvSink(str(out)),
        [record({"a": "1"}), record({"a": "2"})],
        [record({"a": "3", "b": "x"})],
        [record({"c": "only c"}), record({"a": "5"})],
    )

    header, rows = read_csv(out)
    assert header == ["a", "b", "c"]
    assert rows == [
        {"a": "1", "b": "", "c": ""},
        {"a": "2", "b": "", "c": ""},
        {"a": "3", "b": "x", "c": ""},
        {"a": "", "b": "", "c": "only c"},
        {"a": "5", "b": "", "c": ""},
    ]


async def test_csv_new_field_within_the_first_batch(tmp_path: Path) -> None:
    out = tmp_path / "items.csv"
    await write_all(CsvSink(str(out)), [record({"a": "1"}), record({"b": "2"})])

    header, rows = read_csv(out)
    assert header == ["a", "b"]
    assert rows == [{"a": "1", "b": ""}, {"a": "", "b": "2"}]


async def test_csv_writes_nested_values_as_json(tmp_path: Path) -> None:
    out = tmp_path / "items.csv"
    item = {"tags": ["x", "ü"], "meta": {"k": [1, 2]}, "pair": (1, 2)}
    await write_all(CsvSink(str(out)), [record(item)])

    _, rows = read_csv(out)
    assert json.loads(rows[0]["tags"]) == ["x", "ü"]
    assert json.loads(rows[0]["meta"]) == {"k": [1, 2]}
    assert json.loads(rows[0]["pair"]) == [1, 2]


async def test_csv_multiline_values_survive_a_rewrite(tmp_path: Path) -> None:
    out = tmp_path / "items.csv"
    await write_all(CsvSink(str(out)), [record({"text": "line 1\nline 2"})], [record({"text": "x", "new": "y"})])

    header, rows = read_csv(out)
    assert header == ["text", "new"]
    assert rows == [{"text": "line 1\nline 2", "new": ""}, {"text": "x", "new": "y"}]


# -- SQLite ----------------------------------------------------------------------------------------------------


async def test_sqlite_creates_the_table_and_stores_json(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    sink = SqliteSink(f"sqlite:///{db}")
    await write_all(sink, [record({"title": "é", "n": [1]}, key="a", url="http://x/a", at=12.5)])

    assert table_rows(db) == [("a", "test", "http://x/a", 12.5, '{"title": "é", "n": [1]}')]


async def test_sqlite_upserts_on_key(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    await write_all(
        SqliteSink(f"sqlite:///{db}"),
        [record({"v": 1}, key="same", at=1.0), record({"v": 10}, key="other", at=1.0)],
        [record({"v": 2}, key="same", at=2.0)],
    )
    # a second run (a resumed crawl) replaces, never duplicates
    await write_all(SqliteSink(f"sqlite:///{db}"), [record({"v": 3}, key="same", at=3.0)])

    rows = table_rows(db)
    assert [(key, at, json.loads(item)) for key, _, _, at, item in rows] == [
        ("other", 1.0, {"v": 10}),
        ("same", 3.0, {"v": 3}),
    ]


async def test_sqlite_same_key_twice_in_one_batch_keeps_the_later(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    await write_all(SqliteSink(str(db)), [record({"v": 1}, key="k"), record({"v": 2}, key="k")])
    assert [json.loads(row[4]) for row in table_rows(db)] == [{"v": 2}]


async def test_sqlite_table_from_the_uri(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    sink = open_sink(f"sqlite:///{db}?table=books")
    assert isinstance(sink, SqliteSink)
    assert sink.table == "books"
    await write_all(sink, [record({"v": 1})])

    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"books"}
    assert len(table_rows(db, "books")) == 1


async def test_sqlite_table_from_a_plain_path_uri(tmp_path: Path) -> None:
    """``PATH.db?table=NAME``: open_sink accepts it as SQLite, so the table must be NAME and the file PATH.db."""
    db = tmp_path / "crawl.db"
    sink = open_sink(f"{db}?table=books")
    assert isinstance(sink, SqliteSink)
    await write_all(sink, [record({"v": 1})])

    assert database_files(tmp_path) == ["crawl.db"]
    assert len(table_rows(db, "books")) == 1


def test_sqlite_absolute_and_relative_paths(tmp_path: Path) -> None:
    assert SqliteSink(f"sqlite:///{tmp_path}/a.db").path == f"{tmp_path}/a.db"  # sqlite:////abs/path
    assert SqliteSink("sqlite:///rel/a.db").path == "rel/a.db"
    assert SqliteSink("items.db").path == "items.db"


@pytest.mark.parametrize("table", ["bad%20name", "x;DROP%20TABLE%20items", "1abc", "t-1", "items.x"])
def test_sqlite_bad_table_name_is_a_sink_error(table: str) -> None:
    with pytest.raises(SinkError, match="invalid table name") as info:
        open_sink(f"sqlite:///x.db?table={table}")
    assert "sqlite:///x.db" in str(info.value)


async def test_sqlite_unopenable_database_is_a_sink_error(tmp_path: Path) -> None:
    sink = SqliteSink(f"sqlite:///{tmp_path}/missing/dir/x.db")
    with pytest.raises(SinkError, match=r"missing/dir/x\.db"):
        await sink.open()


# -- lookup by URI ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("-", JsonLinesSink),
        ("items.jsonl", JsonLinesSink),
        ("out/items.JSONL", JsonLinesSink),
        ("items.jl", JsonLinesSink),
        ("items.ndjson", JsonLinesSink),
        ("items.csv", CsvSink),
        ("csv://items.csv", CsvSink),
        ("sqlite:///x.db", SqliteSink),
        ("sqlite:////tmp/x.db", SqliteSink),
        ("x.db", SqliteSink),
        ("x.sqlite3", SqliteSink),
    ],
)
def test_open_sink_dispatches_on_the_uri(uri: str, kind: type) -> None:
    sink = open_sink(uri)
    assert type(sink) is kind
    assert sink.uri == uri


def test_open_sink_paths() -> None:
    assert JsonLinesSink("-").path is None
    assert CsvSink("csv://out/items.csv").path == "out/items.csv"
    assert JsonLinesSink("jsonl://out/items").path == "out/items"


@pytest.mark.parametrize("uri", ["ftp://host/items", "mongodb://localhost/db", "items.txt", "items"])
def test_open_sink_unknown_output_names_it(uri: str) -> None:
    with pytest.raises(SinkError) as info:
        open_sink(uri)
    assert repr(uri) in str(info.value)
    assert "sqlite:///" in str(info.value)  # and says what is known


async def test_opened_by_uri_and_written(tmp_path: Path) -> None:
    for name in ("a.jsonl", "a.csv", "a.db"):
        sink = open_sink(str(tmp_path / name))
        await write_all(sink, [record({"n": 1})])
    assert json.loads((tmp_path / "a.jsonl").read_text()) == {"n": 1}
    assert read_csv(tmp_path / "a.csv")[1] == [{"n": "1"}]
    assert len(table_rows(tmp_path / "a.db")) == 1


@pytest.mark.parametrize("name", ["a.jsonl", "a.csv", "a.db"])
async def test_file_uri_writes_to_its_path(tmp_path: Path, name: str) -> None:
    """open_sink accepts ``file://`` URIs (RFC 8089) for every file sink, so the sink must write to the path."""
    sink = open_sink(f"file://{tmp_path}/{name}")
    try:
        await write_all(sink, [record({"n": 1})])
    except SinkError as exc:
        pytest.fail(f"file:// URI not written: {exc}")
    assert (tmp_path / name).is_file()
