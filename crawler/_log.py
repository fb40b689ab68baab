"""Logging set-up: structlog, readable on a terminal and JSON otherwise, with secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "get_logger", "redact"]

_SECRET_KEYS = re.compile(r"(authorization|cookie|api[_-]?key|token|secret|password|passwd)", re.IGNORECASE)
_SECRET_QUERY = re.compile(
    r"([?&;][^=&#\s]*(?:key|token|secret|password|passwd|sig|signature|auth|session|credential)[^=&#\s]*=)[^&#\s]+",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(://[^/@\s:]+:)[^/@\s]+@")


def redact(text: str) -> str:
    """Hide secrets that can hide in a URL or message: passwords in ``user:pass@``, and the values of query
    parameters named like keys, tokens, secrets and signatures."""
    return _USERINFO.sub(r"\1***@", _SECRET_QUERY.sub(r"\1***", text))


def _redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and key != "event":
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = redact(value)
    return event


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time, so that the live progress display, which redirects it
    while it runs, prints log lines above itself instead of being overwritten by them."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog: ``fmt`` is ``console``, ``json`` or ``auto`` (console when stderr is a terminal);
    ``level`` a level name.  Logs go to stderr so that ``-o -`` keeps stdout for items."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    """A structlog logger with ``context`` bound."""
    return structlog.get_logger("crawler").bind(**context)
