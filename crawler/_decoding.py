"""Decoding content codings in bounded steps (RFC 9110 §8.4.1: gzip, deflate, br, zstd), against zip bombs.

httpx decodes each chunk read from the network in one call with no output limit, so 400 bytes of br or 8 KiB of
zstd become 256 MiB in memory before a body cap can be checked.  :class:`ContentDecoder` decodes the raw body in
pieces of about :data:`STEP` bytes (brotli's may reach twice that), so a reader that counts them stops a zip bomb
with little more than the cap in memory.  (aiohttp decodes in bounded steps itself.)  The codecs are the standard
library's zlib, the ``brotli`` package (``output_buffer_limit``) and Zstandard (``compression.zstd``, or
``backports.zstd`` before Python 3.14), each asked for at most STEP bytes at a time.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli  # type: ignore[import-untyped]

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

__all__ = ["STEP", "ContentDecoder", "ContentDecodingError"]

#: Bytes of decoded output asked of a codec at a time.
STEP = 64 * 1024


class ContentDecodingError(ValueError):
    """A body does not decode with the coding its ``Content-Encoding`` names."""


class _Codec(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decode ``data`` (the next raw bytes), in pieces of about STEP bytes."""
        ...


class _Zlib:
    """gzip (RFC 1952, members may follow one another) or deflate (RFC 1950; raw RFC 1951 accepted too)."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._obj: zlib._Decompress | None = None

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            if self._obj is None:
                if not data:
                    return
                wbits = (
                    16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
                )
                self._obj = zlib.decompressobj(wbits)
            obj = self._obj
            out = obj.decompress(data, STEP)
            data = obj.unconsumed_tail
            if out:
                yield out
            if obj.eof:  # another gzip member may follow; what follows a deflate stream is ignored
                data, self._obj = (obj.unused_data if self._gzip else b""), None
            elif not out and not data:
                return


class _Brotli:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        out = self._obj.process(data, output_buffer_limit=STEP)
        while out:  # no output is the only sign that nothing is pending
            yield out
            out = self._obj.process(b"", output_buffer_limit=STEP)


class _Zstd:
    """Zstandard (RFC 8878), frames may follow one another."""

    def __init__(self) -> None:
        self._obj = zstd.ZstdDecompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            out = self._obj.decompress(data, STEP)
            data = b""
            if out:
                yield out
            if self._obj.eof:
                data, self._obj = self._obj.unused_data, zstd.ZstdDecompressor()
                if not data:
                    return
            elif self._obj.needs_input:
                return


class _Identity:
    def feed(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data


def _codec(name: str) -> _Codec:
    if name in ("gzip", "x-gzip"):
        return _Zlib(gzip=True)
    if name == "deflate":
        return _Zlib(gzip=False)
    if name == "br":
        return _Brotli()
    if name == "zstd":
        return _Zstd()
    return _Identity()  # identity, or a coding we do not know: the body as it came (as httpx does)


class ContentDecoder:
    """Decodes a body sent with ``Content-Encoding: content_encoding`` (codings listed in the order they were
    applied, so undone in reverse).  :meth:`feed` raises :class:`ContentDecodingError` on a corrupt body."""

    def __init__(self, content_encoding: str) -> None:
        names = [name.strip().lower() for name in content_encoding.split(",") if name.strip()]
        self._codecs = [_codec(name) for name in reversed(names)]

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decode ``data``, the next raw bytes of the body, in pieces of about :data:`STEP` bytes."""
        try:
            yield from self._through(data, 0)
        except (zlib.error, brotli.error, zstd.ZstdError) as exc:
            raise ContentDecodingError(str(exc) or type(exc).__name__) from None

    def _through(self, data: bytes, index: int) -> Iterator[bytes]:
        if index == len(self._codecs):
            if data:
                yield data
            return
        for piece in self._codecs[index].feed(data):
            yield from self._through(piece, index + 1)
