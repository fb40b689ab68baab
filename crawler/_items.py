"""Items on their way to the sinks: :class:`ItemRecord` and the conversion of user items to plain data."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

__all__ = ["ItemRecord", "to_plain"]

_converter = cattrs.Converter()


def to_plain(item: Any) -> dict[str, Any]:
    """Turn a user item into a plain dict of JSON-compatible values.

    Accepts a mapping, an attrs instance or a dataclass instance (unstructured by cattrs).  Raises TypeError
    naming the type for anything else.
    """
    if isinstance(item, Mapping):
        return dict(item)
    if attrs.has(type(item)) or dataclasses.is_dataclass(item):
        plain = _converter.unstructure(item)
        if isinstance(plain, dict):
            return plain
    raise TypeError(
        f"a callback yielded {type(item).__name__!s} {item!r:.80}; yield a Request, a dict, or an attrs/dataclass item"
    )


@attrs.frozen(kw_only=True)
class ItemRecord:
    """One item as the sinks receive it: ``key`` (stable identity for sinks that upsert), ``item`` (a plain dict),
    the ``spider`` name, the ``url`` of the response it came from and ``fetched_at`` (seconds since the epoch)."""

    key: str
    item: dict[str, Any]
    spider: str
    url: str
    fetched_at: float
