"""content_encoding: request bodies in any readable coding are decoded with a bound and encoded
again the same way; bombs, truncation and unknown codings are errors, never a crash."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.uploads import content_encoding as ce

CODINGS = ["gzip", "x-gzip", "deflate", "br", "zstd"]


@settings(deadline=None, max_examples=100)
@given(st.binary(max_size=5000), st.lists(st.sampled_from(CODINGS), min_size=1, max_size=3))
def test_decode_undoes_encode(body: bytes, codings: list[str]) -> None:
    assert ce.decode(ce.encode(body, codings), codings, 1 << 20) == body


def test_header_parsing() -> None:
    assert ce.codings("gzip, BR ,identity") == ["gzip", "br"]
    assert ce.codings(None) == [] and ce.codings("identity") == []


def test_transfer_codings_other_than_chunked_count_after_the_content_codings() -> None:
    headers = {"content-encoding": "br", "transfer-encoding": "gzip, Chunked"}
    assert ce.body_codings(headers) == ["br", "gzip"]
    assert ce.body_codings({"transfer-encoding": "chunked"}) == []
    assert ce.body_codings({}) == []


def test_raw_deflate_and_gzip_members_are_read() -> None:
    raw = zlib.compressobj(wbits=-15)
    body = raw.compress(b"abc" * 10) + raw.flush()
    assert ce.decode(body, ["deflate"], 100) == b"abc" * 10
    assert ce.decode(gzip.compress(b"a") + gzip.compress(b"b"), ["gzip"], 100) == b"ab"


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("br", brotli.compress),
        ("zstd", lambda data: zstandard.ZstdCompressor().compress(data)),
    ],
)
def test_bombs_stop_at_the_limit(coding: str, compress) -> None:
    bomb = compress(b"\0" * (8 << 20))
    assert len(bomb) < 64 * 1024
    with pytest.raises(ce.DecodedTooLarge):
        ce.decode(bomb, [coding], 1 << 20)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_truncated_or_corrupt_bodies_are_errors(coding: str) -> None:
    body = ce.encode(bytes(range(256)) * 64, [coding])
    for broken in (body[: len(body) // 2], b"not compressed at all"):
        with pytest.raises(ce.EncodingError):
            ce.decode(broken, [coding], 1 << 20)


def test_unknown_codings_are_errors() -> None:
    with pytest.raises(ce.EncodingError, match="compress"):
        ce.decode(b"x", ["compress"], 10)
