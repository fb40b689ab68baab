"""The network transports (httpx, aiohttp) behave the same behind the transport seam, against a real server on
127.0.0.1: statuses and repeated headers as sent, redirects not followed, URLs sent exactly as canonicalized,
bodies sent and capped, errors mapped to crawler's own exceptions; ``auto`` picks the fastest for the loop."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sniffio

from crawler import (
    AiohttpTransport,
    BodyTooLarge,
    ConnectError,
    CrawlerError,
    FetchTimeout,
    HttpxTransport,
    InvalidURL,
    Request,
    SettingsError,
)
from crawler._engine import default_transport
from crawler._settings import load_settings
from crawler._transport import AutoTransport, Transport, TransportOptions
from crawler.testing import LocalServer, RequestInfo

pytestmark = pytest.mark.anyio


def _echo(info: RequestInfo) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps(
        {"method": info.method, "target": info.target, "headers": dict(info.headers), "body": info.body.decode()}
    ).encode()
    return 200, [("Content-Type", "application/json")], body


def _slow(info: RequestInfo) -> bytes:
    time.sleep(1.0)
    return b"late"


ROUTES: dict[str, Any] = {
    "/echo": _echo,
    "/cookies": (200, [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Link", '</p2>; rel="next"')], b"ok"),
    "/moved": (301, {"Location": "/echo"}, b""),
    "/missing": (404, {"Content-Type": "text/plain"}, b"no such page"),
    "/big": (200, {"Content-Type": "application/octet-stream"}, b"x" * 5000),
    "/slow": _slow,
}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(ROUTES) as srv:
        yield srv


def _names(backend: str) -> list[str]:
    return ["httpx", "aiohttp"] if backend == "asyncio" else ["httpx"]


def _build(name: str, **options: Any) -> Transport:
    opts = TransportOptions(headers={"User-Agent": "crawler-test/1"}, **options)
    return AiohttpTransport(opts) if name == "aiohttp" else HttpxTransport(opts)


async def _each(anyio_backend: str, **options: Any) -> list[tuple[str, Transport]]:
    return [(name, _build(name, **options)) for name in _names(anyio_backend)]


async def test_status_headers_and_body(server: LocalServer, anyio_backend: str) -> None:
    for name, transport in await _each(anyio_backend):
        try:
            response = await transport.fetch(Request(url=server.url("/cookies")))
            assert response.status == 200, name
            assert response.headers.getall("set-cookie") == ["a=1", "b=2"], name
            assert response.body == b"ok", name
            assert response.url == server.url("/cookies")
            missing = await transport.fetch(Request(url=server.url("/missing")))
            assert (missing.status, missing.body) == (404, b"no such page"), name
        finally:
            await transport.aclose()


async def test_cookies_are_kept_per_host(server: LocalServer, anyio_backend: str) -> None:
    for name, transport in await _each(anyio_backend):
        try:
            first = json.loads((await transport.fetch(Request(url=server.url("/echo")))).body)
            assert "cookie" not in first["headers"], name
            await transport.fetch(Request(url=server.url("/cookies")))  # Set-Cookie: a=1, then b=2
            seen = json.loads((await transport.fetch(Request(url=server.url("/echo")))).body)
            assert sorted(seen["headers"]["cookie"].split("; ")) == ["a=1", "b=2"], name
        finally:
            await transport.aclose()


async def test_redirects_are_not_followed(server: LocalServer, anyio_backend: str) -> None:
    for name, transport in await _each(anyio_backend):
        try:
            response = await transport.fetch(Request(url=server.url("/moved")))
            assert response.status == 301, name
            assert response.headers["location"] == "/echo", name
        finally:
            await transport.aclose()


async def test_url_headers_and_body_are_sent_as_given(server: LocalServer, anyio_backend: str) -> None:
    for name, transport in await _each(anyio_backend):
        try:
            url = server.url("/echo?q=a%2Fb&x=%7E&sp=%20")
            request = Request(url=url, method="POST", body=b"payload", headers={"X-Token": "t1"})
            seen = json.loads((await transport.fetch(request)).body)
            assert seen["method"] == "POST", name
            sent = request.url.removeprefix(server.base_url)
            assert sent == "/echo?q=a%2Fb&x=~&sp=%20"  # crawler's normal form (RFC 3986 §6.2.2)
            assert seen["target"] == sent, name  # sent as crawler wrote it, not re-encoded or decoded
            assert seen["headers"]["x-token"] == "t1", name
            assert seen["headers"]["user-agent"] == "crawler-test/1", name
            assert seen["body"] == "payload", name
            for coding in ("gzip", "deflate", "br", "zstd"):
                assert coding in seen["headers"]["accept-encoding"], (name, coding)
        finally:
            await transport.aclose()


async def test_body_cap(server: LocalServer, anyio_backend: str) -> None:
    for name, transport in await _each(anyio_backend, max_body_size=4096):
        try:
            with pytest.raises(BodyTooLarge, match="4096"):
                await transport.fetch(Request(url=server.url("/big")))
            assert (await transport.fetch(Request(url=server.url("/cookies")))).status == 200, name
        finally:
            await transport.aclose()


async def test_timeout(server: LocalServer, anyio_backend: str) -> None:
    for _name, transport in await _each(anyio_backend, timeout=0.2):
        try:
            with pytest.raises(FetchTimeout, match="/slow"):
                await transport.fetch(Request(url=server.url("/slow")))
        finally:
            await transport.aclose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_dead_host_is_a_connect_error(anyio_backend: str) -> None:
    port = _closed_port()
    for _name, transport in await _each(anyio_backend):
        try:
            with pytest.raises(ConnectError, match=rf"127\.0\.0\.1:{port}"):
                await transport.fetch(Request(url=f"http://127.0.0.1:{port}/"))
        finally:
            await transport.aclose()


@pytest.fixture(scope="module")
def self_signed_tls() -> Iterator[int]:
    """A TLS server with a certificate no CA signed: the handshake must fail when verification is on."""
    import ssl
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
        command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert]
        subprocess.run(
            [*command, "-days", "1", "-subj", "/CN=127.0.0.1"],
            check=True,
            capture_output=True,
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        stop = threading.Event()

        def serve() -> None:
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1024)
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                except (ssl.SSLError, OSError):
                    conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield port
        stop.set()
        thread.join()
        listener.close()


async def test_tls_is_verified_by_default(self_signed_tls: int, anyio_backend: str) -> None:
    url = f"https://127.0.0.1:{self_signed_tls}/"
    for name, transport in await _each(anyio_backend):
        try:
            with pytest.raises(ConnectError, match=r"127\.0\.0\.1"):
                await transport.fetch(Request(url=url))
        finally:
            await transport.aclose()
        insecure = _build(name, verify=False)
        try:
            assert (await insecure.fetch(Request(url=url))).body == b"ok", name
        finally:
            await insecure.aclose()


async def test_invalid_url(anyio_backend: str) -> None:
    for _name, transport in await _each(anyio_backend):
        try:
            request = Request(url="http://127.0.0.1/")
            object.__setattr__(request, "url", "ftp://127.0.0.1/x")  # past Request's own checks
            with pytest.raises(InvalidURL):
                await transport.fetch(request)
        finally:
            await transport.aclose()


async def test_auto_picks_the_fastest_for_the_loop(server: LocalServer, anyio_backend: str) -> None:
    transport = default_transport(load_settings())
    assert isinstance(transport, AutoTransport)
    try:
        assert (await transport.fetch(Request(url=server.url("/cookies")))).status == 200
        expected = AiohttpTransport if anyio_backend == "asyncio" else HttpxTransport
        assert isinstance(transport.chosen, expected)
    finally:
        await transport.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])  # on asyncio aiohttp works: tested above
async def test_aiohttp_refuses_trio_clearly(server: LocalServer, anyio_backend: str) -> None:
    assert sniffio.current_async_library() == "trio"
    transport = AiohttpTransport()
    with pytest.raises(CrawlerError, match="asyncio only, not trio"):
        await transport.fetch(Request(url=server.url("/cookies")))


def test_settings_choose_the_transport() -> None:
    assert isinstance(default_transport(load_settings(cli={"crawl.transport": "httpx"})), HttpxTransport)
    assert isinstance(default_transport(load_settings(cli={"crawl.transport": "aiohttp"})), AiohttpTransport)
    with pytest.raises(SettingsError, match="aiohttp transport runs on asyncio only"):
        load_settings(cli={"crawl.transport": "aiohttp", "crawl.backend": "trio"})
    with pytest.raises(SettingsError, match="transport"):
        load_settings(cli={"crawl.transport": "curl"})
