"""URL canonicalization, host keys and asset detection: pure functions, no I/O.

The canonical form is the dedup key of the frontier (see :func:`canonicalize_url`). It follows the
normalizations that RFC 3986 §6.2.2 calls safe (case, percent-encoding, dot segments) and the scheme-based ones
of §6.2.3 (default port, empty path), plus the two a crawler needs: the fragment is dropped (it never reaches the
server) and query parameters are sorted (servers almost never depend on their order).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from functools import lru_cache
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urljoin, urlsplit

from crawler._exceptions import InvalidURL

__all__ = ["ASSET_EXTENSIONS", "canonicalize_url", "host_key", "is_asset_url", "join_url", "normalize_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 §2.3 unreserved characters never need escaping; everything else we keep or escape as found.
_SAFE_PATH = "/:@!$&'()*+,;=-._~"
_SAFE_QUERY = ":@!$'()*,;/?-._~"
_SAFE_USERINFO = "!$&'()*+,;=:-._~"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
# RFC 3986 §3.2.2 reg-name (lower-cased): what a host may hold once IDNA has made it ASCII.
_REG_NAME = re.compile(r"[a-z0-9\-._~!$&'()*+,;=%]+")
# RFC 3986 IP-literal (lower-cased) with an optional RFC 6874 zone and an optional port: "[::1]:8080"
_IP_LITERAL = re.compile(
    r"\[(?:[0-9a-f:.]+(?:%25[0-9a-z\-._~%]+)?|v[0-9a-f]+\.[0-9a-z\-._~!$&'()*+,;=:]+)\](?::[0-9]*)?"
)

#: File extensions (lower case, without the dot) that a page crawl skips before fetching: images, audio, video,
#: office documents, archives, fonts, scripts and styles.  The same list as Scrapy's ``IGNORED_EXTENSIONS``
#: in spirit, extended with modern formats.
# fmt: off
ASSET_EXTENSIONS: frozenset[str] = frozenset(
    [
        # images
        "mng", "pct", "bmp", "gif", "jpg", "jpeg", "png", "pst", "psp", "tif", "tiff", "ai", "drw", "dxf",
        "eps", "ps", "svg", "svgz", "cdr", "ico", "webp", "avif", "heic", "jxl",
        # audio
        "mp3", "wma", "ogg", "wav", "ra", "aac", "mid", "au", "aiff", "flac", "m4a", "opus",
        # video
        "3gp", "asf", "asx", "avi", "mov", "mp4", "mpg", "qt", "rm", "swf", "wmv", "m4v", "webm", "mkv",
        "flv",
        # documents
        "xls", "xlsx", "ppt", "pptx", "pps", "doc", "docx", "odt", "ods", "odg", "odp", "pdf", "epub",
        # styles, scripts, fonts
        "css", "js", "mjs", "map", "woff", "woff2", "ttf", "otf", "eot",
        # binaries and archives
        "exe", "bin", "rss", "xz", "zip", "rar", "gz", "bz2", "tgz", "tar", "7z", "zst", "dmg", "iso", "apk",
        "msi", "deb", "rpm", "jar", "whl",
    ]
)
# fmt: on


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidURL(url, str(exc)) from None
    if parts.scheme not in _DEFAULT_PORTS:  # urlsplit lower-cases the scheme
        raise InvalidURL(url, "scheme must be http or https")
    if not parts.hostname:
        raise InvalidURL(url, "no host")
    if not url.isascii():
        try:
            url.encode()
        except UnicodeEncodeError:
            raise InvalidURL(url, "contains a lone surrogate, not text") from None
    return parts


def _host(parts: SplitResult, url: str) -> str:
    host = parts.hostname or ""  # lower-cased by urlsplit
    hostinfo = parts.netloc.rpartition("@")[2]
    if hostinfo.startswith("["):  # IP literal, RFC 3986 §3.2.2 and RFC 6874; urlsplit stripped the brackets
        if not _IP_LITERAL.fullmatch(hostinfo.lower()) or not _is_ip_literal(host):
            raise InvalidURL(url, f"host {hostinfo!r} is not a valid IP literal")
        return f"[{host}]"
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURL(url, f"host {host!r} is not a valid domain name: {exc}") from None
    host = host.rstrip(".")  # "example.com." is the fully qualified spelling of "example.com"
    if not _REG_NAME.fullmatch(host):
        raise InvalidURL(url, f"host {host!r} is empty or has characters a host name cannot have")
    return host


def _is_ip_literal(host: str) -> bool:
    if host.startswith("v"):  # IPvFuture: the regular expression said all there is to say
        return True
    try:
        ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return False
    return True


def _netloc(parts: SplitResult, url: str, *, userinfo: bool = False) -> str:
    host = _host(parts, url)
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    if userinfo and "@" in parts.netloc:
        user = _requote(parts.netloc.rpartition("@")[0], _SAFE_USERINFO)
        if user:
            host = f"{user}@{host}"
    return host


def _requote(text: str, safe: str) -> str:
    """Decode escapes of unreserved characters, upper-case the other escapes and escape what must be: RFC 3986
    §6.2.2.1-2.  A ``%`` that starts no escape is a literal percent sign and becomes ``%25``."""
    if "%" not in text:
        return quote(text, safe=safe)
    # unquote then quote would decode %2F into "/" and change meaning: decode escape by escape.
    out = []
    last = 0
    for match in _PERCENT.finditer(text):
        out.append(quote(text[last : match.start()], safe=safe))
        escape = match.group()
        char = chr(int(escape[1:], 16))
        out.append(char if char in _UNRESERVED else escape.upper())
        last = match.end()
    out.append(quote(text[last:], safe=safe))
    return "".join(out)


def _path(path: str) -> str:
    if not path:
        return "/"
    path = _requote(path, _SAFE_PATH)  # first, so that "%2E%2E" is a dot segment too (RFC 3986 §6.2.2)
    if "/." not in path and "//" not in path:
        return path
    normalized = posixpath.normpath(path)
    if normalized.startswith("//"):
        normalized = "/" + normalized.lstrip("/")
    # RFC 3986 §5.2.4: a final "." or ".." segment leaves the path ending in "/", as a final "/" does.
    if not normalized.endswith("/") and (path.endswith("/") or path.endswith("/.") or path.endswith("/..")):
        normalized += "/"
    return normalized


def _unsplit(scheme: str, netloc: str, path: str, query: str) -> str:
    return f"{scheme}://{netloc}{path}?{query}" if query else f"{scheme}://{netloc}{path}"


@lru_cache(maxsize=16384)
def normalize_url(url: str) -> str:
    """Return ``url`` with scheme and host lower-cased, default port and dot segments removed, escapes
    normalized and the fragment dropped.  The query keeps its order.

    This is the form a request is sent with.  Raises :class:`InvalidURL` when the URL has no ``http``/``https``
    scheme, no host, a host that is neither a domain name nor an IP literal, or a malformed port.
    """
    parts = _split(url)
    query = _requote(parts.query, _SAFE_QUERY + "=&+") if parts.query else ""
    return _unsplit(parts.scheme, _netloc(parts, url, userinfo=True), _path(parts.path), query)


@lru_cache(maxsize=16384)
def canonicalize_url(url: str) -> str:
    """Return the canonical form of ``url``, the frontier's dedup key: :func:`normalize_url` with the query
    parameters sorted by name then value (blank values kept).

    Two URLs that a server treats alike in practice map to one string; the function is idempotent.  Raises
    :class:`InvalidURL` as :func:`normalize_url` does.
    """
    parts = _split(url)
    query = parts.query
    if query:
        # Form decoding ("+" is a space); bytes that are not UTF-8 survive the round trip as surrogate escapes.
        pairs = parse_qsl(query, keep_blank_values=True, errors="surrogateescape")
        query = urlencode(sorted(pairs), quote_via=quote, safe=_SAFE_QUERY, errors="surrogateescape")
    return _unsplit(parts.scheme, _netloc(parts, url, userinfo=True), _path(parts.path), query)


@lru_cache(maxsize=16384)
def host_key(url: str) -> str:
    """Return the politeness key of ``url``: lower-case ``host[:port]`` (the port only when not the default).

    Requests with the same key share one per-host queue, limit and delay.  Raises :class:`InvalidURL`.
    """
    parts = _split(url)
    return _netloc(parts, url)


def is_asset_url(url: str) -> bool:
    """Return True when the path of ``url`` ends in one of :data:`ASSET_EXTENSIONS` (case-insensitive).

    A URL that cannot be parsed is no asset: False.
    """
    try:
        path = urlsplit(url).path
    except ValueError:  # "http://[bad"
        return False
    dot = path.rfind(".")
    if dot < 0 or "/" in path[dot:]:
        return False
    return path[dot + 1 :].lower() in ASSET_EXTENSIONS


# -- resolving links (RFC 3986 §5) -----------------------------------------------------------------------------
_JOIN_UNSAFE = re.compile(r"[\t\r\n\[\]\\]")  # urlsplit strips or rejects these: leave such URLs to urllib


def _path_end(url: str, start: int) -> int:
    end = len(url)
    for mark in "?#":
        found = url.find(mark, start)
        if 0 <= found < end:
            end = found
    return end


@lru_cache(maxsize=1024)
def _join_base(base: str) -> tuple[str, str, str] | None:
    """``(origin, directory path, base without fragment)`` of an ordinary ``http(s)`` base URL; None otherwise."""
    if not base.startswith(("http://", "https://")) or not base.isascii() or _JOIN_UNSAFE.search(base):
        return None
    base = base.partition("#")[0]
    start = base.index("://") + 3
    slash = base.find("/", start)
    end = _path_end(base, start)
    if slash < 0 or slash > end:  # no path: RFC 3986 §5.2.3's empty-path merge, left to urllib
        return None
    path = base[slash:end]
    if "/." in path or "//" in path or ";" in path:
        return None
    return base[:slash], path[: path.rfind("/") + 1], base


def _merge_segments(directory: str, path: str) -> str:
    """``urljoin``'s path resolution (RFC 3986 §5.2.2-4 as CPython implements it): ``path`` is absolute or relative
    to ``directory`` (which ends in ``/``); dot segments are removed and, for a relative path, empty ones too."""
    if path[:1] == "/":
        segments = path.split("/")
    else:
        segments = directory.split("/")[:-1] + path.split("/")
        segments[1:-1] = [segment for segment in segments[1:-1] if segment]
    resolved: list[str] = []
    for segment in segments:
        if segment == "..":
            if resolved:
                resolved.pop()
        elif segment != ".":
            resolved.append(segment)
    if segments[-1] in (".", ".."):
        resolved.append("")
    merged = "/".join(resolved)
    return merged if merged.startswith("/") else "/" + merged


def join_url(base: str, href: str) -> str:
    """Resolve ``href`` against ``base`` (RFC 3986 §5.2): the same string ``urllib.parse.urljoin`` returns, built
    by string operations for the shapes links take on real pages (absolute ``http(s)`` URLs, ``/path``,
    ``path``, ``../path``, ``?query``, ``#fragment``), by ``urljoin`` itself for the rare others (``;params``,
    ``//host``, other schemes, characters urllib strips or rejects, empty query or fragment markers).

    Raises ``ValueError`` as ``urljoin`` does (``http://[bad``).
    """
    parts = _join_base(base)
    if (
        parts is None
        or not href
        or href[0] <= " "
        or ";" in href
        or not href.isascii()
        or _JOIN_UNSAFE.search(href)
        or href.endswith(("?", "#"))
        or "?#" in href
    ):
        return urljoin(base, href)
    origin, directory, whole = parts
    first = href[0]
    if first == "#":
        return whole + href
    if first == "?":
        return whole.partition("?")[0].partition("#")[0] + href
    if href.startswith(("http://", "https://")):
        authority = href.index("://") + 3
        if _path_end(href, authority) == authority or href[authority] == "/":
            return urljoin(base, href)  # no host: urllib resolves "http://" and "http:///x" against the base
        return href  # urljoin leaves an absolute URL as it is
    if href.startswith("//"):  # network-path reference
        return urljoin(base, href)
    end = _path_end(href, 0)
    path = href[:end]
    colon = path.find(":")
    if colon >= 0 and "/" not in path[:colon]:  # a scheme: mailto:, ftp:, HTTP:
        return urljoin(base, href)
    if first == "/":
        if "/." not in path:
            return origin + href
        return origin + _merge_segments("/", path) + href[end:]
    if "/." not in path and "//" not in path and not path.startswith("."):
        return origin + directory + href
    return origin + _merge_segments(directory, path) + href[end:]
