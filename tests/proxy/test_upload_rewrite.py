"""upload_rewrite and body_images without the engine: every body shape is searched, requests
without images are never touched, look-alike text is not mistaken for an image, images the
pipeline cannot rebuild are refused, resumed uploads are refused."""

from __future__ import annotations

import base64
import binascii
import gzip
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import http

from perturb.image_kinds import sniff_image
from proxy.image_protection import ImageFinder, ImageProtector, ImageResult
from proxy.uploads.refusal import Refusal
from proxy.uploads.upload_rewrite import UploadRequest, UploadRules, rewrite_upload
from tests.proxy.conftest import image_bytes
from tests.proxy.helpers import MULTIPART_CT, file_field, form_field, multipart_body

JPEG = image_bytes(40, 30, "JPEG", seed=3)
PNG = image_bytes(40, 30, "PNG", seed=4)
LISTED = UploadRules(report_empty=True)


class MustNotProtect(ImageProtector):
    def __call__(self, data: bytes, exact_length: int | None = None) -> ImageResult:
        raise AssertionError(f"tried to protect {data[:16]!r}")


class Marking(ImageProtector):
    """Stands in for the engine: 'protects' by appending a mark, records what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bytes] = []

    def __call__(self, data: bytes, exact_length: int | None = None) -> ImageResult:
        self.seen.append(data)
        return ImageResult(data + b"PROTECTED", protected=True, width=40, height=30)


def request(body: bytes, content_type: str = MULTIPART_CT, **headers: str) -> UploadRequest:
    hdrs = http.Headers(content_type=content_type, **headers)
    return UploadRequest("POST", "www.deviantart.com", "/up", hdrs, body)


def test_text_fields_that_look_like_other_formats_are_not_images() -> None:
    body = multipart_body(
        form_field("title", b"BMX art"),
        form_field("tags", b"II*\x00 weird but text"),
        form_field("note", b"\x00\x00\x01\x00"),
        form_field("pnm", b"P6 is a fine name"),
        form_field("svg", b"<svg> in a text field is the user's words"),
    )
    rewrite = rewrite_upload(request(body), LISTED, MustNotProtect())
    assert rewrite.body is None and rewrite.outcome == "passed"


def test_empty_file_inputs_are_not_images() -> None:
    body = multipart_body(file_field("upload_file", "", "image/jpeg", b""), form_field("t", b"t"))
    rewrite = rewrite_upload(request(body), LISTED, MustNotProtect())
    assert rewrite.body is None and rewrite.outcome == "passed"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (
            b"BM"
            + (70).to_bytes(4, "little")
            + b"\0" * 4
            + (54).to_bytes(4, "little")
            + (40).to_bytes(4, "little")
            + b"\0" * 52,
            "BMP",
        ),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00\x00\x14ftypjp2 " + b"\0" * 40, "JPEG 2000"),
        (b"\x00\x00\x00\x1cftypavio\x00\x00\x00\x00avioavifmif1" + b"\0" * 40, "AVIF"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    ],
)
def test_unprotectable_formats_are_refused_whatever_their_declared_type(data, name) -> None:
    body = multipart_body(file_field("upload_file", "a.bin", "application/octet-stream", data))
    for protector in (ImageFinder(), MustNotProtect()):
        with pytest.raises(Refusal) as info:
            rewrite_upload(request(body), LISTED, protector)
        assert info.value.code == "unsupported-image" and name in info.value.message
        assert "sfumato protect" in info.value.hint


def test_resumed_instagram_upload_is_refused() -> None:
    upload = request(b"tail of a jpeg", "application/octet-stream", offset="65536")
    rules = UploadRules(fixes=frozenset({"resumable-offset"}))
    with pytest.raises(Refusal) as info:
        rewrite_upload(upload, rules, MustNotProtect())
    assert info.value.code == "unsupported-upload"


def test_base64_transfer_encoded_part_is_protected_and_encoded_again() -> None:
    encoded = base64.encodebytes(JPEG).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    head = (
        b'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\nContent-Transfer-Encoding: base64"
    )
    body = multipart_body(form_field("t", b"x"), (head, encoded))
    protector = Marking()
    rewrite = rewrite_upload(request(body), LISTED, protector)
    assert protector.seen == [JPEG] and rewrite.outcome == "protected"
    part = rewrite.body.split(b"\r\n\r\n", 2)[2].split(b"\r\n--", 1)[0]
    assert base64.b64decode(part) == JPEG + b"PROTECTED"
    assert all(len(line) == 76 for line in part.split(b"\r\n")[:-1])


def test_nested_multipart_and_quoted_printable_parts_are_searched() -> None:
    inner_ct = "multipart/mixed; boundary=inner"
    inner = multipart_body(file_field("f", "b.png", "image/png", PNG), boundary="inner")
    qp_head = (
        b'Content-Disposition: form-data; name="q"; filename="q"\r\n'
        b"Content-Transfer-Encoding: quoted-printable"
    )
    body = multipart_body(
        (b'Content-Disposition: form-data; name="n"\r\nContent-Type: ' + inner_ct.encode(), inner),
        (qp_head, binascii.b2a_qp(JPEG, quotetabs=True, istext=False).replace(b"=\n", b"=\r\n")),
    )
    protector = Marking()
    rewrite_upload(request(body), LISTED, protector)
    assert sorted(protector.seen) == sorted([PNG, JPEG])


def test_svg_embedding_a_base64_jpeg_is_refused() -> None:
    svg = (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><image href="'
        b"data:image/jpeg;base64," + base64.b64encode(JPEG) + b'"/></svg>'
    )
    for body, ct in (
        (svg, "text/xml"),
        (multipart_body(file_field("f", "a.svg", "text/xml", svg)), MULTIPART_CT),
    ):
        with pytest.raises(Refusal) as info:
            rewrite_upload(request(body, ct), LISTED, Marking())
        assert info.value.code == "unsupported-image"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps({"img": base64.b64encode(JPEG).decode()}).encode(), "application/json"),
        (
            b"x=1&img=" + base64.b64encode(PNG).replace(b"+", b"%2B").replace(b"/", b"%2F"),
            "application/x-www-form-urlencoded",
        ),
        (b"<a><b>" + base64.b64encode(PNG) + b"</b></a>", "application/xml"),
        (JPEG, "application/octet-stream"),
        (PNG, ""),
    ],
)
def test_images_in_any_body_shape_are_found(body: bytes, content_type: str) -> None:
    protector = Marking()
    rewrite = rewrite_upload(request(body, content_type), UploadRules(), protector)
    assert len(protector.seen) == 1 and rewrite.outcome == "protected" and rewrite.body != body


def test_gzip_encoded_bodies_are_decoded_and_encoded_again() -> None:
    body = multipart_body(file_field("f", "a.jpg", "image/jpeg", JPEG))
    upload = request(gzip.compress(body), MULTIPART_CT, content_encoding="gzip")
    rewrite = rewrite_upload(upload, UploadRules(), Marking())
    assert JPEG + b"PROTECTED" in gzip.decompress(rewrite.body)


def test_a_decompression_bomb_is_refused() -> None:
    upload = request(gzip.compress(b"\0" * (2 << 20)), "text/plain", content_encoding="gzip")
    with pytest.raises(Refusal) as info:
        rewrite_upload(upload, UploadRules(body_limit=1 << 20), ImageFinder())
    assert info.value.code == "body-too-large"


def test_unknown_content_encoding_is_refused() -> None:
    with pytest.raises(Refusal) as info:
        rewrite_upload(
            request(JPEG, "image/jpeg", content_encoding="compress"), UploadRules(), ImageFinder()
        )
    assert info.value.code == "unsupported-upload"


@pytest.mark.parametrize(
    "body",
    [
        multipart_body(file_field("f", "a.bin", "application/octet-stream", b"junk" + JPEG)),
        multipart_body(form_field("t", b"x")) + PNG,  # after the closing boundary
        b"\x08\x96\x01\x12\x80\x10" + JPEG,  # inside a binary format (protobuf-like)
    ],
)
def test_images_where_they_cannot_be_rebuilt_are_refused(body: bytes) -> None:
    content_type = MULTIPART_CT if body.startswith(b"--") else "application/x-protobuf"
    with pytest.raises(Refusal) as info:
        rewrite_upload(request(body, content_type), UploadRules(), ImageFinder())
    assert info.value.code == "unsupported-upload"


def test_other_media_pass_whole() -> None:
    video = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 400 + JPEG  # a cover
    body = multipart_body(file_field("f", "v.mp4", "video/mp4", video))
    assert rewrite_upload(request(body), UploadRules(), MustNotProtect()).body is None
    disguised = b"%PDF-1.7\n" + JPEG  # a container magic glued to an image: no container
    with pytest.raises(Refusal):
        rewrite_upload(request(disguised, "application/pdf"), UploadRules(), ImageFinder())


# Text field values that are not images (an image signature in a field is an image).
field_values = st.binary(max_size=200).filter(
    lambda b: sniff_image(b, strict=True) is None and not b.startswith(b"data:image/")
)


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "csrf", "title"]), field_values),
        min_size=1,
        max_size=6,
    )
)
def test_random_forms_without_images_are_forwarded_untouched(fields) -> None:
    body = multipart_body(*(form_field(name, value) for name, value in fields))
    rewrite = rewrite_upload(request(body), LISTED, MustNotProtect())
    assert rewrite.body is None and not rewrite.set_headers and rewrite.outcome == "passed"


class Unchanged(ImageProtector):
    def __call__(self, data: bytes, exact_length: int | None = None) -> ImageResult:
        return ImageResult(data, protected=False, reason="test")


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        [
            MULTIPART_CT,
            "application/json",
            "application/x-www-form-urlencoded",
            "image/png",
            "text/plain",
            "application/octet-stream",
            "",
        ]
    ),
    st.binary(max_size=400),
    st.dictionaries(
        st.sampled_from(
            [
                "authorization",
                "x-amz-content-sha256",
                "content-md5",
                "offset",
                "x-entity-length",
                "content-encoding",
            ]
        ),
        st.sampled_from(
            [
                "",
                "0",
                "AWS4-HMAC-SHA256 SignedHeaders=host",
                "UNSIGNED-PAYLOAD",
                "aws-chunked",
                "gzip",
                "12",
            ]
        ),
    ),
    st.sets(st.sampled_from(sorted({"entity-length", "rupload-params", "resumable-offset", "s3"}))),
)
def test_random_requests_only_ever_rewrite_or_refuse(ct, body, headers, fixes) -> None:
    hdrs = http.Headers(content_type=ct, **{k.replace("-", "_"): v for k, v in headers.items()})
    upload = UploadRequest("PUT", "b.s3.amazonaws.com", "/k?x=1", hdrs, body)
    try:
        rewrite = rewrite_upload(upload, UploadRules(fixes=frozenset(fixes)), Unchanged())
    except Refusal:
        return
    assert rewrite.body is None


def test_a_checksum_sfumato_cannot_recompute_is_refused() -> None:
    upload = UploadRequest(
        "PUT",
        "b.s3.amazonaws.com",
        "/k.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host&X-Amz-Signature=0",
        http.Headers(content_type="image/jpeg", x_amz_checksum_crc32c="AAAAAA=="),
        JPEG,
    )
    with pytest.raises(Refusal) as info:
        rewrite_upload(upload, UploadRules(fixes=frozenset({"s3"})), Marking())
    assert info.value.code == "signed-payload" and "crc32c" in info.value.message


def test_a_result_still_holding_an_original_preview_is_refused() -> None:
    thumbnail = image_bytes(32, 24, "JPEG", seed=6)
    with_preview = JPEG[:2] + b"\xff\xfe" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail
    with_preview += JPEG[2:]

    class KeepsMetadata(Marking):  # 'protects' the pixels, carries the comment over
        def __call__(self, data: bytes, exact_length: int | None = None) -> ImageResult:
            return ImageResult(data.replace(JPEG[-40:], bytes(40)), protected=True)

    class DropsMetadata(Marking):
        def __call__(self, data: bytes, exact_length: int | None = None) -> ImageResult:
            return ImageResult(JPEG + b"x", protected=True)

    upload = request(with_preview, "image/jpeg")
    with pytest.raises(Refusal) as info:
        rewrite_upload(upload, UploadRules(), KeepsMetadata())
    assert info.value.code == "unsupported-image" and "preview" in info.value.message
    assert rewrite_upload(upload, UploadRules(), DropsMetadata()).outcome == "protected"
