"""Real HTTP/1.1 servers on loopback for tests and benchmarks, run in their own threads.

A :class:`LocalServer` serves a generated :class:`~crawler.testing.Site`, a routes mapping or a directory, with
keep-alive and a correct Content-Length, and counts requests in a thread-safe :class:`RequestCounter` keyed by
the ``Host`` header the client sent.  It has no event loop, so sync, asyncio and trio tests use it alike.
:func:`serve_many` serves one site on several loopback addresses sharing one port number
(``127.0.0.1:P``, ``127.0.0.2:P``, ``127.0.0.3:P``: distinct hosts to a crawler; Linux routes all of 127/8).
"""

from __future__ import annotations

import contextlib
import errno
import html
import mimetypes
import os
import random
import socket
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Self, TypeAlias
from urllib.parse import quote, unquote

import attrs

from crawler.testing._site import Page, Site, split_authority

__all__ = [
    "Headers",
    "LocalServer",
    "Reply",
    "RequestCounter",
    "RequestInfo",
    "RequestRecord",
    "RouteValue",
    "ServerGroup",
    "ServerStatistics",
    "serve_many",
]


@attrs.frozen(kw_only=True)
class RequestInfo:
    """What a route callable sees: ``path`` has dot segments removed, ``query`` is raw (no ``?``), header names
    are lower case, ``host`` is the Host header (``"127.0.0.2:8080"``), ``client`` the peer (address, port)."""

    method: str
    target: str
    path: str
    query: str
    host: str
    headers: Mapping[str, str]
    body: bytes
    client: tuple[str, int]


#: Response headers: a mapping, or ``(name, value)`` pairs to repeat a name (Set-Cookie, Link).
Headers: TypeAlias = Mapping[str, str] | Sequence[tuple[str, str]]
#: A response: status code, headers, body (bytes).  Content-Length is added unless given.
Reply: TypeAlias = tuple[int, Headers, bytes]
#: What a routes mapping maps a target to (see :class:`LocalServer`).
RouteValue: TypeAlias = bytes | Page | Reply | Callable[[RequestInfo], Reply | bytes]
Content: TypeAlias = Site | Mapping[str, RouteValue] | str | os.PathLike[str]

_POLL_INTERVAL = 0.05  # seconds: how long stop() may wait for the accept loop to notice
_NOT_FOUND: Reply = (404, {"Content-Type": "text/html; charset=utf-8"}, b"<h1>404 Not Found</h1>\n")


@attrs.frozen(kw_only=True, slots=True)
class RequestRecord:
    """One answered request.  ``path`` is the target with dot segments removed and query kept
    (``"/s1/3.html?x=1"``), ``target`` the target as sent; ``headers`` have lower-case names (a repeated header
    keeps its last value); ``client`` is the peer ``(address, port)``: requests with the same client came over
    one kept-alive connection.  ``started`` (request read) and ``finished`` (response ready to write) are
    :func:`time.monotonic` readings in seconds."""

    method: str
    host: str
    path: str
    target: str
    headers: Mapping[str, str]
    client: tuple[str, int]
    status: int
    started: float
    finished: float


@attrs.frozen(kw_only=True)
class ServerStatistics:
    """A snapshot of a :class:`RequestCounter`; every count is keyed by the Host header (``"127.0.0.2:P"``).

    ``hits[host][path]`` counts requests per normalized path (query included).  ``in_flight[host]`` and
    ``max_in_flight[host]`` count requests received and not yet answered, now and at the peak since the last
    reset (waiting out the latency counts); ``max_in_flight_total`` is the peak over all hosts together.
    ``statuses`` counts responses by status code; ``log`` holds the answered requests in order of completion
    (empty when logging is off); ``errors`` holds tracebacks of exceptions raised while serving.
    """

    requests: int
    hits: Mapping[str, Mapping[str, int]]
    in_flight: Mapping[str, int]
    max_in_flight: Mapping[str, int]
    max_in_flight_total: int
    statuses: Mapping[int, int]
    log: tuple[RequestRecord, ...]
    errors: tuple[str, ...]

    def hits_by_url(self, scheme: str = "http") -> dict[str, int]:
        """Hits keyed by absolute URL: ``{"http://127.0.0.2:8080/s1/3.html": 1, ...}``."""
        return {f"{scheme}://{host}{path}": n for host, paths in self.hits.items() for path, n in paths.items()}


class RequestCounter:
    """Thread-safe request accounting, shareable between servers; each call takes one lock, O(1)."""

    def __init__(self, *, log_requests: bool = True) -> None:
        self.log_requests = log_requests
        self._lock = threading.Lock()
        self._hits: dict[str, Counter[str]] = defaultdict(Counter)
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: Counter[str] = Counter()
        self._total = self._max_total = self._requests = 0
        self._statuses: Counter[int] = Counter()
        self._log: list[RequestRecord] = []
        self._errors: list[str] = []

    def begin(self, host: str, path: str) -> None:
        """Count a request for ``path`` on ``host`` as received and in flight."""
        with self._lock:
            self._requests += 1
            self._hits[host][path] += 1
            now = self._in_flight[host] = self._in_flight[host] + 1
            if now > self._max_in_flight[host]:
                self._max_in_flight[host] = now
            self._total += 1
            self._max_total = max(self._max_total, self._total)

    def end(self, record: RequestRecord) -> None:
        """Count the request of ``record`` (begun with the same host) as answered."""
        with self._lock:
            self._in_flight[record.host] -= 1
            self._total -= 1
            self._statuses[record.status] += 1
            if self.log_requests:
                self._log.append(record)

    def error(self, description: str) -> None:
        """Record an exception raised while serving."""
        with self._lock:
            self._errors.append(description)

    def stats(self) -> ServerStatistics:
        """A consistent snapshot of every count."""
        with self._lock:
            return ServerStatistics(
                requests=self._requests,
                hits=MappingProxyType({h: MappingProxyType(dict(c)) for h, c in self._hits.items()}),
                in_flight=MappingProxyType({h: n for h, n in self._in_flight.items() if n}),
                max_in_flight=MappingProxyType(dict(self._max_in_flight)),
                max_in_flight_total=self._max_total,
                statuses=MappingProxyType(dict(self._statuses)),
                log=tuple(self._log),
                errors=tuple(self._errors),
            )

    def reset(self) -> None:
        """Forget all counts and records; requests in flight stay counted and peaks restart from them."""
        with self._lock:
            self._hits.clear()
            self._requests = 0
            self._statuses.clear()
            self._log.clear()
            self._errors.clear()
            self._max_in_flight = Counter({h: n for h, n in self._in_flight.items() if n})
            self._max_total = self._total


class LocalServer:
    """An HTTP/1.1 server on ``host:port`` (port 0: a free one) serving ``content`` from daemon threads.

    ``content`` is one of:

    - a :class:`Site`: it is bound to the server's port on :meth:`start` (read it back from :attr:`site`) and
      the pages of this host are served; other paths are 404;
    - a mapping ``{target: value}``, looked up by path with query (``"/items?page=2"``), then by path alone;
      a value is ``bytes`` (200, Content-Type guessed from the path), a :class:`Page`, a ``(status, headers,
      body)`` reply or a callable taking a :class:`RequestInfo` and returning a reply or bytes (an exception
      becomes a 500 and is recorded in :attr:`ServerStatistics.errors`);
    - a directory (``str`` or path), served like ``python -m http.server``: ``index.html`` or a listing for
      ``/dir/``, a 301 from ``/dir`` to ``/dir/``, 404 for anything missing; files carry ``ETag`` and
      ``Last-Modified`` and a conditional request that matches them gets a 304 (RFC 9110 §13.1).

    ``latency`` (seconds) delays every answer, or per host with a mapping keyed by Host header
    (``"127.0.0.2:8080"``) or bare host name (``"127.0.0.2"``).  ``error_rate`` (0..1) answers that fraction of
    requests, drawn from ``random.Random(seed)``, with ``error_status`` instead.  Requests are counted in
    ``counter`` (a new one by default; share one between servers to add them up).
    """

    def __init__(
        self,
        content: Content,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float | Mapping[str, float] = 0.0,
        error_rate: float = 0.0,
        error_status: int = 500,
        seed: int = 0,
        counter: RequestCounter | None = None,
    ) -> None:
        if isinstance(content, str | os.PathLike):
            root = Path(content).resolve()
            if not root.is_dir():
                raise NotADirectoryError(f"not a directory: {root}")
            self._root: Path | None = root
        else:
            self._root = None
        self._content = content
        self.host = host
        self._port = port
        self._latency = latency
        self._error_rate = error_rate
        self._error_status = error_status
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.counter = counter if counter is not None else RequestCounter()
        self._routes: Mapping[str, RouteValue] = MappingProxyType({})
        self._site: Site | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- life cycle ------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind, listen and serve from a daemon thread; returns self.  Idempotent.

        Raises OSError when the address cannot be bound, ValueError when a Site has no pages for :attr:`host`.
        """
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self._port), _Handler)
        httpd.app = self
        requested, self._port = self._port, int(httpd.server_address[1])
        try:
            self._bind_content()
        except BaseException:
            httpd.server_close()
            self._port = requested
            raise
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            daemon=True,
            name=f"LocalServer {self.authority}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every open connection and wait for the accept loop.  Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes requests waiting out their latency
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port given, or the one bound by :meth:`start` (kept after :meth:`stop`).

        Raises RuntimeError for port 0 before :meth:`start`.
        """
        if self._port:
            return self._port
        raise RuntimeError("LocalServer: port 0 is chosen on start(); start the server first")

    @property
    def authority(self) -> str:
        """``host:port``, as a client writes it in the Host header (``"127.0.0.2:8080"``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://host:port`` without a trailing slash."""
        return f"http://{self.authority}"

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base_url + path

    @property
    def site(self) -> Site | None:
        """The served site bound to this server's port, or None when serving routes or a directory."""
        return self._site

    # -- statistics ------------------------------------------------------------------------------------------

    def stats(self) -> ServerStatistics:
        """A snapshot of :attr:`counter` (shared counters include other servers' requests)."""
        return self.counter.stats()

    def reset(self) -> None:
        """Reset :attr:`counter`."""
        self.counter.reset()

    # -- answering -------------------------------------------------------------------------------------------

    def _bind_content(self) -> None:
        content = self._content
        if isinstance(content, Site):
            if self.host not in {split_authority(h)[0] for h in content.hosts}:
                raise ValueError(
                    f"the site has no host {self.host!r} (its hosts: {list(content.hosts)}); "
                    f"generate it with hosts=(..., {self.host!r})"
                )
            site = content if self.authority in content.pages else content.with_port(self.port)
            self._site = site
            self._routes = site.routes(self.host)
        elif isinstance(content, Mapping):
            self._routes = content

    def latency_for(self, host: str) -> float:
        """Seconds to wait before answering a request whose Host header is ``host``."""
        latency = self._latency
        if not isinstance(latency, Mapping):
            return latency
        for key in (host, split_authority(host)[0], self.host):
            if key in latency:
                return latency[key]
        return 0.0

    def respond(self, request: RequestInfo) -> Reply:
        """The reply to ``request`` from this server's content, without latency or injected errors."""
        if self._root is not None:
            return _serve_directory(self._root, request)
        key = f"{request.path}?{request.query}" if request.query else request.path
        value = self._routes.get(key)
        if value is None:
            value = self._routes.get(request.path)
        if value is None:
            return _NOT_FOUND
        if callable(value):
            try:
                value = value(request)
            except Exception:
                self.counter.error(traceback.format_exc())
                return 500, {"Content-Type": "text/plain"}, b"route raised an exception\n"
        if isinstance(value, Page):
            return 200, {"Content-Type": value.content_type}, value.body
        if isinstance(value, bytes):
            return 200, {"Content-Type": _guess_type(request.path, value)}, value
        return value

    def _answer(self, request: RequestInfo) -> Reply:
        delay = self.latency_for(request.host)
        if delay > 0:
            self._stopping.wait(delay)  # stop() cuts the wait short
        if self._error_rate > 0.0:
            with self._rng_lock:
                failed = self._rng.random() < self._error_rate
            if failed:
                return self._error_status, {"Content-Type": "text/plain"}, b"injected error\n"
        return self.respond(request)


class ServerGroup:
    """Servers on several addresses sharing one port and one :class:`RequestCounter` (see :func:`serve_many`)."""

    def __init__(self, servers: Sequence[LocalServer], counter: RequestCounter) -> None:
        self.servers = tuple(servers)
        self.counter = counter

    @property
    def port(self) -> int:
        """The port every server listens on."""
        return self.servers[0].port

    @property
    def hosts(self) -> tuple[str, ...]:
        """The authorities served, ``("127.0.0.1:P", "127.0.0.2:P", ...)``."""
        return tuple(s.authority for s in self.servers)

    @property
    def base_urls(self) -> tuple[str, ...]:
        """``("http://127.0.0.1:P", ...)``, one per server."""
        return tuple(s.base_url for s in self.servers)

    @property
    def site(self) -> Site | None:
        """The served site bound to :attr:`port`, or None when serving routes or a directory."""
        return self.servers[0].site

    def url(self, path: str = "/", host: str | None = None) -> str:
        """The absolute URL of ``path`` on ``host`` (``"127.0.0.2"`` or ``"127.0.0.2:P"``; default: the first)."""
        return (self.servers[0] if host is None else self[host]).url(path)

    def __getitem__(self, host: str) -> LocalServer:
        """The server for ``host`` (``"127.0.0.2"`` or ``"127.0.0.2:P"``).  Raises KeyError naming the hosts."""
        for server in self.servers:
            if host in (server.host, server.authority):
                return server
        raise KeyError(f"no server for host {host!r}; serving {list(self.hosts)}")

    def stats(self) -> ServerStatistics:
        """A snapshot of the shared counter: every server's requests."""
        return self.counter.stats()

    def reset(self) -> None:
        """Reset the shared counter."""
        self.counter.reset()

    def stop(self) -> None:
        """Stop every server.  Idempotent."""
        for server in self.servers:
            server.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_many(
    content: Content,
    hosts: Sequence[str] | None = None,
    *,
    port: int = 0,
    latency: float | Mapping[str, float] = 0.0,
    error_rate: float = 0.0,
    error_status: int = 500,
    seed: int = 0,
    log_requests: bool = True,
    attempts: int = 20,
) -> ServerGroup:
    """Start one :class:`LocalServer` per address in ``hosts``, all on one port number, sharing one counter.

    ``hosts`` are bare addresses (default: a Site's host names, else ``127.0.0.1``, ``127.0.0.2`` and
    ``127.0.0.3``).  With ``port=0`` a free port is chosen for the first address and reused for the others,
    retrying with another port up to ``attempts`` times when one is taken.  The other options are those of
    :class:`LocalServer`.  Returns the started group; use it as a context manager to stop it.
    Raises OSError when no common port was found (or ``port`` is taken).
    """
    if hosts is None:
        if isinstance(content, Site):
            hosts = [split_authority(h)[0] for h in content.hosts]
        else:
            hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    counter = RequestCounter(log_requests=log_requests)
    last_error: OSError | None = None
    for _ in range(attempts if port == 0 else 1):
        servers: list[LocalServer] = []
        try:
            chosen = port
            for host in hosts:
                server = LocalServer(
                    content,
                    host=host,
                    port=chosen,
                    latency=latency,
                    error_rate=error_rate,
                    error_status=error_status,
                    seed=seed + len(servers),
                    counter=counter,
                )
                servers.append(server.start())
                chosen, content = server.port, server.site or content  # the site bound once, then shared
        except OSError as exc:
            for server in servers:
                server.stop()
            if exc.errno != errno.EADDRINUSE:
                raise
            last_error = exc
            continue
        return ServerGroup(servers, counter)
    raise OSError(errno.EADDRINUSE, f"serve_many: no port free on all of {list(hosts)}") from last_error


# -- the HTTP machinery ----------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default 5 drops SYNs under a concurrent crawl: 1 s retransmit stalls
    app: LocalServer

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.closing = False
        super().__init__(address, handler)

    def track(self, conn: socket.socket) -> None:
        """Remember an open connection, or shut it down at once if the server is closing."""
        with self.connections_lock:
            if not self.closing:
                self.connections.add(conn)
                return
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)

    def forget(self, conn: socket.socket) -> None:
        """Forget a closed connection."""
        with self.connections_lock:
            self.connections.discard(conn)

    def close_connections(self) -> None:
        """Shut down kept-alive connections so their handler threads end."""
        with self.connections_lock:
            self.closing = True
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is no error
            self.app.counter.error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.forget(self.connection)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Silence the access log on stderr."""

    def do_GET(self) -> None:
        app = self.server.app
        started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # a chunked body is not read (nor served to routes): drop the connection
        raw_path, _, query = self.path.partition("?")
        path = _remove_dot_segments(raw_path)
        request = RequestInfo(
            method=self.command,
            target=self.path,
            path=path,
            query=query,
            host=self.headers.get("Host") or app.authority,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length > 0 else b"",
            client=(str(self.client_address[0]), int(self.client_address[1])),
        )
        key = f"{path}?{query}" if query else path
        app.counter.begin(request.host, key)
        reply: Reply = (500, {}, b"")
        try:
            reply = app._answer(request)
        finally:  # counted before writing, so a client holding its response finds it in the statistics
            app.counter.end(
                RequestRecord(
                    method=request.method,
                    host=request.host,
                    path=key,
                    target=request.target,
                    headers=request.headers,
                    client=request.client,
                    status=reply[0],
                    started=started,
                    finished=time.monotonic(),
                )
            )
        self._send(reply)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _send(self, reply: Reply) -> None:
        """Write status line, headers and body in one write (no Nagle stall between them)."""
        status, headers, payload = reply
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {status} {reason}\r\n"]
        names: set[str] = set()
        for name, value in pairs:
            names.add(name.lower())
            if name.lower() == "connection" and value.lower() == "close":
                self.close_connection = True
            lines.append(f"{name}: {value}\r\n")
        no_body = self.command == "HEAD" or status in (204, 304) or status < 200
        if "content-length" not in names and status not in (204, 304) and status >= 200:
            lines.append(f"Content-Length: {len(payload)}\r\n")
        if self.close_connection and "connection" not in names:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        self.wfile.write("".join(lines).encode("latin-1") + (b"" if no_body else payload))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path: ``/a/./b/../c`` -> ``/a/c``, trailing slash kept."""
    if not path.startswith("/") or ("/." not in path):
        return path
    out: list[str] = []
    segments = path.split("/")[1:]
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments[-1] in (".", ".."):
        out.append("")
    return "/" + "/".join(out)


def _guess_type(path: str, body: bytes) -> str:
    guessed, _ = mimetypes.guess_type(path)
    if guessed is not None:
        return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed
    head = body.lstrip()[:1]
    if head in (b"{", b"["):
        return "application/json"
    if head == b"<":
        return "text/html; charset=utf-8"
    return "application/octet-stream"


def _serve_directory(root: Path, request: RequestInfo) -> Reply:
    """Like ``python -m http.server``: a file, ``index.html`` or a listing for ``/dir/``, 301 ``/dir`` -> ``/dir/``."""
    if request.method not in ("GET", "HEAD"):
        return 405, {"Allow": "GET, HEAD"}, b""
    target = (root / unquote(request.path).lstrip("/")).resolve()
    if not target.is_relative_to(root):
        return _NOT_FOUND
    if target.is_dir():
        if not request.path.endswith("/"):
            location = request.path + "/" + (f"?{request.query}" if request.query else "")
            return 301, {"Location": location, "Content-Type": "text/plain"}, b"moved\n"
        index = target / "index.html"
        if index.is_file():
            return _serve_file(index, request)
        return 200, {"Content-Type": "text/html; charset=utf-8"}, _listing(request.path, target)
    if target.is_file():
        return _serve_file(target, request)
    return _NOT_FOUND


def _serve_file(path: Path, request: RequestInfo) -> Reply:
    """A file with its validators, ``ETag`` (from size and mtime) and ``Last-Modified`` (RFC 9110 §8.8), or a 304
    with them when ``If-None-Match`` matches the ETag or, without it, ``If-Modified-Since`` is not older than the
    file (RFC 9110 §13.1.2, §13.1.3)."""
    stat = path.stat()
    validators = {
        "ETag": f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
        "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        if "*" in tags or validators["ETag"] in tags:
            return 304, validators, b""
    elif (since := request.headers.get("if-modified-since")) is not None:
        with contextlib.suppress(TypeError, ValueError):
            if int(stat.st_mtime) <= parsedate_to_datetime(since).timestamp():
                return 304, validators, b""
    body = path.read_bytes()
    return 200, {"Content-Type": _guess_type(path.name, body), **validators}, body


def _listing(path: str, directory: Path) -> bytes:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir())
    items = "".join(f'<li><a href="{quote(n)}">{html.escape(n)}</a></li>\n' for n in names)
    title = html.escape(f"Directory listing for {path}")
    page = f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body><h1>{title}</h1>\n<ul>\n{items}</ul>\n"
    return (page + "</body></html>\n").encode()
