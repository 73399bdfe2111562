"""signed_upload: which S3 uploads may change, checksums, aws-chunked bodies."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.uploads import signed_upload

AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/s3/aws4_request, "
    "SignedHeaders={}, Signature=" + "ab" * 32
)


def test_unsigned_request_may_change() -> None:
    policy = signed_upload.analyze({}, "")
    assert not policy.signed and not policy.exact_length


def test_presigned_url_with_unsigned_payload_may_change() -> None:
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host&X-Amz-Signature=abc"
    policy = signed_upload.analyze({}, query)
    assert policy.signed and not policy.exact_length


def test_signed_content_length_requires_exact_length() -> None:
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=content-length%3Bhost"
    assert signed_upload.analyze({}, query).exact_length


def test_payload_hash_is_refused() -> None:
    headers = {
        "authorization": AUTH.format("host;x-amz-content-sha256;x-amz-date"),
        "x-amz-content-sha256": hashlib.sha256(b"x").hexdigest(),
    }
    with pytest.raises(signed_upload.SignedUploadError, match="signed the file's exact bytes"):
        signed_upload.analyze(headers, "")


def test_signed_checksum_header_is_refused() -> None:
    headers = {
        "authorization": AUTH.format("host;x-amz-checksum-crc32;x-amz-date"),
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        "x-amz-checksum-crc32": "AAAAAA==",
    }
    with pytest.raises(signed_upload.SignedUploadError, match="x-amz-checksum-crc32"):
        signed_upload.analyze(headers, "")


def test_streaming_signed_chunks_are_refused() -> None:
    headers = {
        "authorization": AUTH.format("host;x-amz-date"),
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    }
    with pytest.raises(signed_upload.SignedUploadError):
        signed_upload.analyze(headers, "")


def test_streaming_unsigned_trailer_may_change() -> None:
    headers = {
        "authorization": AUTH.format("host;x-amz-date;x-amz-decoded-content-length"),
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    }
    policy = signed_upload.analyze(headers, "")
    assert policy.streaming_trailer and policy.exact_length


def test_checksum_values_match_independent_computation() -> None:
    data = b"protected image bytes" * 100
    assert (
        signed_upload.checksum_value("content-md5", data)
        == base64.b64encode(hashlib.md5(data).digest()).decode()
    )
    crc = zlib.crc32(data).to_bytes(4, "big")
    assert (
        signed_upload.checksum_value("x-amz-checksum-crc32", data) == base64.b64encode(crc).decode()
    )
    fixed = signed_upload.fixed_checksum_headers(
        {"content-md5": "old", "x-amz-checksum-sha256": "old"}, data
    )
    assert (
        fixed["x-amz-checksum-sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    )
    assert set(fixed) == {"content-md5", "x-amz-checksum-sha256"}
    with pytest.raises(signed_upload.SignedUploadError):
        signed_upload.fixed_checksum_headers({"x-amz-checksum-crc32c": "x"}, data)


def test_aws_chunked_round_trip_with_recomputed_trailer() -> None:
    payload = bytes(range(256)) * 700
    body = signed_upload.encode_aws_chunked(payload, [("x-amz-checksum-crc32", "")], 8192)
    decoded, trailers = signed_upload.decode_aws_chunked(body)
    assert decoded == payload
    assert trailers == [
        ("x-amz-checksum-crc32", base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode())
    ]


def test_aws_chunked_with_chunk_signatures_is_refused() -> None:
    body = b"3;chunk-signature=abc\r\nabc\r\n0;chunk-signature=def\r\n\r\n"
    with pytest.raises(signed_upload.SignedUploadError, match="signed"):
        signed_upload.decode_aws_chunked(body)


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=400))
def test_random_aws_chunked_bodies_never_crash(body: bytes) -> None:
    with contextlib.suppress(signed_upload.SignedUploadError):
        signed_upload.decode_aws_chunked(body)


@settings(deadline=None, max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from(["authorization", "x-amz-content-sha256", "content-md5"]),
        st.text(max_size=80),
    ),
    st.text(max_size=120),
)
def test_random_headers_never_crash(headers: dict[str, str], query: str) -> None:
    with contextlib.suppress(signed_upload.SignedUploadError):
        signed_upload.analyze(headers, query)
