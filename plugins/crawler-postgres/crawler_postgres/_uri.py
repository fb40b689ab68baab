"""PostgreSQL output URIs: the target table, the libpq connection string, and the URI with its password hidden.

``postgresql://[user[:password]@][host][:port][/dbname][?param=value&...]`` (or ``postgres://``), as libpq reads
it (PostgreSQL documentation, "Connection URIs", section 34.1.1).  ``table`` is ours; every other query parameter
is a libpq connection parameter and goes to libpq unchanged.  Pure: no I/O.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

import attrs
import psycopg
from crawler import SinkError
from psycopg.conninfo import conninfo_to_dict

__all__ = ["STAGE_TABLE", "Target", "parse_uri", "redact"]

SCHEMES = ("postgresql", "postgres")
DEFAULT_TABLE = "items"
ERRORS_TABLE = "errors"
#: The temporary table a batch is copied into before the upsert; a target table may not share its name.
STAGE_TABLE = "crawler_postgres_stage"
CONNECT_TIMEOUT = "10"  # seconds libpq waits for a connection, unless the URI or PGCONNECT_TIMEOUT says
APPLICATION_NAME = "crawler"  # shown in pg_stat_activity, unless the URI or PGAPPNAME says
MAX_IDENTIFIER = 63  # bytes: PostgreSQL truncates longer names (NAMEDATALEN - 1)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HIDDEN = "***"
#: libpq parameters whose values are hidden like the password of the user info.
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


@attrs.frozen(kw_only=True)
class Target:
    """Where a sink writes.

    ``conninfo``: the URI without ``table``, for libpq; ``connect_kwargs``: libpq parameters added when neither the
    URI nor the environment sets them (``connect_timeout`` in seconds, ``application_name``); ``schema`` (None: the
    first schema of the ``search_path``) and ``table``: the table, validated; ``redacted``: the URI as given with
    any password replaced by ``***``; ``passwords``: the passwords the URI holds, to scrub from messages.
    """

    conninfo: str
    connect_kwargs: dict[str, str]
    schema: str | None
    table: str
    redacted: str
    passwords: tuple[str, ...]

    @property
    def qualified(self) -> str:
        """The table as SQL text, each part double-quoted: ``"crawl"."items"``."""
        return ".".join(f'"{part}"' for part in self.parts)

    @property
    def parts(self) -> tuple[str, ...]:
        """``(schema, table)`` or ``(table,)``."""
        return (self.table,) if self.schema is None else (self.schema, self.table)

    def with_table(self, table: str) -> Target:
        """The same database with another table, ``NAME`` or ``SCHEMA.NAME``; raises :class:`crawler.SinkError`
        for a bad name."""
        sep = "&" if "?" in self.conninfo else "?"
        redacted = f"{redact(self.conninfo)}{sep}table={table}"
        schema, name = _split_table(table, redacted)
        return attrs.evolve(self, schema=schema, table=name, redacted=redacted)

    def scrub(self, text: str) -> str:
        """``text`` on one line, with every password of the URI replaced by ``***``."""
        return _scrub(text, self.passwords)


def parse_uri(uri: str) -> Target:
    """Parse a ``postgresql://`` output URI; ``?table=`` is ``NAME`` or ``SCHEMA.NAME`` (default ``items``).

    Raises :class:`crawler.SinkError`, naming the URI with its password hidden, for another scheme, a bad table
    name (letters, digits and underscores, not starting with a digit, at most 63 bytes per part) or a URI that
    libpq cannot parse (an unknown parameter, a bad percent-escape).
    """
    redacted = redact(uri)
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if scheme not in SCHEMES:
        raise SinkError(f"not a PostgreSQL output: {redacted!r}; use postgresql://user@host:port/dbname?table=items")
    base, _, query = uri.partition("?")
    kept: list[str] = []
    given_table = DEFAULT_TABLE
    passwords = {_userinfo_password(base)}
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        name = unquote(name)
        if name == "table":
            given_table = unquote(value)
            continue
        if name in SECRET_PARAMETERS:
            passwords.add(unquote(value))
        kept.append(pair)
    secrets = tuple(sorted((p for p in passwords if p), key=len, reverse=True))
    schema, table = _split_table(given_table, redacted)
    conninfo = base + ("?" + "&".join(kept) if kept else "")
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise SinkError(f"invalid PostgreSQL output {redacted!r}: {_scrub(str(exc), secrets)}") from None
    defaults = {
        "connect_timeout": ("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT),
        "application_name": ("PGAPPNAME", APPLICATION_NAME),
    }
    connect_kwargs = {
        key: value for key, (env, value) in defaults.items() if key not in params and not os.environ.get(env)
    }
    return Target(
        conninfo=conninfo,
        connect_kwargs=connect_kwargs,
        schema=schema,
        table=table,
        redacted=redacted,
        passwords=secrets,
    )


def redact(uri: str) -> str:
    """``uri`` with the password of its user info and the values of its ``password`` and ``sslpassword`` query
    parameters replaced by ``***``."""
    base, question, query = uri.partition("?")
    scheme, sep, rest = base.partition("://")
    if sep:
        authority, slash, path = rest.partition("/")
        userinfo, at, hosts = authority.rpartition("@")
        if at and ":" in userinfo:
            userinfo = userinfo.partition(":")[0] + ":" + _HIDDEN
        base = f"{scheme}{sep}{userinfo}{at}{hosts}{slash}{path}"
    if question:
        pairs = [
            f"{name}={_HIDDEN}" if unquote(name) in SECRET_PARAMETERS else pair
            for pair in query.split("&")
            for name in [pair.partition("=")[0]]
        ]
        query = "&".join(pairs)
    return f"{base}{question}{query}"


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    text = " ".join(text.split())
    for secret in secrets:
        text = text.replace(secret, _HIDDEN)
    return text


def _userinfo_password(base: str) -> str:
    rest = base.partition("://")[2]
    userinfo, at, _ = rest.partition("/")[0].rpartition("@")
    return unquote(userinfo.partition(":")[2]) if at else ""


def _split_table(table: str, redacted: str) -> tuple[str | None, str]:
    parts = table.split(".")
    valid = len(parts) <= 2 and all(_IDENT.match(p) and len(p.encode()) <= MAX_IDENTIFIER for p in parts)
    if not valid:
        raise SinkError(
            f"invalid table name {table!r} in output {redacted!r}: use NAME or SCHEMA.NAME, each of letters, "
            f"digits and underscores, not starting with a digit, at most {MAX_IDENTIFIER} characters"
        )
    if parts[-1] == STAGE_TABLE:
        raise SinkError(f"table name {table!r} in output {redacted!r} is reserved for the sink's staging table")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
