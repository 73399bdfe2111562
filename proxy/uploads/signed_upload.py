"""S3 (AWS SigV4) and other signed uploads: may the body change, and what must follow it?

A SigV4 request signs a list of headers (`SignedHeaders`, in the Authorization header or the
`X-Amz-SignedHeaders` query parameter of a presigned URL) and, through `x-amz-content-sha256`,
possibly the payload itself. If the payload hash or a checksum header is signed, a changed body
fails at S3 (`SignatureDoesNotMatch` / `XAmzContentSHA256Mismatch`): Sfumato must refuse, and
says so. With `UNSIGNED-PAYLOAD` (presigned URLs) or `STREAMING-UNSIGNED-PAYLOAD-TRAILER` the
body may change; unsigned `Content-MD5` / `x-amz-checksum-*` values are recomputed, a signed
Content-Length is met by producing a file of exactly the original length.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from proxy.uploads.refusal import PROTECT_FIRST


class SignedUploadError(ValueError):
    """The upload is signed in a way that forbids changing its body (or is malformed)."""

    def __init__(self, message: str, hint: str = PROTECT_FIRST) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
_SIGNED_HEADERS_RE = re.compile(r"SignedHeaders=([^,\s]+)", re.I)
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
# checksum header -> how to compute it (base64 of the digest)
_CHECKSUMS = {
    "x-amz-checksum-crc32": lambda b: zlib.crc32(b).to_bytes(4, "big"),
    "x-amz-checksum-sha1": lambda b: hashlib.sha1(b).digest(),
    "x-amz-checksum-sha256": lambda b: hashlib.sha256(b).digest(),
}


@dataclass(frozen=True)
class SignedPolicy:
    """What a (possibly) signed upload allows."""

    signed: bool
    signed_headers: frozenset[str] = frozenset()
    streaming_trailer: bool = False

    @property
    def exact_length(self) -> bool:
        """The Content-Length is signed: the new body must keep the original length."""
        return "content-length" in self.signed_headers or (
            self.streaming_trailer and "x-amz-decoded-content-length" in self.signed_headers
        )


def analyze(headers: Mapping[str, str], query: str) -> SignedPolicy:
    """Decide whether this request's body may be rewritten; raise SignedUploadError if not.

    `headers` must be case-insensitive (mitmproxy Headers) or use lowercase names.
    """
    params = {k.lower(): v for k, v in parse_qsl(query, keep_blank_values=True)}
    auth = headers.get("authorization", "") or ""
    if auth.upper().startswith("AWS4-HMAC-SHA256"):
        match = _SIGNED_HEADERS_RE.search(auth)
        signed = match.group(1) if match else ""
    elif "x-amz-signature" in params or params.get("x-amz-algorithm"):
        signed = params.get("x-amz-signedheaders", "")
    elif auth.upper().startswith("AWS ") or "signature" in params and "awsaccesskeyid" in params:
        # SigV2 signs Content-MD5 (and the bucket checks it) -- refuse only if it is present.
        if headers.get("content-md5"):
            raise SignedUploadError(
                "the upload is signed (AWS SigV2) including the file's MD5, so its bytes "
                "cannot be changed in transit"
            )
        return SignedPolicy(signed=True)
    else:
        return SignedPolicy(signed=False)
    names = frozenset(n.strip().lower() for n in signed.split(";") if n.strip())
    content_sha = (headers.get("x-amz-content-sha256") or "").strip()
    if _HEX64.match(content_sha) or content_sha.upper().startswith("STREAMING-AWS4-HMAC"):
        raise SignedUploadError(
            "the site signed the file's exact bytes (x-amz-content-sha256), so a protected "
            "image would be rejected by the storage server"
        )
    if content_sha and content_sha.upper() not in (UNSIGNED, STREAMING_UNSIGNED_TRAILER):
        raise SignedUploadError(
            f"the upload uses an unknown payload signing mode ({content_sha[:40]!r})"
        )
    for name in names:
        if name == "content-md5" or name.startswith("x-amz-checksum-"):
            raise SignedUploadError(
                f"the site signed the file's checksum ({name}), so a protected image would "
                "be rejected by the storage server"
            )
    return SignedPolicy(
        signed=True,
        signed_headers=names,
        streaming_trailer=content_sha.upper() == STREAMING_UNSIGNED_TRAILER,
    )


def checksum_value(name: str, data: bytes) -> str:
    """The base64 checksum value S3 expects in header/trailer `name` for these bytes."""
    name = name.lower()
    if name == "content-md5":
        return base64.b64encode(hashlib.md5(data).digest()).decode()
    compute = _CHECKSUMS.get(name)
    if compute is None:
        raise SignedUploadError(f"Sfumato cannot recompute the {name} checksum the upload declares")
    return base64.b64encode(compute(data)).decode()


def fixed_checksum_headers(headers: Mapping[str, str], data: bytes) -> dict[str, str]:
    """New values for the checksum headers present in `headers`, computed over `data`."""
    out: dict[str, str] = {}
    for name in ("content-md5", *_CHECKSUMS, "x-amz-checksum-crc32c", "x-amz-checksum-crc64nvme"):
        if headers.get(name):
            out[name] = checksum_value(name, data)
    return out


def decode_aws_chunked(
    body: bytes, *, read_signed: bool = False
) -> tuple[bytes, list[tuple[str, str]]]:
    """Unsigned aws-chunked body -> (payload, trailers). Raises SignedUploadError if malformed.

    `read_signed`: also read chunks that carry signatures (only to see what they hold: they
    cannot be changed)."""
    pos = 0
    chunks: list[bytes] = []
    while True:
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            raise SignedUploadError("the aws-chunked body is truncated", "retry the upload")
        size_text = body[pos:line_end].split(b";", 1)[0].strip()
        if b"chunk-signature" in body[pos:line_end] and not read_signed:
            raise SignedUploadError(
                "each chunk of the upload is signed, so its bytes cannot be changed in transit"
            )
        try:
            size = int(size_text, 16)
        except ValueError:
            raise SignedUploadError(
                "the aws-chunked body is malformed", "retry the upload"
            ) from None
        pos = line_end + 2
        if size == 0:
            break
        if pos + size + 2 > len(body) or body[pos + size : pos + size + 2] != b"\r\n":
            raise SignedUploadError("the aws-chunked body is malformed", "retry the upload")
        chunks.append(body[pos : pos + size])
        pos += size + 2
    trailers: list[tuple[str, str]] = []
    for line in body[pos:].split(b"\r\n"):
        if not line.strip():
            continue
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise SignedUploadError("the aws-chunked trailer is malformed", "retry the upload")
        trailers.append((name.strip().lower(), value.strip()))
    return b"".join(chunks), trailers


def encode_aws_chunked(
    payload: bytes, trailers: list[tuple[str, str]], chunk_size: int = 64 * 1024
) -> bytes:
    """Unsigned aws-chunked encoding of payload, with the trailers recomputed over it."""
    out: list[bytes] = []
    for start in range(0, len(payload), chunk_size):
        chunk = payload[start : start + chunk_size]
        out.append(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    out.append(b"0\r\n")
    for name, _ in trailers:
        out.append(f"{name}:{checksum_value(name, payload)}\r\n".encode())
    out.append(b"\r\n")
    return b"".join(out)
