"""Parse the HTTP ``Link`` header field (RFC 8288 §3, parsing algorithm of Appendix B): pure functions.

Grammar (RFC 8288 §3, RFC 9110 §5.6)::

    Link       = #link-value
    link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )
    link-param = token BWS [ "=" BWS ( token / quoted-string ) ]

For example ``Link: <https://api.example.com/items?page=3>; rel="next", </items?page=50>; rel=last``.

httpx's ``Response.links`` misses several relations in one ``rel``, relative targets, ``REL=``, quoted ``;``
``,`` ``=`` and repeated parameters, so crawler parses the field itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from urllib.parse import unquote, urljoin

import attrs

__all__ = ["Link", "find_link", "parse_link_header"]

_OWS = " \t"
_RWS = re.compile(r"[ \t\r\n]+")


def _frozen_params(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class Link:
    """One link of a ``Link`` header field: a frozen value.

    - ``url``: the target, resolved against the ``base_url`` given to :func:`parse_link_header` (RFC 3986 §5.2);
      as written (surrounding whitespace removed) when there was no base URL.
    - ``rels``: the relation types of the first ``rel`` parameter, split on whitespace and lower-cased
      (``rel="next last"`` gives ``{"next", "last"}``); empty if there was no ``rel``.
    - ``params``: the other parameters, read-only, names lower-cased, values unquoted and unescaped
      (``title``, ``type``, ``hreflang``, ``media``, ``anchor`` as written, unresolved, ...); a parameter
      without a value maps to ``""``.  Of a repeated parameter the first occurrence counts.  An RFC 8187
      ``title*=UTF-8'de'n%c3%a4chstes`` is decoded and stored as ``title``, replacing a plain ``title``.

    Links are equal when url, rels and params are; the hash ignores ``params``.
    """

    url: str
    rels: frozenset[str] = frozenset()
    params: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_params, hash=False)

    def __repr__(self) -> str:
        return f"Link(url={self.url!r}, rels={self.rels!r}, params={dict(self.params)!r})"


def find_link(links: Iterable[Link], rel: str) -> Link | None:
    """Return the first link whose relation types include ``rel`` (compared case-insensitively), else ``None``.

    A ``rel="next"`` paginator needs
    ``find_link(parse_link_header(header_values(headers, "link"), base_url=request_url), "next")``.
    """
    wanted = rel.strip().lower()
    for link in links:
        if wanted in link.rels:
            return link
    return None


def parse_link_header(values: str | Sequence[str], base_url: str | None = None) -> tuple[Link, ...]:
    """Return the links of one ``Link`` field value (a ``str``) or of several field lines (a sequence), in order.

    Follows RFC 8288 Appendix B.2-B.4, more forgiving of errors: where the RFC stops at the first malformed
    link, this skips that link (up to the next comma outside ``<...>`` and quoted strings) and goes on.

    - Several links per line, separated by commas, and several lines; commas and semicolons inside ``<...>`` and
      inside quoted strings belong to them.
    - Parameter names are case-insensitive (``REL=next``); values are tokens or quoted strings, in which ``\\``
      escapes the next character.  An unquoted value runs to the next ``;`` or ``,`` (trailing whitespace
      removed).  An unterminated quoted string runs to the end of the line.
    - ``rel``: only the first occurrence counts (RFC 8288 §3.3); its value is split on whitespace.
    - Targets are resolved against ``base_url`` (the request URL, RFC 8288 §3.1) with :func:`urllib.parse.urljoin`;
      a target that cannot be resolved (``<http://[::1>``) drops that link.

    Raises nothing: text that is not a link is skipped.
    """
    lines = [values] if isinstance(values, str) else list(values)
    links: list[Link] = []
    for line in lines:
        if isinstance(line, str):
            links.extend(_parse_line(line, base_url))
    return tuple(links)


def _parse_line(text: str, base_url: str | None) -> Iterable[Link]:
    pos, end = 0, len(text)
    while pos < end:
        pos = _skip(text, pos, _OWS + ",")
        if pos >= end:
            return
        if text[pos] != "<":
            pos = _skip_link(text, pos)
            continue
        close = text.find(">", pos + 1)
        if close < 0:
            return  # no end to the target: nothing more can be read from this line
        target = text[pos + 1 : close].strip()
        params, pos = _parse_params(text, close + 1)
        pos = _skip(text, pos, _OWS)
        if pos < end and text[pos] != ",":  # junk after the parameters: the link is malformed
            pos = _skip_link(text, pos)
            continue
        link = _make_link(target, params, base_url)
        if link is not None:
            yield link


def _parse_params(text: str, pos: int) -> tuple[list[tuple[str, str]], int]:
    """RFC 8288 Appendix B.3: read ``; name[=value]`` pairs; return them and the position after the last one."""
    params: list[tuple[str, str]] = []
    end = len(text)
    while True:
        pos = _skip(text, pos, _OWS)
        if pos >= end or text[pos] != ";":
            return params, pos
        pos = _skip(text, pos + 1, _OWS)
        start = pos
        while pos < end and text[pos] not in ' \t=;,"':
            pos += 1
        name = text[start:pos].lower()
        pos = _skip(text, pos, _OWS)
        value = ""
        if pos < end and text[pos] == "=":
            pos = _skip(text, pos + 1, _OWS)
            if pos < end and text[pos] == '"':
                value, pos = _parse_quoted(text, pos)
            else:
                start = pos
                while pos < end and text[pos] not in ";,":
                    pos += 1
                value = text[start:pos].rstrip(_OWS)
        if name:
            params.append((name, value))


def _parse_quoted(text: str, pos: int) -> tuple[str, int]:
    """RFC 8288 Appendix B.4: ``text[pos]`` is ``"``; return the unescaped content and the position after it."""
    out: list[str] = []
    pos += 1
    end = len(text)
    while pos < end:
        char = text[pos]
        if char == "\\":
            if pos + 1 < end:
                out.append(text[pos + 1])
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    return "".join(out), pos


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _skip_link(text: str, pos: int) -> int:
    """Return the position of the next comma that is outside ``<...>`` and quoted strings (or the end)."""
    end = len(text)
    while pos < end:
        char = text[pos]
        if char == ",":
            return pos
        if char == '"':
            pos = _parse_quoted(text, pos)[1]
        elif char == "<":
            close = text.find(">", pos + 1)
            pos = end if close < 0 else close + 1
        else:
            pos += 1
    return end


def _decode_ext_value(value: str) -> str | None:
    """RFC 8187 §3.2: ``charset "'" [ language ] "'" value-chars``; ``None`` if it cannot be decoded."""
    parts = value.split("'", 2)
    if len(parts) != 3 or parts[0].lower() not in ("utf-8", "iso-8859-1"):
        return None
    try:
        return unquote(parts[2], encoding=parts[0].lower(), errors="strict")
    except (UnicodeDecodeError, LookupError):
        return None


def _make_link(target: str, raw: list[tuple[str, str]], base_url: str | None) -> Link | None:
    """RFC 8288 Appendix B.2 steps 8-17, keeping the first occurrence of every parameter."""
    try:
        url = urljoin(base_url, target) if base_url else target
    except ValueError:
        return None
    rels: frozenset[str] = frozenset()
    params: dict[str, str] = {}
    stars: dict[str, str] = {}
    seen_rel = False
    for name, value in raw:
        if name == "rel":
            if not seen_rel:
                rels = frozenset(rel.lower() for rel in _RWS.split(value) if rel)
                seen_rel = True
        elif name.endswith("*") and len(name) > 1:
            stars.setdefault(name[:-1], value)
        else:
            params.setdefault(name, value)
    for base_name, value in stars.items():
        decoded = _decode_ext_value(value)
        if decoded is not None and base_name != "rel":
            params[base_name] = decoded
    return Link(url=url, rels=rels, params=params)
