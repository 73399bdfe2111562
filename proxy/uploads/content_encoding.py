"""A request's Content-Encoding, decoded with a bound (so an image inside a compressed body is
found, and a small body cannot inflate to gigabytes) and applied again after protection.

Browsers do not compress request bodies, but scripts may: `gzip`, `x-gzip`, `deflate` (zlib or
raw), `br` and `zstd` are read, also stacked (`gzip, br`). `aws-chunked` is S3's framing, read
by `signed_upload`. Any other coding cannot be read, so a body in it cannot be inspected: the
caller refuses it. The same codings in Transfer-Encoding (before `chunked`) are read alike.
"""

from __future__ import annotations

import zlib

import brotli
import zstandard
from mitmproxy.net import encoding as mitmproxy_encoding

READABLE = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})
S3_FRAMING = "aws-chunked"
_CHUNK = 1024 * 1024
_ZSTD_SLICE = 1024


class EncodingError(ValueError):
    """The body cannot be decoded (unknown coding or corrupt data)."""


class DecodedTooLarge(ValueError):
    """The decoded body would exceed the limit."""


def codings(header: str | None) -> list[str]:
    """The codings of a Content-Encoding header, in the order they were applied."""
    names = [c.strip().lower() for c in (header or "").split(",")]
    return [c for c in names if c and c != "identity"]


def body_codings(headers) -> list[str]:
    """Every coding still on a request body as mitmproxy hands it over, in the order applied:
    Content-Encoding, then Transfer-Encoding's codings other than `chunked` (mitmproxy undoes
    the chunking only; `Transfer-Encoding: gzip, chunked` leaves a gzip body a server may
    decode)."""
    transfer = [c for c in codings(headers.get("transfer-encoding")) if c != "chunked"]
    return codings(headers.get("content-encoding")) + transfer


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    out = bytearray()
    data = body
    while data:
        inflater = zlib.decompressobj(wbits)
        chunk = data
        while chunk:
            out += inflater.decompress(chunk, _CHUNK)
            if len(out) > limit:
                raise DecodedTooLarge
            chunk = inflater.unconsumed_tail
        out += inflater.flush()
        if not inflater.eof:
            raise EncodingError("the compressed body is truncated")
        data = inflater.unused_data if wbits > 16 else b""  # gzip: several members
    return bytes(out)


def _unbrotli(body: bytes, limit: int) -> bytes:
    decoder = brotli.Decompressor()
    out = bytearray(decoder.process(body, output_buffer_limit=_CHUNK))
    while not decoder.is_finished():
        if len(out) > limit:
            raise DecodedTooLarge
        if decoder.can_accept_more_data():
            raise EncodingError("the compressed body is truncated")
        out += decoder.process(b"", output_buffer_limit=_CHUNK)
    if len(out) > limit:
        raise DecodedTooLarge
    return bytes(out)


def _unzstd(body: bytes, limit: int) -> bytes:
    # Fed in small slices: one slice of RLE blocks can inflate ~32 000 times.
    out = bytearray()
    decoder = zstandard.ZstdDecompressor().decompressobj()
    pos = 0
    while pos < len(body):
        out += decoder.decompress(body[pos : pos + _ZSTD_SLICE])
        pos += _ZSTD_SLICE
        if len(out) > limit:
            raise DecodedTooLarge
        if decoder.eof and (decoder.unused_data or pos < len(body)):  # another frame
            body, pos = decoder.unused_data + body[pos:], 0
            decoder = zstandard.ZstdDecompressor().decompressobj()
    if not decoder.eof:
        raise EncodingError("the compressed body is truncated")
    return bytes(out)


def decode(body: bytes, names: list[str], limit: int) -> bytes:
    """The body with its codings undone; raises EncodingError or DecodedTooLarge."""
    for name in reversed(names):
        if name not in READABLE:
            raise EncodingError(f"Sfumato cannot read the Content-Encoding {name!r}")
        try:
            if name in ("gzip", "x-gzip"):
                body = _inflate(body, 16 + zlib.MAX_WBITS, limit)
            elif name == "deflate":
                try:
                    body = _inflate(body, zlib.MAX_WBITS, limit)
                except (zlib.error, EncodingError):
                    body = _inflate(body, -zlib.MAX_WBITS, limit)  # raw deflate
            elif name == "br":
                body = _unbrotli(body, limit)
            else:
                body = _unzstd(body, limit)
        except (zlib.error, brotli.error, zstandard.ZstdError) as err:
            raise EncodingError(f"the {name} body cannot be decoded ({err})") from None
    return body


def encode(body: bytes, names: list[str]) -> bytes:
    """Apply the codings again, in order."""
    for name in names:
        body = mitmproxy_encoding.encode(body, "gzip" if name == "x-gzip" else name)
    return body
