"""Every error path: typed errors with a message and a hint, never a crash or a hang."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from perturb import (
    CorruptImage,
    EmptyInput,
    ImageTooLarge,
    InvalidStrength,
    NotAnImage,
    ProtectError,
    ProtectTimeout,
    UnsupportedImage,
    protect,
)
from tests.engine import samples


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_errors_carry_message_and_hint() -> None:
    err = CorruptImage("the file is broken")
    assert err.message == "the file is broken"
    assert err.hint
    assert str(err) == f"the file is broken ({err.hint})"
    assert isinstance(err, ProtectError)


def test_empty_input(tiny_model: str) -> None:
    with pytest.raises(EmptyInput):
        protect(b"", model=tiny_model)


@pytest.mark.parametrize("data", [b"hello, world", b"\x00" * 100, b"<html></html>"])
def test_non_images(tiny_model: str, data: bytes) -> None:
    with pytest.raises(NotAnImage):
        protect(data, model=tiny_model)


def test_wrong_type_is_not_an_image(tiny_model: str) -> None:
    with pytest.raises(NotAnImage):
        protect("art.png", model=tiny_model)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_other_image_formats_are_unsupported(tiny_model: str, fmt: str) -> None:
    data = samples.encode(Image.new("RGB", (8, 8)), fmt)
    with pytest.raises(UnsupportedImage, match=fmt):
        protect(data, model=tiny_model)


def test_cmyk_jpeg_is_refused_clearly(tiny_model: str) -> None:
    data = samples.encode(Image.new("CMYK", (16, 16), (0, 50, 100, 0)), "JPEG")
    with pytest.raises(UnsupportedImage, match="CMYK"):
        protect(data, model=tiny_model)


def test_one_bit_png_is_widened_to_greyscale_and_says_so(tiny_model: str) -> None:
    bits = np.zeros((16, 16), bool)
    bits[:, 8:] = True
    data = samples.encode(Image.fromarray(bits.astype(np.uint8) * 255).convert("1"), "PNG")
    out = protect(data, model=tiny_model)
    after = Image.open(io.BytesIO(out.data))
    assert after.mode == "L"
    assert any("1-bit" in note for note in out.report.notes)
    diff = np.abs(np.asarray(after, np.int16) - np.where(bits, 255, 0))
    assert diff.max() <= 4 and (diff > 0).mean() > 0.4  # the clipped half of the checkerboard


@pytest.mark.parametrize(
    "data",
    [
        samples.jpeg_with_exif_and_icc()[:600],
        samples.rgba_png()[:300],
        samples.webp_lossy()[:100],
        samples.gif_3_frames()[:200],
        b"\x89PNG\r\n\x1a\n" + b"garbage" * 10,
        b"\xff\xd8\xff" + b"\x00" * 50,
        b"GIF89a",
    ],
    ids=["jpeg", "png", "webp", "gif", "png-garbage", "jpeg-zeros", "gif-header"],
)
def test_truncated_and_corrupt_files(tiny_model: str, data: bytes) -> None:
    with pytest.raises((CorruptImage, UnsupportedImage)):
        protect(data, model=tiny_model)


def test_pixel_limit(tiny_model: str) -> None:
    with pytest.raises(ImageTooLarge, match=r"over the limit of 0\.001 MP") as err:
        protect(samples.grey_png(), model=tiny_model, max_pixels=1000)
    assert "0.0 MP" not in str(err.value)


def test_megapixels_are_said_without_rounding_to_nothing() -> None:
    from perturb.engine import megapixels

    assert [megapixels(n) for n in (1000, 250_000, 4_194_304, 24_000_000)] == [
        "0.001 MP", "0.25 MP", "4.19 MP", "24.0 MP"]


def test_decompression_bomb_is_refused_before_decoding(tiny_model: str) -> None:
    # 60000 × 60000 declared in a 60-byte file: refused from the header alone
    with pytest.raises(ImageTooLarge):
        protect(png_header_only(60000, 60000), model=tiny_model)


def test_animation_total_pixels_are_limited(tiny_model: str) -> None:
    data = samples.gif_3_frames(64, 48)
    with pytest.raises(ImageTooLarge, match="frames"):
        protect(data, model=tiny_model, max_pixels=64 * 48 * 2)


def test_time_limit_is_checked_between_tiles(small_tile_model: str) -> None:
    data = samples.encode(Image.fromarray(samples.artwork(400, 300)), "PNG")
    with pytest.raises(ProtectTimeout):
        protect(data, model=small_tile_model, time_limit=1e-6)
    assert protect(data, model=small_tile_model, time_limit=60).data


@pytest.mark.parametrize("strength", ["extreme", -1, float("nan"), float("inf"), True, None])
def test_invalid_strengths(tiny_model: str, strength: object) -> None:
    with pytest.raises(InvalidStrength):
        protect(samples.grey_png(), model=tiny_model, strength=strength)  # type: ignore[arg-type]


def test_invalid_strength_is_a_value_error_too(tiny_model: str) -> None:
    with pytest.raises(ValueError):
        protect(samples.grey_png(), model=tiny_model, strength="-0.5")


def test_sixteen_bit_values_out_of_range_are_refused(tiny_model: str) -> None:
    image = Image.fromarray(np.full((8, 8), 70000, dtype=np.int32), "I")
    with pytest.raises(UnsupportedImage):
        protect(image, model=tiny_model)
