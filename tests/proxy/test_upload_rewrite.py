"""upload_rewrite without the engine: requests without images are never touched, look-alike
text is not mistaken for an image, resumed uploads are refused."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import http

from proxy.uploads.image_protection import ImageProtector, is_image
from proxy.uploads.refusal import Refusal
from proxy.uploads.upload_rewrite import UploadRequest, rewrite_upload
from tests.proxy.helpers import MULTIPART_CT, file_field, form_field, multipart_body


class MustNotProtect(ImageProtector):
    def __call__(self, data: bytes, exact_length: int | None = None):
        raise AssertionError(f"tried to protect {data[:16]!r}")


def request(body: bytes, content_type: str = MULTIPART_CT, **headers: str) -> UploadRequest:
    hdrs = http.Headers(content_type=content_type, **headers)
    return UploadRequest("POST", "www.deviantart.com", "/up", hdrs, body)


def test_text_fields_that_look_like_other_formats_are_not_images() -> None:
    body = multipart_body(
        form_field("title", b"BMX art"),
        form_field("tags", b"II*\x00 weird but text"),
        form_field("note", b"\x00\x00\x01\x00"),
    )
    rewrite = rewrite_upload("multipart", request(body), MustNotProtect())
    assert rewrite.body is None and rewrite.outcome == "passed"


def test_empty_file_inputs_are_not_images() -> None:
    body = multipart_body(
        file_field("upload_file", "", "image/jpeg", b""), form_field("title", b"t")
    )
    rewrite = rewrite_upload("multipart", request(body), MustNotProtect())
    assert rewrite.body is None and rewrite.outcome == "passed"


def test_a_real_bmp_file_is_refused() -> None:
    bmp = b"BM" + (70).to_bytes(4, "little") + b"\0" * 4 + (54).to_bytes(4, "little")
    bmp += (40).to_bytes(4, "little") + b"\0" * 52
    assert is_image(bmp, None) and not is_image(b"BMX art", None, is_file=False)
    body = multipart_body(file_field("upload_file", "a.bmp", "application/octet-stream", bmp))
    with pytest.raises(Refusal) as info:
        rewrite_upload("multipart", request(body), ImageProtector())
    assert info.value.code == "unsupported-image"


def test_resumed_instagram_upload_is_refused() -> None:
    upload = request(b"tail of a jpeg", "application/octet-stream", offset="65536")
    with pytest.raises(Refusal) as info:
        rewrite_upload("raw", upload, MustNotProtect())
    assert info.value.code == "unsupported-upload"


field_values = st.binary(max_size=200).filter(
    lambda b: not b.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"data:image/"))
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
    rewrite = rewrite_upload("multipart", request(body), MustNotProtect())
    assert rewrite.body is None and not rewrite.set_headers and rewrite.outcome == "passed"


class Unchanged(ImageProtector):
    def __call__(self, data: bytes, exact_length: int | None = None):
        from proxy.uploads.image_protection import ImageResult

        return ImageResult(data, protected=False, reason="test")


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["multipart", "raw", "data_url", "s3", "generic"]),
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
                "12",
            ]
        ),
    ),
)
def test_random_requests_only_ever_rewrite_or_refuse(shape, ct, body, headers) -> None:
    hdrs = http.Headers(content_type=ct, **{k.replace("-", "_"): v for k, v in headers.items()})
    upload = UploadRequest(
        "PUT", "b.s3.amazonaws.com", "/k?x=1", hdrs, body, raw="content-encoding" in headers
    )
    try:
        rewrite = rewrite_upload(shape, upload, Unchanged())
    except Refusal:
        return
    assert rewrite.body is None or rewrite.outcome == "protected"
