"""Record and replay: a crawl's HTTP exchanges stored as files, and crawls answered from them with no network.

:class:`RecordingTransport` (``crawl.record``, ``crawler crawl --record DIR``) wraps the transport of a crawl and
writes every exchange made through it, robots.txt and OAuth token requests included, one YAML file per exchange.
:class:`ReplayTransport` (``crawl.replay``, ``--replay DIR``) takes the network's place and answers each request
from those files; a request that was not recorded fails with :class:`NoRecording`, which names the request and the
nearest recorded one.  Layout of a cassette directory (names depend on the requests only, so recording the same
crawl again rewrites the same files)::

    DIR/
      127.0.0.1_8000/                      one folder per host[:port]
        index--GET-3f2a9c1e-1.yaml         path slug, method, 8 hex of the match key, sequence number
        robots.txt--GET-0c7d12aa-1.yaml
        s1_3.html--GET-5b0e44f1-1.yaml     the first time the request was made ...
        s1_3.html--GET-5b0e44f1-2.yaml     ... and the second (a retry after a 503, say)

One file::

    # crawler cassette: one HTTP exchange recorded by `crawler crawl --record`; secrets are redacted (***)
    request:
      method: GET
      url: http://127.0.0.1:8000/s1/3.html
      headers:
      - Accept: text/html
      body: null
    sequence: 1
    response:
      status: 200
      headers:                             (name, value) pairs in the order received; names may repeat
      - Content-Type: text/html; charset=utf-8
      - Link: </s1/4.html>; rel="next"
      body: |
        <!doctype html>
        ...

A body is stored as text when it is UTF-8 without control characters (other than tab and newline), else as
base64 under YAML's standard ``!!binary`` tag; either way it replays byte for byte.  A request that failed in
the transport is stored with ``error: {type: ConnectError, message: ...}`` instead of ``response`` and fails the
same way on replay.  The response's ``elapsed`` is not stored (replayed as 0.0), so that files do not change
between recordings of an unchanged site.

Secrets are redacted before anything is written: the values of ``Authorization`` and ``Proxy-Authorization``
(the scheme is kept: ``Bearer ***``), ``Cookie`` and ``Set-Cookie`` (cookie names and attributes are kept) and
of headers named like keys, tokens and secrets (``X-API-Key``); passwords in URLs and query parameters named like
keys, tokens and signatures (:func:`crawler.redact`); the same in form-encoded and JSON request bodies; and the
``access_token``, ``refresh_token`` and ``id_token`` of JSON responses (RFC 6749 §5.1, OpenID Connect).  Extra
header and parameter names (``auth.header``, ``auth.query_param``) are given as ``secret_headers`` and
``secret_params``.

Matching: a request is looked up by its method, canonical URL and body after the same redaction, the ingredients
of crawler's dedup fingerprint.  Headers are stored for reading, not matched (as vcrpy's default matches on
method and URL), and a secret never takes part, so a cassette replays without credentials; requests that differ
only in a redacted value (a ``pageToken`` parameter, say) replay in the order they were recorded.  Repeated
identical requests get the recorded exchanges in order, then the last one again and again.

vcrpy is not used: it records by patching httpx's and aiohttp's internals, whereas crawler's own transport seam
already carries library-independent requests and responses, so a wrapper at the seam records every network
transport alike, with no patching; PyYAML writes the files.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread
import yaml
from multidict import CIMultiDict, CIMultiDictProxy

from crawler._exceptions import (
    BodyTooLarge,
    ConnectError,
    CrawlerError,
    FetchTimeout,
    InvalidURL,
    RemoteProtocolError,
    TransportError,
)
from crawler._log import _SECRET_KEYS, redact
from crawler._request import Request
from crawler._response import Response
from crawler._transport import Transport
from crawler._url import canonicalize_url, host_key

__all__ = ["CassetteError", "NoRecording", "RecordingFailed", "RecordingTransport", "ReplayTransport"]

MARKER = "# crawler cassette: one HTTP exchange recorded by `crawler crawl --record`; secrets are redacted (***)"
SECRET = "***"
_TOKEN_FIELDS = frozenset({"access_token", "refresh_token", "id_token"})
_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})
_NOT_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_ERRORS: dict[str, type[TransportError]] = {
    cls.__name__: cls for cls in (TransportError, ConnectError, FetchTimeout, RemoteProtocolError, BodyTooLarge)
}


class CassetteError(CrawlerError):
    """A cassette directory cannot be used: it is missing (replay), cannot be written (record), or holds a
    ``.yaml`` file that is not a recorded exchange.  The message names the directory or file."""


class RecordingFailed(TransportError):
    """An exchange could not be written to the cassette (a full disk, a directory removed during the crawl); the
    request fails with this error, whatever its response was."""


class NoRecording(TransportError):
    """A replayed crawl made a request that the cassette has no recording of.  The message names the request and
    the nearest recorded request; the crawl goes on and the request's error record carries the message."""


# -- redaction (pure) ------------------------------------------------------------------------------------------


def _redact_params(text: str, names: Iterable[str]) -> str:
    """``text`` (a URL, or ``?`` + a form body) with the values of query parameters named like secrets, or named
    in ``names``, replaced by ``***``."""
    text = redact(text)
    for name in names:
        text = re.sub(rf"([?&;]{re.escape(name)}=)[^&#\s]*", rf"\g<1>{SECRET}", text)
    return text


def redact_header(name: str, value: str, extra: frozenset[str] = frozenset()) -> str:
    """The value of header ``name`` as stored: secrets replaced by ``***``, the auth scheme and cookie names kept.

    ``extra``: lower-case names of further headers to redact whole.
    """
    lower = name.lower()
    if lower in _AUTH_HEADERS:
        scheme, space, _ = value.strip().partition(" ")
        return f"{scheme} {SECRET}" if space else SECRET
    if lower == "set-cookie":
        pair, semicolon, attributes = value.partition(";")
        cookie, equals, _ = pair.partition("=")
        return f"{cookie.strip()}={SECRET}{semicolon}{attributes}" if equals else SECRET
    if lower == "cookie":
        return "; ".join(f"{part.partition('=')[0].strip()}={SECRET}" for part in value.split(";") if part.strip())
    if _SECRET_KEYS.search(name) or lower in extra:
        return SECRET
    return value


def _redact_json(value: Any, secret: Callable[[str], bool]) -> Any:
    if isinstance(value, dict):
        return {k: SECRET if secret(k) else _redact_json(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v, secret) for v in value]
    return value


def _json_object(body: bytes) -> Any:
    if body.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def redact_request_body(body: bytes | None, content_type: str, params: Iterable[str] = ()) -> bytes | None:
    """A request body as stored: secret fields of a form-encoded (``application/x-www-form-urlencoded``) or JSON
    body replaced by ``***``; other bodies unchanged."""
    if not body:
        return body
    names = list(params)
    if "x-www-form-urlencoded" in content_type:
        try:
            return _redact_params("?" + body.decode("utf-8"), names)[1:].encode("utf-8")
        except UnicodeDecodeError:
            return body
    data = _json_object(body)
    if data is None:
        return body
    redacted = _redact_json(data, lambda key: bool(_SECRET_KEYS.search(key)) or key in names)
    return body if redacted == data else json.dumps(redacted, ensure_ascii=False).encode("utf-8")


def redact_response_body(body: bytes) -> bytes:
    """A response body as stored: the ``access_token``, ``refresh_token`` and ``id_token`` of a JSON object
    (an OAuth 2 token response, RFC 6749 §5.1) replaced by ``***``; other bodies unchanged."""
    if b"_token" not in body:
        return body
    data = _json_object(body)
    if not isinstance(data, dict) or not _TOKEN_FIELDS & data.keys():
        return body
    return json.dumps({k: SECRET if k in _TOKEN_FIELDS else v for k, v in data.items()}, ensure_ascii=False).encode()


# -- keys and names (pure) -------------------------------------------------------------------------------------


def _content_type(headers: Mapping[str, str]) -> str:
    return next((v.lower() for k, v in headers.items() if k.lower() == "content-type"), "")


def _key(method: str, url: str, body: bytes | None) -> str:
    """The match key of a (redacted) request: method, canonical URL, and the body's digest when there is one."""
    digest = f" body:{hashlib.blake2b(body, digest_size=8).hexdigest()}" if body else ""
    return f"{method.upper()} {canonicalize_url(url)}{digest}"


def _file_name(method: str, url: str, key: str, sequence: int) -> str:
    """``<host>/<path slug>--<METHOD>-<8 hex of key>-<sequence>.yaml``: sorted, they group by host and path."""
    path = url.split("://", 1)[-1].partition("/")[2]
    slug = _SLUG.sub("_", path).strip("_.-")[:80] or "index"
    digest = hashlib.blake2b(key.encode(), digest_size=4).hexdigest()
    host = _SLUG.sub("_", host_key(url))
    return f"{host}/{slug}--{method.upper()}-{digest}-{sequence}.yaml"


# -- the file format -------------------------------------------------------------------------------------------


class PythonDumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings as literal blocks (``|``), readable and diff-friendly."""


class LibyamlDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """:class:`PythonDumper`, with libyaml's C emitter when PyYAML was built with it (the wheels are)."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


PythonDumper.add_representer(str, _represent_str)
LibyamlDumper.add_representer(str, _represent_str)
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def encode_body(body: bytes | None) -> str | bytes | None:
    """A body as stored: text (``str``) when it is UTF-8 without control characters other than tab and newline,
    so that YAML keeps it exactly; else the bytes (written as base64, ``!!binary``)."""
    if body is None:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    return body if _NOT_TEXT.search(text) else text


def decode_body(value: Any, where: str) -> bytes:
    """The bytes of a stored body (text, ``!!binary`` or null).  Raises :class:`CassetteError` naming ``where``."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise CassetteError(f"{where}: a body must be text, !!binary or null, not {type(value).__name__}")


def _header_list(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{str(name): str(value)} for name, value in pairs]  # str(): multidict's istr is no YAML type


def _header_pairs(value: Any, where: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) and len(item) == 1 for item in value):
        raise CassetteError(f"{where}: headers must be a list of one-entry mappings (- Name: value)")
    return [(str(name), str(item[name])) for item in value for name in item]


def dump_exchange(data: Mapping[str, Any], *, dumper: type[yaml.SafeDumper] = LibyamlDumper) -> str:
    """The text of one exchange file: the marker comment, then ``data`` as YAML written by ``dumper``."""
    body = yaml.dump(dict(data), Dumper=dumper, allow_unicode=True, sort_keys=False, width=1 << 30)
    return f"{MARKER}\n{body}"


def _load_file(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CassetteError(f"cannot read recorded exchange {path}: {exc}") from None
    request = data.get("request") if isinstance(data, dict) else None
    if not isinstance(request, dict) or not isinstance(request.get("url"), str):
        raise CassetteError(f"{path} is not a recorded exchange: it has no request with a url")
    if not isinstance(data.get("response"), dict) and not isinstance(data.get("error"), dict):
        raise CassetteError(f"{path} is not a recorded exchange: it has neither a response nor an error")
    return data


def _is_recording(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as file:
            return file.readline().rstrip("\n") == MARKER
    except (OSError, UnicodeDecodeError):
        return False


# -- the transports --------------------------------------------------------------------------------------------


class _Redactor:
    """Redacts requests the same way for recording and for matching."""

    def __init__(self, secret_headers: Iterable[str], secret_params: Iterable[str]) -> None:
        self.headers = frozenset(name.lower() for name in secret_headers)
        self.params = tuple(secret_params)

    def request(self, request: Request) -> tuple[str, str, bytes | None]:
        """(method, URL, body) of ``request`` with secrets redacted."""
        url = _redact_params(request.url, self.params)
        body = redact_request_body(request.body, _content_type(request.headers), self.params)
        return request.method, url, body


class RecordingTransport:
    """Wraps ``transport`` and records every exchange made through it into ``directory`` (see the module
    docstring for the format).  Responses and errors pass through unchanged; only the files are redacted.

    Creating it starts a new recording: it creates ``directory`` if needed and removes the exchanges recorded
    there before (other files are left alone), so that a re-recording leaves no stale files.  ``secret_headers``
    and ``secret_params`` name further headers and query parameters to redact.  Raises :class:`CassetteError`
    when the directory cannot be created or cleared; a file that cannot be written fails its request with
    :class:`RecordingFailed`.
    """

    def __init__(
        self,
        transport: Transport,
        directory: str | os.PathLike[str],
        *,
        secret_headers: Iterable[str] = (),
        secret_params: Iterable[str] = (),
    ) -> None:
        self.transport = transport
        self.directory = Path(directory)
        self._redactor = _Redactor(secret_headers, secret_params)
        self._sequence: defaultdict[str, int] = defaultdict(int)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for path in sorted(self.directory.rglob("*.yaml"), reverse=True):
                if _is_recording(path):
                    path.unlink()
                    if path.parent != self.directory and not any(path.parent.iterdir()):
                        path.parent.rmdir()
        except OSError as exc:
            raise CassetteError(f"cannot record into {self.directory}: {exc}") from None

    async def fetch(self, request: Request) -> Response:
        method, url, body = self._redactor.request(request)
        key = _key(method, url, body)
        self._sequence[key] += 1  # before the first await: concurrent repeats get distinct numbers
        sequence = self._sequence[key]
        data: dict[str, Any] = {
            "request": {
                "method": method,
                "url": url,
                "headers": _header_list(
                    sorted(
                        (
                            (name, redact_header(name, value, self._redactor.headers))
                            for name, value in request.headers.items()
                        ),
                        key=lambda pair: pair[0].lower(),
                    )
                ),
                "body": encode_body(body),
            },
            "sequence": sequence,
        }
        try:
            response = await self.transport.fetch(request)
        except TransportError as exc:
            data["error"] = {"type": type(exc).__name__, "message": redact(str(exc))}
            await self._write(_file_name(method, url, key, sequence), data, request.url)
            raise
        data["response"] = {
            "status": response.status,
            "headers": _header_list(
                (name, redact_header(name, value, self._redactor.headers)) for name, value in response.headers.items()
            ),
            "body": encode_body(redact_response_body(response.body)),
        }
        await self._write(_file_name(method, url, key, sequence), data, request.url)
        return response

    async def _write(self, name: str, data: Mapping[str, Any], url: str) -> None:
        text = dump_exchange(data)
        path = self.directory / name
        try:
            await anyio.to_thread.run_sync(_write_atomically, path, text)
        except OSError as exc:
            raise RecordingFailed(f"cannot write recorded exchange {path}: {exc}", url=url) from None

    async def aclose(self) -> None:
        await self.transport.aclose()


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class _Recorded:
    __slots__ = ("display", "path", "sequence")

    def __init__(self, path: Path, display: str, sequence: int) -> None:
        self.path = path
        self.display = display
        self.sequence = sequence


class ReplayTransport:
    """Answers requests from the exchanges recorded in ``directory`` by :class:`RecordingTransport`, with no
    network at all.

    A request matches the recordings with the same method, canonical URL and body after redaction
    (``secret_headers`` and ``secret_params`` as when recording); the n-th identical request gets the n-th
    recording, and the last one repeats.  A recorded transport error is raised again, as the same
    :class:`crawler.TransportError` subclass.  A request with no recording raises :class:`NoRecording` naming
    it and the nearest recorded request.

    The directory is indexed when the transport is created; bodies are read when replayed.  Raises
    :class:`CassetteError` when ``directory`` does not exist or holds a ``.yaml`` file that is not an exchange.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        secret_headers: Iterable[str] = (),
        secret_params: Iterable[str] = (),
    ) -> None:
        self.directory = Path(directory)
        self._redactor = _Redactor(secret_headers, secret_params)
        if not self.directory.is_dir():
            raise CassetteError(f"cannot replay {self.directory}: no such directory (record one with --record DIR)")
        self._recorded: dict[str, list[_Recorded]] = defaultdict(list)
        for path in sorted(self.directory.rglob("*.yaml")):
            data = _load_file(path)
            request = data["request"]
            method = str(request.get("method", "GET")).upper()
            where = str(path)
            body = decode_body(request.get("body"), where) if request.get("body") is not None else None
            sequence = data.get("sequence", 1)
            if not isinstance(sequence, int):
                raise CassetteError(f"{path}: sequence must be a whole number, not {sequence!r}")
            try:
                key = _key(method, request["url"], body)
            except InvalidURL as exc:
                raise CassetteError(f"{path}: {exc}") from None
            display = f"{method} {request['url']}" + (f" with a {len(body)}-byte body" if body else "")
            self._recorded[key].append(_Recorded(path, display, sequence))
        for recordings in self._recorded.values():
            recordings.sort(key=lambda recorded: (recorded.sequence, recorded.path.name))
        self._replayed: defaultdict[str, int] = defaultdict(int)

    @property
    def recordings(self) -> int:
        """How many exchanges the cassette holds."""
        return sum(len(recordings) for recordings in self._recorded.values())

    async def fetch(self, request: Request) -> Response:
        method, url, body = self._redactor.request(request)
        key = _key(method, url, body)
        recordings = self._recorded.get(key)
        if not recordings:
            raise NoRecording(self._missing(method, url, body), url=request.url)
        index = min(self._replayed[key], len(recordings) - 1)
        self._replayed[key] += 1
        recorded = recordings[index]
        try:
            data = await anyio.to_thread.run_sync(_load_file, recorded.path)
        except CassetteError as exc:
            raise NoRecording(f"{exc} (replaying {method} {url})", url=request.url) from None
        error = data.get("error")
        if isinstance(error, dict):
            cls = _ERRORS.get(str(error.get("type")), TransportError)
            raise cls(f"{error.get('message', '')} (replayed from {recorded.path})", url=request.url)
        response = data["response"]
        status = response.get("status")
        if not isinstance(status, int):
            raise NoRecording(
                f"{recorded.path}: response status must be a whole number, not {status!r}", url=request.url
            )
        try:
            headers = _header_pairs(response.get("headers"), str(recorded.path))
            content = decode_body(response.get("body"), str(recorded.path))
        except CassetteError as exc:
            raise NoRecording(str(exc), url=request.url) from None
        return Response(
            url=request.url,
            status=status,
            headers=CIMultiDictProxy(CIMultiDict(headers)),
            body=content,
            request=request,
            elapsed=0.0,
        )

    def _missing(self, method: str, url: str, body: bytes | None) -> str:
        wanted = f"{method} {url}" + (f" with a {len(body)}-byte body" if body else "")
        message = f"no recording of {wanted} in {self.directory}"
        displays = sorted({recordings[0].display for recordings in self._recorded.values()})
        if not displays:
            return f"{message}, which holds no recorded exchanges (record them with --record DIR)"
        nearest = difflib.get_close_matches(wanted, displays, n=1, cutoff=0.0)
        return f"{message}; the nearest recorded request is {nearest[0] if nearest else displays[0]}"

    async def aclose(self) -> None:
        return None
