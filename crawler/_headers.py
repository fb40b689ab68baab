"""Case-insensitive access to HTTP header fields, whatever container holds them.

:func:`crawler._ratelimit_headers.parse_rate_limit` takes headers in any of these shapes (:data:`HeadersLike`),
and :func:`header_values` gets the field values that :func:`crawler._link_header.parse_link_header` and
:func:`crawler._retry_after.parse_retry_after` read:

- ``httpx.Headers``: read through ``multi_items()``, so repeated fields stay separate values;
- ``multidict.CIMultiDict`` / ``CIMultiDictProxy`` (aiohttp), or any other :class:`~collections.abc.Mapping`
  of names to values (a plain ``dict``, ``multidict.MultiDict``): read through ``items()``, every pair;
- any other iterable of ``(name, value)`` pairs, such as a raw header list.

Names are compared case-insensitively (RFC 9110 §5.1), in every shape, even for a plain ``dict``.  Names and
values may be ``str`` or ``bytes`` (decoded as ISO-8859-1, as HTTP/1.1 does).  Values are returned exactly as
stored: a field sent on several lines yields several values, in order; a container that already joined them
(``dict``) yields one value, joined with ``", "`` (RFC 9110 §5.3).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["HeadersLike", "header_map", "header_values"]

#: Any header container accepted by the header parsers: a mapping of names to values (its ``items()`` are read),
#: an object with ``multi_items()`` (``httpx.Headers``), or an iterable of ``(name, value)`` pairs.
HeadersLike: TypeAlias = Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return str(value)


def _pairs(headers: HeadersLike) -> Iterable[tuple[Any, Any]]:
    multi_items = getattr(headers, "multi_items", None)
    if callable(multi_items):  # httpx.Headers: items() would join repeated fields with ", "
        pairs: Iterable[tuple[Any, Any]] = multi_items()
        return pairs
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def header_map(headers: HeadersLike) -> dict[str, list[str]]:
    """Return every field as ``{lower-cased name: [value, ...]}``, values in the order they were sent.

    Of an iterable, members that are not 2-tuples (or 2-lists) are skipped; nothing is raised for odd content.
    """
    result: dict[str, list[str]] = {}
    try:
        for pair in _pairs(headers):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                continue
            name, value = pair
            result.setdefault(_text(name).strip().lower(), []).append(_text(value))
    except TypeError:  # not iterable at all
        return {}
    return result


def header_values(headers: HeadersLike, name: str) -> list[str]:
    """Return the values of the field ``name`` (case-insensitive), in order; ``[]`` if it is absent.

    ``httpx.Headers.get_list`` and ``CIMultiDict.getall`` are used when present; any other container is scanned.
    To look up many fields, build :func:`header_map` once instead.
    """
    get_list = getattr(headers, "get_list", None)
    if callable(get_list):  # httpx.Headers
        return [_text(value) for value in get_list(name)]
    if isinstance(headers, CIMultiDict | CIMultiDictProxy):  # aiohttp
        return [_text(value) for value in headers.getall(name, ())]
    return header_map(headers).get(name.lower(), [])
