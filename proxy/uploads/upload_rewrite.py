"""Rewrite one buffered upload request: find its images, protect them, rebuild the body.

Runs entirely in a worker thread (parsing large bodies is CPU work too). Dispatches on the
profile rule's body shape to the pure modules (`multipart`, `raw_body`, `data_urls`,
`signed_upload`); the images themselves go through one `ImageProtector`. Anything that cannot
be protected raises `Refusal`; the addon turns that into the browser's error response.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mitmproxy import http

from proxy.uploads import header_fixes as raw_body
from proxy.uploads import multipart, signed_upload
from proxy.uploads import text_images as data_urls
from proxy.uploads.image_protection import ImageProtector, ImageResult, is_image, sniff_supported
from proxy.uploads.refusal import PROTECT_FIRST, Refusal

_KNOWN_ENCODINGS = {"", "identity", "gzip", "deflate", "br", "zstd"}


@dataclass(frozen=True)
class UploadRequest:
    """A snapshot of the request that the worker may read without touching the flow."""

    method: str
    host: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    raw: bool = False  # body is the undecoded wire body (unknown Content-Encoding)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "") or ""

    @property
    def query(self) -> str:
        return self.path.split("?", 1)[1] if "?" in self.path else ""

    @classmethod
    def from_flow(cls, request: http.Request) -> UploadRequest:
        encoding = (request.headers.get("content-encoding") or "").strip().lower()
        raw = encoding not in _KNOWN_ENCODINGS
        if raw:
            body = request.raw_content or b""
        else:
            try:
                body = request.content or b""
            except ValueError:
                raise Refusal(
                    "bad-request",
                    f"the upload's body cannot be decoded ({encoding})",
                    "retry the upload",
                ) from None
        return cls(
            request.method, request.pretty_host, request.path, request.headers.copy(), body, raw
        )


@dataclass
class Rewrite:
    """What to change in the request (None/empty: leave as is) and what to report."""

    body: bytes | None = None
    raw: bool = False
    path: str | None = None
    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)
    shape: str = ""
    outcome: Literal["protected", "passed"] | None = None
    reason: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    images: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    protected_data: bytes = b""


class _Tally:
    """Accumulates per-image results into one request outcome."""

    def __init__(self) -> None:
        self.results: list[tuple[int, ImageResult]] = []

    def protect(self, protector: ImageProtector, data: bytes, exact: int | None = None) -> bytes:
        result = protector(data, exact_length=exact)
        self.results.append((len(data), result))
        return result.data

    def finish(self, rewrite: Rewrite, *, report_empty: bool) -> Rewrite:
        if not self.results:
            rewrite.body = None  # nothing to protect: forward the original bytes
            if report_empty:
                rewrite.outcome = "passed"
                rewrite.reason = "the request carried no image"
            return rewrite
        rewrite.images = len(self.results)
        rewrite.bytes_in = sum(n for n, _ in self.results)
        rewrite.bytes_out = sum(len(r.data) for _, r in self.results)
        timings: dict[str, float] = {}
        for _, result in self.results:
            for key, value in result.timings.items():
                timings[key] = timings.get(key, 0.0) + float(value)
        rewrite.timings = timings
        if any(r.protected for _, r in self.results):
            rewrite.outcome = "protected"
            skipped = [r.reason for _, r in self.results if not r.protected]
            rewrite.reason = f"{len(skipped)} image(s) {skipped[0]}" if skipped else ""
        else:
            rewrite.outcome = "passed"
            rewrite.reason = self.results[0][1].reason
            rewrite.body = None  # nothing changed: forward the original bytes
        return rewrite


def rewrite_multipart(
    upload: UploadRequest, protect: ImageProtector, *, report_empty: bool, shape: str = "multipart"
) -> Rewrite:
    """Protect every image part (and data:image URL fields); keep all other bytes."""
    try:
        form = multipart.parse(upload.body, upload.content_type)
    except multipart.MultipartError as err:
        raise Refusal(
            "bad-request",
            f"the upload's form data could not be read ({err}), so it was not sent unprotected",
            "retry the upload; if it keeps failing, " + PROTECT_FIRST,
        ) from None
    tally = _Tally()
    for index, part in enumerate(form.parts):
        is_file = part.filename is not None or part.content_type is not None
        # An empty part (a file input left empty) carries no image: nothing to protect.
        if part.body and is_image(part.body, part.content_type, is_file=is_file):
            form = form.with_body(index, tally.protect(protect, part.body))
        elif part.filename is None and part.body[:11].lower() == b"data:image/":
            new, _ = _data_urls(part.body, "text", tally, protect)
            form = form.with_body(index, new)
    return tally.finish(Rewrite(body=form.to_bytes(), shape=shape), report_empty=report_empty)


def _data_urls(
    body: bytes, kind: data_urls.BodyKind, tally: _Tally, protect: ImageProtector
) -> tuple[bytes, int]:
    try:
        return data_urls.rewrite_data_urls(
            body, kind, lambda data, _mime: tally.protect(protect, data)
        )
    except data_urls.DataUrlError as err:
        raise Refusal("corrupt-image", str(err), "retry the upload") from None


def rewrite_data_url_body(
    upload: UploadRequest, protect: ImageProtector, *, report_empty: bool
) -> Rewrite:
    """Protect base64 image data URLs inside a JSON, form or text body."""
    kind = data_urls.body_kind(upload.content_type) or "text"
    tally = _Tally()
    body, _ = _data_urls(upload.body, kind, tally, protect)
    return tally.finish(Rewrite(body=body, shape="data_url"), report_empty=report_empty)


def rewrite_raw(
    upload: UploadRequest,
    protect: ImageProtector,
    *,
    report_empty: bool,
    shape: str = "raw",
    keep_size: bool = False,
) -> Rewrite:
    """Protect a raw image body; fix declared sizes, dimensions and unsigned checksums.

    `keep_size`: a lossy image (JPEG, WebP) keeps its byte count (the app sized it for a limit).
    """
    try:
        policy = signed_upload.analyze(upload.headers, upload.query)
    except signed_upload.SignedUploadError as err:
        if not is_image(_payload_peek(upload), upload.content_type):
            return Rewrite(shape=shape)  # signed but no image: nothing to protect
        raise Refusal("signed-payload", err.message, err.hint) from None
    chunked = upload.raw and "aws-chunked" in (upload.headers.get("content-encoding") or "")
    trailers: list[tuple[str, str]] = []
    payload = upload.body
    try:
        if chunked:
            payload, trailers = signed_upload.decode_aws_chunked(upload.body)
        elif upload.raw:
            raise Refusal(
                "unsupported-upload",
                "the upload uses a Content-Encoding Sfumato cannot read",
                PROTECT_FIRST,
            )
    except signed_upload.SignedUploadError as err:
        raise Refusal("signed-payload", err.message, err.hint) from None
    tally = _Tally()
    rewrite = Rewrite(shape=shape)
    offset = raw_body.resumed_offset(upload.headers)
    if offset:
        raise Refusal(
            "unsupported-upload",
            "this request resumes an interrupted upload: it carries only part of the file, "
            "which Sfumato cannot protect on its own",
            "start the upload again",
        )
    if not payload or not is_image(payload, upload.content_type):
        return tally.finish(rewrite, report_empty=report_empty)
    lossy = sniff_supported(payload) in ("JPEG", "WEBP")
    exact = len(payload) if policy.exact_length or (keep_size and lossy) else None
    new = tally.protect(protect, payload, exact)
    result = tally.results[-1][1]
    if not result.protected:
        return tally.finish(rewrite, report_empty=report_empty)
    try:
        headers = signed_upload.fixed_checksum_headers(upload.headers, new)
        if chunked:
            rewrite.body = signed_upload.encode_aws_chunked(new, trailers)
            rewrite.raw = True
            if upload.headers.get("x-amz-decoded-content-length"):
                headers["x-amz-decoded-content-length"] = str(len(new))
        else:
            rewrite.body = new
    except signed_upload.SignedUploadError as err:
        raise Refusal("unsupported-upload", err.message, err.hint) from None
    headers.update(
        raw_body.declared_header_fixes(upload.headers, len(new), result.width, result.height)
    )
    rewrite.set_headers = headers
    return tally.finish(rewrite, report_empty=report_empty)


def _payload_peek(upload: UploadRequest) -> bytes:
    if upload.raw and "aws-chunked" in (upload.headers.get("content-encoding") or ""):
        start = upload.body.find(b"\r\n")
        return upload.body[start + 2 : start + 64] if start >= 0 else b""
    return upload.body[:64]


def _query_has(query: str, *names: str) -> bool:
    keys = {piece.split("=", 1)[0].lower() for piece in query.split("&")}
    return all(name.lower() in keys for name in names)


def rewrite_s3(upload: UploadRequest, protect: ImageProtector) -> Rewrite:
    """S3 from a site's page: PutObject (raw), POST policy forms (multipart), multipart parts."""
    ct = upload.content_type.lower()
    if upload.method == "POST":
        if ct.startswith("multipart/"):
            return rewrite_multipart(protect=protect, upload=upload, report_empty=False, shape="s3")
        return Rewrite(shape="s3")  # CreateMultipartUpload, CompleteMultipartUpload, ...
    if _query_has(upload.query, "partnumber", "uploadid"):
        if is_image(_payload_peek(upload), None):
            raise Refusal(
                "unsupported-upload",
                "the image is sent to S3 in several parts, which Sfumato cannot protect in transit",
                PROTECT_FIRST,
            )
        return Rewrite(shape="s3")
    return rewrite_raw(upload, protect, report_empty=True, shape="s3")


def rewrite_generic(upload: UploadRequest, protect: ImageProtector) -> Rewrite:
    """Any image upload: decide the body shape from Content-Type and magic bytes."""
    ct = upload.content_type.lower()
    if ct.startswith("multipart/"):
        return rewrite_multipart(upload, protect, report_empty=False, shape="generic")
    kind = data_urls.body_kind(ct)
    if kind is not None:
        rewrite = rewrite_data_url_body(upload, protect, report_empty=False)
        rewrite.shape = "generic"
        return rewrite
    return rewrite_raw(upload, protect, report_empty=False, shape="generic")


def rewrite_upload(
    shape: str, upload: UploadRequest, protect: ImageProtector, *, keep_size: bool = False
) -> Rewrite:
    """Rewrite a candidate upload of the given body shape (see `site_profiles.SHAPES`)."""
    if shape == "multipart":
        return rewrite_multipart(upload, protect, report_empty=True)
    if shape == "raw":
        return rewrite_raw(upload, protect, report_empty=True, keep_size=keep_size)
    if shape == "data_url":
        return rewrite_data_url_body(upload, protect, report_empty=True)
    if shape == "s3":
        return rewrite_s3(upload, protect)
    if shape == "generic":
        return rewrite_generic(upload, protect)
    raise ValueError(f"no rewrite for body shape {shape!r}")
