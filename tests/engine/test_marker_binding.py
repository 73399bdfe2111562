"""The marker vouches for the pixels it was written for: a copied or stale marker does not count."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from perturb import UnsupportedImage, already_protected, check_marker, inspect_marker, protect
from perturb.containers import jpeg_insert_segments, png_xmp
from perturb.provenance import DIGEST_PLACEHOLDER, build_xmp, digest_file
from tests.engine import samples

SAMPLES = samples.sample_set()


@pytest.fixture(scope="module")
def protected(tiny_model: str) -> dict[str, bytes]:
    return {name: protect(data, model=tiny_model).data for name, data in SAMPLES.items()}


def xmp_packet(data: bytes) -> bytes:
    start = data.index(b"<?xpacket begin")
    end = data.index(b"<?xpacket end", start)
    return data[start : data.index(b"?>", end) + 2]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_protected_format_verifies(name: str, protected: dict[str, bytes]) -> None:
    check = check_marker(protected[name])
    assert check.status == "matches" and check.protected
    assert check.marker.pixel_digest == digest_file(protected[name])
    assert check_marker(SAMPLES[name]).status == "absent"


def test_a_marker_copied_into_an_unprotected_jpeg_does_not_count(protected) -> None:
    original = SAMPLES["jpeg_exif_icc.jpg"]
    packet = xmp_packet(protected["jpeg_exif_icc.jpg"])
    image = Image.open(io.BytesIO(original))
    resaved = samples.encode(image, "JPEG", quality=95, xmp=packet)  # an editor keeping XMP
    comment = jpeg_insert_segments(
        original, [b"\xff\xfe" + (len(packet) + 2).to_bytes(2, "big") + packet])
    for forged in (original + packet, comment, resaved):
        assert b"sfumato:PixelDigest" in forged
        assert inspect_marker(forged) is None
        assert check_marker(forged).status == "pixels-changed"


def test_an_edited_protected_png_is_not_protected_but_a_lossless_resave_is(protected) -> None:
    data = protected["rgba.png"]
    packet = png_xmp(data)
    image = Image.open(io.BytesIO(data))
    image.load()
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet.decode("utf-8"))
    same_pixels = samples.encode(image, "PNG", pnginfo=info, compress_level=9)
    assert same_pixels != data and inspect_marker(same_pixels) is not None
    image.putpixel((10, 10), (0, 0, 0, 255))
    edited = samples.encode(image, "PNG", pnginfo=info)
    assert inspect_marker(edited) is None
    assert check_marker(edited).status == "pixels-changed"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=st.integers(0, 95), y=st.integers(0, 79), channel=st.integers(0, 3),
       delta=st.sampled_from([-1, 1]))
def test_any_single_sample_change_breaks_the_binding(tiny_model, x, y, channel, delta) -> None:
    data = protect(samples.rgba_png(), model=tiny_model).data
    pixels = np.asarray(Image.open(io.BytesIO(data))).copy()
    value = int(pixels[y, x, channel])
    pixels[y, x, channel] = value + delta if 0 <= value + delta <= 255 else value - delta
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", png_xmp(data).decode("utf-8"))
    edited = samples.encode(Image.fromarray(pixels, "RGBA"), "PNG", pnginfo=info)
    assert check_marker(edited).status == "pixels-changed"


def test_a_marker_without_a_digest_does_not_count() -> None:
    image = Image.fromarray(samples.artwork(32, 24))
    old = build_xmp(None, model_id="m", model_version="1", strength=1.0, date="2026-01-01",
                    ai_reservation=True).replace(b'    sfumato:PixelDigest="' +
                                                 DIGEST_PLACEHOLDER.encode() + b'"\n', b"")
    assert b"PixelDigest" not in old
    data = samples.encode(image, "JPEG", xmp=old)
    assert check_marker(data).status == "no-digest" and inspect_marker(data) is None


def test_verification_decodes_within_a_pixel_limit(protected) -> None:
    data = protected["jpeg_exif_icc.jpg"]  # 160 × 120
    assert inspect_marker(data, max_pixels=160 * 120) is not None
    assert check_marker(data, max_pixels=160 * 120 - 1).status == "unreadable"
    assert inspect_marker(data, max_pixels=100) is None


def test_undecodable_pixels_do_not_count(protected) -> None:
    data = protected["jpeg_exif_icc.jpg"]
    sos = data.index(b"\xff\xda")
    truncated = data[: sos + 40]
    assert check_marker(truncated).status in ("unreadable", "pixels-changed")
    assert inspect_marker(truncated) is None


def test_a_file_carrying_our_placeholder_text_is_refused(tiny_model: str) -> None:
    image = Image.fromarray(samples.artwork(24, 16))
    comment = f'sfumato:PixelDigest="{DIGEST_PLACEHOLDER}"'.encode()
    data = samples.encode(image, "JPEG", comment=comment)
    with pytest.raises(UnsupportedImage, match="forged"):
        protect(data, model=tiny_model)


def test_protecting_a_protected_file_again_verifies_again(tiny_model: str, protected) -> None:
    again = protect(protected["three_frames.gif"], model=tiny_model, strength="high").data
    assert again.count(b"sfumato:PixelDigest") == 1
    assert inspect_marker(again).strength == 1.6


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_already_protected_needs_a_matching_marker_and_nothing_more(name, protected) -> None:
    """The skip rule of the proxy and the CLI: a protected file is skipped; the same file with
    the original appended still has a valid marker, but is not skipped; an original is not."""
    data, original = protected[name], SAMPLES[name]
    assert already_protected(data) == inspect_marker(data) is not None
    carrying = data + original
    assert inspect_marker(carrying) is not None and already_protected(carrying) is None
    assert already_protected(original) is None
