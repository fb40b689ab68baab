"""Fixtures for the PostgreSQL sink: a real server (``CRAWLER_TEST_POSTGRES``, by default
``postgresql://postgres@127.0.0.1:5432/test``), a table and a schema of its own for each test, dropped after it,
and every async test on asyncio and on trio.

Without a server the tests are skipped, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
import structlog
from psycopg import sql

DEFAULT_URI = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Only errors from the crawls' structlog loggers, and the previous configuration back afterwards."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def postgres_uri() -> str:
    """The test server's URI (no ``table``); skips (fails in CI) when it cannot be reached."""
    uri = os.environ.get("CRAWLER_TEST_POSTGRES", DEFAULT_URI)
    try:
        with psycopg.connect(uri, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        reason = (
            f"no PostgreSQL server for the sink tests at CRAWLER_TEST_POSTGRES or {DEFAULT_URI} "
            f"({' '.join(str(exc).split())})"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return uri


@pytest.fixture
def db(postgres_uri: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A separate autocommit connection to the test database, to look at what the sink wrote."""
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        yield conn


@pytest.fixture
def table(db: psycopg.Connection[tuple[object, ...]]) -> Iterator[str]:
    """A fresh table name, dropped after the test."""
    name = f"test_sink_{uuid.uuid4().hex[:12]}"
    yield name
    db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def schema(db: psycopg.Connection[tuple[object, ...]]) -> Iterator[str]:
    """A fresh, existing schema, dropped with its tables after the test."""
    name = f"test_schema_{uuid.uuid4().hex[:12]}"
    db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def uri_for(postgres_uri: str) -> Callable[..., str]:
    """``uri_for(table, **params)``: the test server's URI with ``?table=`` and further query parameters."""

    def make(table: str, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"table": table, **params}.items())
        return f"{postgres_uri}{'&' if '?' in postgres_uri else '?'}{query}"

    return make
