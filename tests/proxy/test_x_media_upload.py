"""x_media_upload (X): reading INIT/APPEND/FINALIZE wherever params travel, surgical rewrites,
the tracked-upload store; arbitrary input never crashes."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.uploads import x_media_upload as cu
from tests.proxy.helpers import MULTIPART_CT, file_field, form_field, multipart_body


def test_params_from_the_query() -> None:
    step = cu.parse_step(
        "/i/media/upload.json?command=INIT&total_bytes=1234&media_type=image%2Fpng", b"", ""
    )
    assert (step.command, step.total_bytes, step.media_type) == ("INIT", 1234, "image/png")


def test_append_segment_from_multipart_with_fields() -> None:
    body = multipart_body(
        form_field("command", b"APPEND"),
        form_field("media_id", b"77"),
        form_field("segment_index", b"3"),
        file_field("media", "blob", "application/octet-stream", b"\x00\r\n\x01"),
    )
    step = cu.parse_step("/i/media/upload.json", body, MULTIPART_CT)
    assert (step.command, step.media_id, step.segment_index) == ("APPEND", "77", 3)
    assert step.segment == b"\x00\r\n\x01" and step.segment_field == "media"
    assert step.segment_part == 3


def test_append_base64_media_data_in_a_form() -> None:
    body = b"command=APPEND&media_id=9&segment_index=0&media_data=" + base64.b64encode(
        b"\xff\xd8\xff"
    ).replace(b"/", b"%2F")
    step = cu.parse_step("/1.1/media/upload.json", body, "application/x-www-form-urlencoded")
    assert step.segment == b"\xff\xd8\xff" and step.segment_field == "media_data"


@pytest.mark.parametrize(
    ("path", "body", "ct"),
    [
        ("/u?command=INIT&total_bytes=abc", b"", ""),
        ("/u?command=APPEND&segment_index=-1", b"", ""),
        ("/u", b"command=APPEND&media_data=***", "application/x-www-form-urlencoded"),
        ("/u", b"--x\r\nbroken", "multipart/form-data; boundary=x"),
    ],
)
def test_malformed_steps_raise(path: str, body: bytes, ct: str) -> None:
    with pytest.raises(cu.ChunkedUploadError):
        cu.parse_step(path, body, ct)


def test_query_and_form_rewrites_touch_only_the_value() -> None:
    path = "/i/media/upload.json?command=FINALIZE&media_id=5&original_md5=abc&x=%2F"
    assert cu.replace_query_param(path, "original_md5", "def") == path.replace("abc", "def")
    assert cu.replace_query_param("/no/query", "a", "b") == "/no/query"
    body = b"a=1&segment_index=4&b=%20"
    assert cu.replace_form_param(body, "segment_index", "0") == b"a=1&segment_index=0&b=%20"


def test_media_id_from_init_responses() -> None:
    assert cu.media_id_from_response(b'{"media_id":1,"media_id_string":"1"}') == "1"
    assert cu.media_id_from_response(b'{"data":{"id":"42"}}') == "42"
    assert cu.media_id_from_response(b"not json") is None
    assert cu.media_id_from_response(b"[1]") is None


def test_tracked_upload_assembles_in_order_and_refuses_overflow() -> None:
    store = cu.XUploadStore()
    store.track("m", 6, "image/png")
    entry = store.get("m")
    assert entry is not None
    entry.add(1, b"def")
    entry.add(0, b"abc")
    assert entry.received == 6 and entry.assemble() == b"abcdef"
    with pytest.raises(cu.ChunkedUploadError):
        entry.add(2, b"x")


def test_store_is_bounded() -> None:
    store = cu.XUploadStore()
    for i in range(cu.MAX_TRACKED + 10):
        store.track(str(i), 1, "image/png")
    assert len(store) == cu.MAX_TRACKED
    assert store.get("0") is None and store.get(str(cu.MAX_TRACKED + 9)) is not None


@settings(deadline=None, max_examples=300)
@given(
    st.text(max_size=120),
    st.binary(max_size=300),
    st.sampled_from(["", "application/x-www-form-urlencoded", MULTIPART_CT, "multipart/form-data"]),
)
def test_random_requests_never_crash(path: str, body: bytes, ct: str) -> None:
    with contextlib.suppress(cu.ChunkedUploadError):
        cu.parse_step(path, body, ct)


def test_declared_total_leaves_room_only_for_lossless_formats() -> None:
    assert cu.declared_total("image/jpeg", 1000) == 1000
    assert cu.declared_total("image/png", 1000) == 1000 + cu.HEADROOM_MIN
    assert cu.declared_total("image/png", 2_000_000) == 3_000_000
    assert cu.declared_total("image/png", 4_000_000) == cu.X_IMAGE_LIMIT  # capped
    assert cu.declared_total("image/png", 6_000_000) == 6_000_000  # never lowered
    assert cu.declared_total("image/gif", 8_000_000) == 12_000_000


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
@pytest.mark.parametrize("extra", [3, 5, 12, 13, 257, 258, 259, 1000, 65536])
def test_padding_keeps_the_image_and_hits_the_length(fmt: str, extra: int) -> None:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(extra).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    data = out.getvalue()
    padded = cu.pad_to_length(data, len(data) + extra)
    if fmt == "PNG" and extra < 12:
        assert padded is None
        return
    assert padded is not None and len(padded) == len(data) + extra
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    again = Image.open(io.BytesIO(padded))
    again.load()  # a broken structure raises here
    assert (np.asarray(again.convert("RGB")) == original).all()


def test_padding_other_formats_is_impossible() -> None:
    assert cu.pad_to_length(b"\xff\xd8\xff" + b"x" * 10, 100) is None
    assert cu.pad_to_length(b"GIF89a;", len(b"GIF89a;") + 4) is None
