"""Content codings (RFC 9110 §8.4.1): gzip, deflate, br and zstd are advertised and decoded by every network
transport, and the body cap (``crawl.max_body_size``) applies to the decoded body, so a small compressed body that
expands past it (a zip bomb) fails with BodyTooLarge while the crawl goes on."""

from __future__ import annotations

import functools
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import brotli
import pytest
import zstandard

from crawler import BodyTooLarge, RemoteProtocolError, Request, Response, Spider, load_settings
from crawler._decoding import STEP, ContentDecoder, ContentDecodingError
from crawler._engine import default_transport
from crawler._transport import Transport
from crawler.testing import LocalServer, Reply, arun_spider

pytestmark = pytest.mark.anyio

TEXT = b"<title>compressed</title>" + b"<p>the same words, again and again</p>" * 500

ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,  # RFC 9110 §8.4.1.2: the zlib format
    "br": functools.partial(brotli.compress, quality=5),
    "zstd": zstandard.ZstdCompressor().compress,
}
CAP = 1024 * 1024  # bytes
BOMB = 64 * CAP  # bytes of zeros, compressed to about 100 bytes (br), 2 KiB (zstd), 64 KiB (gzip)


def network(name: str, backend: str, **settings: Any) -> Transport:
    """The network transport named ``name`` as a crawl on ``backend`` builds it."""
    return default_transport(load_settings(cli={"crawl.transport": name, "crawl.backend": backend, **settings}))


@functools.cache
def encoded(encoding: str, body: bytes) -> Reply:
    return 200, {"Content-Type": "text/html", "Content-Encoding": encoding}, ENCODERS[encoding](body)


def bomb(encoding: str) -> Reply:
    return encoded(encoding, bytes(BOMB))


@pytest.mark.parametrize("encoding", list(ENCODERS))
async def test_each_coding_is_advertised_and_decoded(transport_name: str, anyio_backend: str, encoding: str) -> None:
    transport = network(transport_name, anyio_backend)
    with LocalServer({"/page": encoded(encoding, TEXT)}) as server:
        try:
            response = await transport.fetch(Request(url=server.url("/page")))
        finally:
            await transport.aclose()
        [record] = server.stats().log

    assert response.status == 200
    assert response.body == TEXT
    advertised = {coding.split(";")[0].strip() for coding in record.headers["accept-encoding"].split(",")}
    assert {"gzip", "deflate", "br", "zstd"} <= advertised


async def test_stacked_codings_are_undone_in_reverse_order(
    transport_name: str, anyio_backend: str, request: pytest.FixtureRequest
) -> None:
    """``Content-Encoding: gzip, br``: gzip was applied first, so br is undone first (RFC 9110 §8.4)."""
    transport = network(transport_name, anyio_backend)
    stacked = ENCODERS["br"](gzip.compress(TEXT))
    with LocalServer({"/page": (200, {"Content-Encoding": "gzip, br"}, stacked)}) as server:
        try:
            response = await transport.fetch(Request(url=server.url("/page")))
        finally:
            await transport.aclose()
    assert response.body == TEXT


async def test_raw_deflate_is_decoded_too(transport_name: str, anyio_backend: str) -> None:
    """Some servers send ``deflate`` without the zlib wrapper (raw RFC 1951); browsers and both clients accept it."""
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = compressor.compress(TEXT) + compressor.flush()
    transport = network(transport_name, anyio_backend)
    with LocalServer({"/page": (200, {"Content-Encoding": "deflate"}, raw)}) as server:
        try:
            response = await transport.fetch(Request(url=server.url("/page")))
        finally:
            await transport.aclose()
    assert response.body == TEXT


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
async def test_a_zip_bomb_is_too_large_after_decoding(transport_name: str, anyio_backend: str, encoding: str) -> None:
    reply = bomb(encoding)
    assert len(reply[2]) < CAP < BOMB  # small on the wire, over the cap once decoded
    transport = network(transport_name, anyio_backend, **{"crawl.max_body_size": CAP})
    with LocalServer({"/bomb": reply, "/small": encoded(encoding, b"\0" * CAP)}) as server:
        try:
            with pytest.raises(BodyTooLarge, match="cap"):
                await transport.fetch(Request(url=server.url("/bomb")))
            exactly_the_cap = await transport.fetch(Request(url=server.url("/small")))
        finally:
            await transport.aclose()
    assert len(exactly_the_cap.body) == CAP


class Fetch(Spider):
    name = "fetch"

    def __init__(self, *urls: str) -> None:
        super().__init__()
        self.start_urls = list(urls)  # type: ignore[misc]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url, "size": len(response.body)}


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
async def test_a_crawl_records_the_zip_bomb_as_an_error_and_goes_on(
    transport_name: str, anyio_backend: str, encoding: str
) -> None:
    routes = {"/bomb": bomb(encoding), "/page": encoded(encoding, TEXT)}
    with LocalServer(routes) as server:
        result = await arun_spider(
            Fetch(server.url("/bomb"), server.url("/page")),
            settings={"crawl.transport": transport_name, "crawl.max_body_size": CAP, "crawl.obey_robots": False},
        )

    assert result.items == [{"url": server.url("/page"), "size": len(TEXT)}]
    [error] = result.errors
    assert error["url"] == server.url("/bomb")
    assert "BodyTooLarge" in error["error"]
    assert result.stats["errors"] == {"BodyTooLarge": 1}


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
async def test_a_zip_bomb_never_fills_memory(transport_name: str, anyio_backend: str, encoding: str) -> None:
    """Decoding stops near the cap: the 64 MiB the bomb expands to are never all in memory at once."""
    transport = network(transport_name, anyio_backend, **{"crawl.max_body_size": CAP})
    with LocalServer({"/bomb": bomb(encoding)}) as server:
        tracemalloc.start()
        try:
            with pytest.raises(BodyTooLarge):
                await transport.fetch(Request(url=server.url("/bomb")))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            await transport.aclose()
    assert peak < 16 * CAP < BOMB


async def test_a_corrupt_body_is_a_remote_protocol_error(transport_name: str, anyio_backend: str) -> None:
    transport = network(transport_name, anyio_backend)
    with LocalServer({"/bad": (200, {"Content-Encoding": "gzip"}, b"this is not gzip at all")}) as server:
        try:
            with pytest.raises(RemoteProtocolError, match="decode"):
                await transport.fetch(Request(url=server.url("/bad")))
        finally:
            await transport.aclose()


# -- the bounded decoder the httpx transport uses --------------------------------------------------------------


def decode(content_encoding: str, body: bytes, step: int | None = None) -> list[bytes]:
    """The pieces ContentDecoder makes of ``body`` fed whole, or in slices of ``step`` bytes."""
    decoder = ContentDecoder(content_encoding)
    slices = [body] if step is None else [body[i : i + step] for i in range(0, len(body), step)]
    return [piece for part in slices for piece in decoder.feed(part)]


@pytest.mark.parametrize("encoding", [*ENCODERS, "identity"])
def test_decoder_gives_the_same_body_fed_whole_or_byte_by_byte(encoding: str) -> None:
    body = TEXT if encoding == "identity" else ENCODERS[encoding](TEXT)
    assert b"".join(decode(encoding, body)) == TEXT
    assert b"".join(decode(encoding, body, step=1)) == TEXT


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd", "deflate"])
def test_decoder_makes_pieces_of_about_a_step(encoding: str) -> None:
    decoder = ContentDecoder(encoding)
    pieces = decoder.feed(ENCODERS[encoding](bytes(16 * STEP)))
    sizes = [len(piece) for piece in pieces]
    assert sum(sizes) == 16 * STEP
    assert max(sizes) <= 2 * STEP  # brotli's output buffer may pass the limit when it grows


def test_decoder_reads_concatenated_gzip_members_and_zstd_frames() -> None:
    assert b"".join(decode("gzip", gzip.compress(b"one ") + gzip.compress(b"two"))) == b"one two"
    frames = zstandard.ZstdCompressor().compress(b"one ") + zstandard.ZstdCompressor().compress(b"two")
    assert b"".join(decode("zstd", frames, step=3)) == b"one two"


def test_decoder_undoes_codings_in_reverse_order() -> None:
    body = ENCODERS["br"](gzip.compress(TEXT))  # Content-Encoding: gzip, br: gzip applied first
    assert b"".join(decode("gzip, br", body, step=100)) == TEXT


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_decoder_rejects_a_corrupt_body(encoding: str) -> None:
    with pytest.raises(ContentDecodingError):
        decode(encoding, b"\xff" * 64 + b"not compressed at all")
