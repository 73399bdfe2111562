"""One buffered request to an enabled site, through the pipeline, in a worker thread:
decode the body → find its images (`body_images`) → protect or refuse each → rebuild → apply the
fixes the site's profile names → encode again.

Given an `ImageFinder` instead of an `ImageProtector` the same pipeline only counts the images
(and refuses what it can tell is unprotectable), so the addon takes a protection worker only for
requests that carry images. Anything that cannot be protected raises `Refusal`; a request that
carries no image is forwarded byte for byte.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mitmproxy import http

from perturb.image_kinds import (
    image_offsets,
    metadata_regions,
    pixel_count,
    pixel_data_sample,
    sniff_format,
    sniff_image,
)
from proxy.image_protection import (
    ImageFinder,
    ImageProtector,
    ImageResult,
    refuse_unsupported,
)
from proxy.uploads import content_encoding, header_fixes, signed_upload
from proxy.uploads.body_images import ImageSearch, carries_image
from proxy.uploads.body_reading import too_large
from proxy.uploads.refusal import PROTECT_FIRST, Refusal

Protector = ImageProtector | ImageFinder


@dataclass(frozen=True)
class UploadRequest:
    """A snapshot of the request that the worker may read without touching the flow.
    `body` is the body as it came over the wire (still in its Content-Encoding)."""

    method: str
    host: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "") or ""

    @property
    def query(self) -> str:
        return self.path.split("?", 1)[1] if "?" in self.path else ""

    @classmethod
    def from_flow(cls, request: http.Request) -> UploadRequest:
        return cls(
            request.method,
            request.pretty_host,
            request.path,
            request.headers.copy(),
            request.raw_content or b"",
        )


@dataclass(frozen=True)
class UploadRules:
    """What the site's profile asks of this request (see `site_profiles`)."""

    fixes: frozenset[str] = frozenset()
    keep_size: bool = False  # the app sized a lossy image for a limit: keep its byte count
    report_empty: bool = False  # a listed upload endpoint: report even without an image
    body_limit: int = 64 * 1024 * 1024  # for the decoded body too


@dataclass
class Rewrite:
    """What to change in the request (None/empty: leave as is) and what to report.
    `answer`: a response to send instead of forwarding (a step a plug-in answers itself)."""

    body: bytes | None = None
    path: str | None = None
    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)
    answer: http.Response | None = None
    shape: str = ""
    outcome: Literal["protected", "passed"] | None = None
    reason: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    images: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    protected_data: bytes = b""


def protect_image(protector: Protector, data: bytes, exact_length: int | None) -> ImageResult:
    """One image through the protector, inside the pixel budget (waiting for room until the
    protector's deadline); a format the engine cannot protect is refused first, a result that
    still holds one of the original's embedded previews after."""
    refuse_unsupported(data)
    pixels = getattr(protector, "pixels", None)
    if pixels is None:
        result = protector(data, exact_length=exact_length)
    else:
        with pixels.hold(pixel_count(data), protector.deadline):
            result = protector(data, exact_length=exact_length)
    if result.protected:
        refuse_carried_previews(data, result.data)
    return result


_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{128,}")


def refuse_carried_previews(original: bytes, protected: bytes) -> None:
    """The protected file must hold none of the original's embedded previews (an EXIF or
    Photoshop thumbnail, a preview in a comment or in XMP as base64): a copy would hand the site
    a small unprotected original. The engine regenerates the previews it knows; anything it
    carried over unchanged is caught here, by a run of the preview's pixel data."""
    for start, end in metadata_regions(original):
        for offset, name in image_offsets(original, start, end):
            sample = pixel_data_sample(original, offset)
            if sample is not None and sample in protected:
                raise _carried(name)
        for run in _BASE64_RUN.finditer(original, start, end):
            text = run.group(0)
            head = base64.b64decode(text[:64])
            if sniff_image(head, strict=True) and text[len(text) // 2 :][:48] in protected:
                raise _carried(sniff_image(head, strict=True) or "an image")


def _carried(name: str) -> Refusal:
    return Refusal(
        "unsupported-image",
        f"the image embeds a {name} preview that protection would have left unprotected",
        "export the image without embedded thumbnails or previews (most editors: without "
        "metadata) and upload it again",
    )


class _Tally:
    """The search's `protect` callback: runs each image through the protector (inside the pixel
    budget) with the length it must keep, and records the results."""

    def __init__(
        self,
        protector: Protector,
        rules: UploadRules,
        signed: signed_upload.SignedUploadError | None,
        exact_length: bool,
    ) -> None:
        self.protector = protector
        self.rules = rules
        self.signed = signed
        self.exact_length = exact_length
        self.results: list[tuple[int, ImageResult]] = []

    def __call__(self, data: bytes, whole: bool) -> bytes:
        if self.signed is not None:
            raise Refusal("signed-payload", self.signed.message, self.signed.hint)
        lossy = sniff_format(data) in ("JPEG", "WEBP")
        keep = whole and (self.exact_length or (self.rules.keep_size and lossy))
        exact = len(data) if keep else None
        result = protect_image(self.protector, data, exact)
        self.results.append((len(data), result))
        return result.data if result.protected else data

    def report(self, rewrite: Rewrite) -> Rewrite:
        """Fill in the outcome of the protected images."""
        rewrite.images = len(self.results)
        rewrite.bytes_in = sum(n for n, _ in self.results)
        rewrite.bytes_out = sum(len(r.data) for _, r in self.results)
        for _, result in self.results:
            for key, value in result.timings.items():
                rewrite.timings[key] = rewrite.timings.get(key, 0.0) + float(value)
        skipped = [r.reason for _, r in self.results if not r.protected]
        if len(skipped) == len(self.results):
            rewrite.outcome, rewrite.reason = "passed", skipped[0]
        else:
            rewrite.outcome = "protected"
            rewrite.reason = f"{len(skipped)} image(s) {skipped[0]}" if skipped else ""
        return rewrite


def _query_has(query: str, *names: str) -> bool:
    keys = {piece.split("=", 1)[0].lower() for piece in query.split("&")}
    return all(name.lower() in keys for name in names)


def _refuse_resumed(upload: UploadRequest, rules: UploadRules) -> None:
    """A request that resumes an interrupted upload carries only the tail of a file."""
    if "resumable-offset" in rules.fixes and header_fixes.resumed_offset(upload.headers):
        raise Refusal(
            "unsupported-upload",
            "this request resumes an interrupted upload: it carries only part of the file, "
            "which Sfumato cannot protect on its own",
            "start the upload again",
        )


def _decode(
    upload: UploadRequest, rules: UploadRules, read_signed: bool
) -> tuple[bytes, list[str], list[tuple[str, str]] | None]:
    """(payload, codings to apply again, aws-chunked trailers or None)."""
    codings = content_encoding.body_codings(upload.headers)
    body, trailers = upload.body, None
    try:
        if content_encoding.S3_FRAMING in codings:
            codings.remove(content_encoding.S3_FRAMING)
            body, trailers = signed_upload.decode_aws_chunked(body, read_signed=read_signed)
        return content_encoding.decode(body, codings, rules.body_limit), codings, trailers
    except signed_upload.SignedUploadError as err:
        raise Refusal("bad-request", err.message, err.hint) from None
    except content_encoding.EncodingError as err:
        raise Refusal("unsupported-upload", str(err), PROTECT_FIRST) from None
    except content_encoding.DecodedTooLarge:
        raise too_large(rules.body_limit, rules.body_limit, what="decompressed upload") from None


def rewrite_upload(upload: UploadRequest, rules: UploadRules, protector: Protector) -> Rewrite:
    """Protect every image of the request; raise `Refusal` if one cannot be."""
    # Requests that carry a piece of a file, or whose bytes are signed, cannot be rebuilt.
    _refuse_resumed(upload, rules)
    signed: signed_upload.SignedUploadError | None = None
    policy = signed_upload.SignedPolicy(signed=False)
    if "s3" in rules.fixes:
        try:
            policy = signed_upload.analyze(upload.headers, upload.query)
        except signed_upload.SignedUploadError as err:
            signed = err  # refused only if the request carries an image
    payload, codings, trailers = _decode(upload, rules, read_signed=signed is not None)
    if "s3" in rules.fixes and _query_has(upload.query, "partnumber", "uploadid"):
        if carries_image(payload, upload.content_type):
            raise Refusal(
                "unsupported-upload",
                "the image is sent to S3 in several parts, which Sfumato cannot protect in transit",
                PROTECT_FIRST,
            )
        return Rewrite(shape="s3")
    # Find every image and protect it.
    tally = _Tally(protector, rules, signed, exact_length=policy.exact_length and not codings)
    search = ImageSearch(tally)
    new_payload = search.rewrite(payload, upload.content_type)
    rewrite = Rewrite(shape=search.shape or "raw")
    if not search.images:
        if rules.report_empty:
            rewrite.outcome, rewrite.reason = "passed", "the request carried no image"
        return rewrite
    tally.report(rewrite)
    if new_payload is payload:
        return rewrite  # nothing changed (already protected, or only counted)
    # Rebuild: the encoding it came in, and the fixes the profile names.
    encoded = content_encoding.encode(new_payload, codings)
    rewrite.body = encoded
    if trailers is not None:
        rewrite.body = signed_upload.encode_aws_chunked(encoded, trailers)
        rewrite.set_headers["x-amz-decoded-content-length"] = str(len(encoded))
    if "s3" in rules.fixes:
        try:
            checksums = signed_upload.fixed_checksum_headers(upload.headers, encoded)
        except signed_upload.SignedUploadError as err:
            raise Refusal("signed-payload", err.message, err.hint) from None
        rewrite.set_headers.update(checksums)
    if search.shape == "raw":
        result = tally.results[-1][1]
        if "entity-length" in rules.fixes:
            rewrite.set_headers.update(header_fixes.entity_length_fix(upload.headers, len(encoded)))
        if "rupload-params" in rules.fixes:
            rewrite.set_headers.update(
                header_fixes.rupload_params_fix(upload.headers, result.width, result.height)
            )
        rewrite.protected_data = result.data
    return rewrite
