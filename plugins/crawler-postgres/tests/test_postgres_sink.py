"""The PostgreSQL sink against a real server: the table it creates, upserts, JSONB values, bad URIs and servers,
a connection terminated mid-crawl, the error table, discovery by URI scheme, and whole crawls of a local site."""

from __future__ import annotations

import logging
import math
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import psycopg
import pytest
import structlog
from crawler import Engine, ItemRecord, Request, Response, Settings, SinkError, SiteSpider, load_settings, open_sink
from crawler.sinks import sink_schemes
from crawler.testing import LocalServer, generate_site
from psycopg import sql
from structlog.testing import capture_logs

from crawler_postgres import PostgresSink

Db = psycopg.Connection[tuple[Any, ...]]
#: The ``uri_for`` fixture: ``uri_for(table, **params)`` -> ``postgresql://...?table=TABLE&...``.
UriFor = Callable[..., str]


def record(item: dict[str, Any], key: str = "k", url: str = "http://example.com/", at: float = 1.0) -> ItemRecord:
    return ItemRecord(key=key, item=item, spider="test", url=url, fetched_at=at)


async def write_all(sink: PostgresSink, *batches: list[ItemRecord]) -> None:
    await sink.open()
    try:
        for batch in batches:
            await sink.write(batch)
    finally:
        await sink.close()


def rows(db: Db, table: str, *schema: str) -> list[tuple[Any, ...]]:
    name = sql.Identifier(*schema, table)
    query = sql.SQL("SELECT key, item, spider, url, fetched_at FROM {} ORDER BY key").format(name)
    return db.execute(query).fetchall()


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def terminate(postgres_uri: str, application_name: str) -> int:
    """Terminate the server processes of the connections named ``application_name``; returns how many."""
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        found = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        ).fetchall()
    return sum(1 for (ok,) in found if ok)


def settings(**crawl: Any) -> Settings:
    cli = {f"crawl.{k}": v for k, v in crawl.items() if k != "batch_size"}
    if "batch_size" in crawl:
        cli["output.batch_size"] = crawl["batch_size"]
    return load_settings(environ={}, cli=cli, config_dir=Path("/nonexistent"))


# -- the table -------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_postgres_open_creates_the_table(db: Db, table: str, uri_for: UriFor) -> None:
    sink = PostgresSink(uri_for(table))
    await sink.open()
    await sink.open()  # opening twice does nothing
    await sink.close()
    await sink.close()

    columns = db.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = %s ORDER BY ordinal_position",
        [table],
    ).fetchall()
    assert columns == [
        ("key", "text", "NO"),
        ("item", "jsonb", "NO"),
        ("spider", "text", "NO"),
        ("url", "text", "NO"),
        ("fetched_at", "timestamp with time zone", "NO"),
    ]
    primary_key = db.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary",
        [table],
    ).fetchall()
    assert primary_key == [("key",)]


@pytest.mark.anyio
async def test_postgres_existing_table_is_kept(db: Db, table: str, uri_for: UriFor) -> None:
    await write_all(PostgresSink(uri_for(table)), [record({"run": 1}, key="a")])
    await write_all(PostgresSink(uri_for(table)), [record({"run": 2}, key="b")])
    assert [(key, item) for key, item, *_ in rows(db, table)] == [("a", {"run": 1}), ("b", {"run": 2})]


@pytest.mark.anyio
async def test_postgres_table_lacking_columns_is_refused(db: Db, table: str, uri_for: UriFor) -> None:
    db.execute(sql.SQL("CREATE TABLE {} (key TEXT, item JSONB)").format(sql.Identifier(table)))
    sink = PostgresSink(uri_for(table))
    with pytest.raises(SinkError, match=r"no column spider, url, fetched_at"):
        await sink.open()
    db.execute(
        sql.SQL("ALTER TABLE {} ADD spider TEXT, ADD url TEXT, ADD fetched_at TIMESTAMPTZ").format(
            sql.Identifier(table)
        )
    )
    with pytest.raises(SinkError, match=r"no primary key or unique index on key"):
        await sink.open()


@pytest.mark.anyio
async def test_postgres_schema_qualified_table(db: Db, schema: str, uri_for: UriFor) -> None:
    sink = PostgresSink(uri_for(f"{schema}.crawled"))
    assert sink.table == f'"{schema}"."crawled"'
    await write_all(sink, [record({"in": "schema"})])
    assert [item for _, item, *_ in rows(db, "crawled", schema)] == [{"in": "schema"}]


@pytest.mark.anyio
async def test_postgres_missing_schema_is_a_sink_error(uri_for: UriFor) -> None:
    sink = PostgresSink(uri_for("no_such_schema_here.items"))
    with pytest.raises(SinkError, match=r'no_such_schema_here.*schema "no_such_schema_here" does not exist'):
        await sink.open()


@pytest.mark.parametrize(
    "name",
    ["items;drop table x", "1items", "a.b.c", "", "x" * 64, 'we"ird', "crawler_postgres_stage", "s.", "naïve"],
)
def test_postgres_bad_table_name_is_a_sink_error(name: str) -> None:
    with pytest.raises(SinkError, match=r"table name") as caught:
        PostgresSink(f"postgresql://u:pw@localhost/db?table={name}")
    assert repr(name) in str(caught.value)
    assert ":pw@" not in str(caught.value)


def test_postgres_other_uris_are_refused() -> None:
    with pytest.raises(SinkError, match=r"not a PostgreSQL output: 'mysql://u:\*\*\*@h/db'"):
        PostgresSink("mysql://u:secret@h/db")
    with pytest.raises(SinkError, match=r'invalid PostgreSQL output .*"bogus"'):
        PostgresSink("postgresql://u:secret@h/db?bogus=1&table=t")


def test_postgres_password_is_hidden_and_query_passed_on() -> None:
    uri = "postgres://crawler:s3cret@db.example:6543/crawl?sslmode=require&password=s3cret&sslpassword=k3y&table=pages"
    sink = PostgresSink(uri)
    assert (
        sink.uri
        == "postgres://crawler:***@db.example:6543/crawl?sslmode=require&password=***&sslpassword=***&table=pages"
    )
    assert repr(sink) == f"PostgresSink({sink.uri!r})"
    assert "s3cret" not in repr(sink.error_sink())
    assert sink.table == '"pages"'


# -- writes ----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_postgres_upsert_on_key(db: Db, table: str, uri_for: UriFor) -> None:
    sink = PostgresSink(uri_for(table))
    await write_all(
        sink,
        [record({"v": 1}, key="a", url="http://x/1", at=100.0), record({"v": 1}, key="b")],
        [record({"v": 2, "new": True}, key="a", url="http://x/2", at=200.5)],
    )
    assert rows(db, table) == [
        ("a", {"v": 2, "new": True}, "test", "http://x/2", datetime.fromtimestamp(200.5, UTC)),
        ("b", {"v": 1}, "test", "http://example.com/", datetime.fromtimestamp(1.0, UTC)),
    ]


@pytest.mark.anyio
async def test_postgres_duplicate_key_in_one_batch_keeps_the_last(db: Db, table: str, uri_for: UriFor) -> None:
    batch = [record({"n": 1}, key="a"), record({"n": 1}, key="b"), record({"n": 2}, key="a"), record({"n": 3}, key="a")]
    await write_all(PostgresSink(uri_for(table)), batch)
    assert [(key, item) for key, item, *_ in rows(db, table)] == [("a", {"n": 3}), ("b", {"n": 1})]


@pytest.mark.anyio
async def test_postgres_jsonb_round_trip(db: Db, table: str, uri_for: UriFor) -> None:
    item = {
        "title": "Café ☕ — naïve 日本語 🕷️",
        "nested": {"list": [1, 2.5, None, True, {"deep": ["ü", []]}], "empty": {}},
        "big": 2**62,
        "quote": 'say "hi"\n\ttab \\ backslash',
    }
    await write_all(PostgresSink(uri_for(table)), [record(item, key="ключ ✓")])
    [(key, stored, *_)] = rows(db, table)
    assert (key, stored) == ("ключ ✓", item)
    assert db.execute(
        sql.SQL("SELECT item->'nested'->'list'->4->'deep'->>0 FROM {}").format(sql.Identifier(table))
    ).fetchone() == ("ü",)


@pytest.mark.anyio
async def test_postgres_values_jsonb_lacks_are_replaced(db: Db, table: str, uri_for: UriFor) -> None:
    item = {"nul": "a\x00b", "nan": math.nan, "inf": [math.inf, -math.inf], "path": Path("/a/b"), "at": (1, 2)}
    await write_all(PostgresSink(uri_for(table)), [record(item, key="k\x00")])
    [(key, stored, *_)] = rows(db, table)
    assert key == "k\ufffd"
    assert stored == {"nul": "a\ufffdb", "nan": "NaN", "inf": ["Infinity", "-Infinity"], "path": "/a/b", "at": [1, 2]}


@pytest.mark.anyio
async def test_postgres_a_failed_batch_writes_nothing(db: Db, table: str, uri_for: UriFor) -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    sink = PostgresSink(uri_for(table))
    await sink.open()
    try:
        with pytest.raises(SinkError, match=r"item 'bad' cannot be stored as JSON"):
            await sink.write([record({"ok": 1}, key="good"), record(cyclic, key="bad")])
        db.execute(sql.SQL("ALTER TABLE {} ADD CHECK (item->>'ok' IS DISTINCT FROM '2')").format(sql.Identifier(table)))
        with pytest.raises(SinkError, match=r"cannot write 2 items to .*check constraint"):
            await sink.write([record({"ok": 1}, key="good"), record({"ok": 2}, key="refused")])
        assert rows(db, table) == []
        await sink.write([record({"ok": 1}, key="good")])  # the connection is still usable
    finally:
        await sink.close()
    assert [key for key, *_ in rows(db, table)] == ["good"]


@pytest.mark.anyio
async def test_postgres_write_before_open_is_a_sink_error(table: str, uri_for: UriFor) -> None:
    with pytest.raises(SinkError, match=r"not open"):
        await PostgresSink(uri_for(table)).write([record({})])


# -- servers that fail -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_postgres_unreachable_server_hides_the_password() -> None:
    port = closed_port()
    sink = PostgresSink(f"postgresql://crawler:hunter2-secret@127.0.0.1:{port}/crawl?table=items")
    with pytest.raises(SinkError) as caught:
        await sink.open()
    message = str(caught.value)
    assert f"cannot connect to 'postgresql://crawler:***@127.0.0.1:{port}/crawl?table=items'" in message
    assert "hunter2" not in message
    assert "hunter2" not in repr(sink) and "hunter2" not in sink.uri


@pytest.mark.anyio
async def test_postgres_refused_login_is_a_sink_error(postgres_uri: str) -> None:
    base = psycopg.conninfo.conninfo_to_dict(postgres_uri)
    host, port = base.get("host", "127.0.0.1"), base.get("port", "5432")
    sink = PostgresSink(f"postgresql://no_such_role:pw-xyz@{host}:{port}/no_such_database")
    with pytest.raises(SinkError, match=r"cannot connect to 'postgresql://no_such_role:\*\*\*@") as caught:
        await sink.open()
    assert "pw-xyz" not in str(caught.value)


@pytest.mark.anyio
async def test_postgres_terminated_connection_is_reopened(
    db: Db, table: str, uri_for: UriFor, postgres_uri: str
) -> None:
    app = f"crawler-test-{uuid.uuid4().hex[:8]}"
    sink = PostgresSink(uri_for(table, application_name=app))
    await sink.open()
    try:
        await sink.write([record({"n": 1}, key="1")])
        assert terminate(postgres_uri, app) == 1

        second = [record({"n": 2}, key="2"), record({"n": 3}, key="3")]
        try:
            await sink.write(second)
        except SinkError as exc:  # what the server says as it goes, or that the connection is gone
            assert table in str(exc)
            assert "reopened on the next write" in str(exc)
            await sink.write(second)  # as the core retries it
        await sink.write([record({"n": 4}, key="4")])
    finally:
        await sink.close()
    assert [key for key, *_ in rows(db, table)] == ["1", "2", "3", "4"]


# -- the error table, discovery --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_postgres_error_sink_writes_the_errors_table(db: Db, schema: str, uri_for: UriFor) -> None:
    sink = PostgresSink(uri_for(f"{schema}.items", application_name="crawler-test"))
    errors = sink.error_sink()
    assert isinstance(errors, PostgresSink) and errors is not sink
    assert errors.table == f'"{schema}"."errors"'
    assert errors.uri.endswith(f"application_name=crawler-test&table={schema}.errors")

    await write_all(errors, [record({"error": "gave up", "status": 503}, key="req-1")])
    assert [(key, item) for key, item, *_ in rows(db, "errors", schema)] == [
        ("req-1", {"error": "gave up", "status": 503})
    ]
    exists = db.execute("SELECT to_regclass(%s)", [f'"{schema}"."items"']).fetchone()
    assert exists == (None,)  # the item sink was never opened


def test_postgres_error_sink_of_an_unqualified_table() -> None:
    errors = PostgresSink("postgresql://u:pw@h/db?table=pages").error_sink()
    assert (errors.table, errors.uri) == ('"errors"', "postgresql://u:***@h/db?table=errors")


@pytest.mark.anyio
async def test_postgres_found_by_uri_scheme(db: Db, table: str, uri_for: UriFor) -> None:
    assert {"postgresql", "postgres"} <= set(sink_schemes())
    uri = uri_for(table)
    sink = open_sink(uri)
    assert isinstance(sink, PostgresSink)
    assert isinstance(open_sink(uri.replace("postgresql://", "postgres://", 1)), PostgresSink)
    await write_all(sink, [record({"via": "entry point"})])
    assert [item for _, item, *_ in rows(db, table)] == [{"via": "entry point"}]


# -- whole crawls ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_postgres_crawl_stores_one_row_per_page_and_a_second_crawl_adds_none(
    db: Db, schema: str, uri_for: UriFor
) -> None:
    uri = uri_for(f"{schema}.pages")  # its error table is the schema's, dropped with it
    with LocalServer(generate_site(pages=50, seed=11)) as server:
        site = server.site
        assert site is not None
        expected = site.reachable_urls()
        assert len(expected) == 50

        first = await Engine(SiteSpider([site.url()]), settings(concurrency=4), sinks=[PostgresSink(uri)]).run()
        stored = rows(db, "pages", schema)
        assert sorted(item["url"] for _, item, *_ in stored) == sorted(expected)
        assert {url for *_, url, _ in stored} == expected
        assert first.reason == "finished"

        await Engine(SiteSpider([site.url()]), settings(concurrency=4), sinks=[PostgresSink(uri)]).run()
        again = rows(db, "pages", schema)

    assert len(again) == len(stored) == 50
    assert [key for key, *_ in again] == [key for key, *_ in stored]
    assert all(new[4] >= old[4] for new, old in zip(again, stored, strict=True))  # rewritten, not added
    assert rows(db, "errors", schema) == []  # the core's default error sink: this sink's error_sink()


class TerminatingSpider(SiteSpider):
    """Terminates the sink's server connection (by its application_name) after ``after`` pages."""

    def __init__(self, start: str, postgres_uri: str, application_name: str, after: int) -> None:
        super().__init__([start])
        self.postgres_uri, self.application_name, self.after = postgres_uri, application_name, after
        self.pages = 0
        self.terminated = 0

    async def parse(self, response: Response) -> AsyncIterator[Request | dict[str, Any]]:
        self.pages += 1
        if self.pages == self.after:
            self.terminated = await anyio.to_thread.run_sync(terminate, self.postgres_uri, self.application_name)
        async for out in super().parse(response):
            yield out


@pytest.mark.anyio
async def test_postgres_crawl_survives_a_terminated_connection(
    db: Db, schema: str, uri_for: UriFor, postgres_uri: str
) -> None:
    app = f"crawler-test-{uuid.uuid4().hex[:8]}"
    with LocalServer(generate_site(pages=50, seed=12)) as server:
        site = server.site
        assert site is not None
        spider = TerminatingSpider(site.url(), postgres_uri, app, after=20)
        started = time.monotonic()
        sink = PostgresSink(uri_for(f"{schema}.pages", application_name=app))
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # conftest resets
        with capture_logs() as logs:
            stats = await Engine(spider, settings(concurrency=2, batch_size=5), sinks=[sink]).run()
        expected = site.reachable_urls()

    assert spider.terminated >= 1  # the item sink's connection, and its error sink's if the core opened one
    assert stats.reason == "finished"
    retries = [e for e in logs if e["event"] == "sink write failed, retrying" and e["sink"] == sink.uri]
    assert retries  # the write after the termination failed, and the core's retry got through
    assert {url for *_, url, _ in rows(db, "pages", schema)} == expected
    assert time.monotonic() - started < 20
