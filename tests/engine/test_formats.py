"""Container parsers and writers: property-based, since they read untrusted bytes."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from perturb import containers, formats, sniff_format
from tests.engine import samples

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=64))
def test_sniffers_never_crash(data: bytes) -> None:
    assert sniff_format(data) in (None, *formats.SUPPORTED)
    formats.sniff_other(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_sniff_real_files(fmt: str) -> None:
    data = samples.encode(Image.new("RGB", (4, 4)), fmt)
    assert sniff_format(data) == fmt


@FAST
@given(st.binary(max_size=512))
def test_segment_and_chunk_parsers_never_crash(tail: bytes) -> None:
    list(containers.jpeg_segments(b"\xff\xd8" + tail))
    containers.jpeg_extra_segments(b"\xff\xd8" + tail)
    list(containers.png_chunks(containers.PNG_SIGNATURE + tail))
    containers.png_xmp(containers.PNG_SIGNATURE + tail)
    list(containers.webp_chunks(b"RIFF\x00\x00\x00\x00WEBP" + tail))
    containers.webp_is_lossless(b"RIFF\x00\x00\x00\x00WEBP" + tail)
    containers.gif_xmp(b"GIF89a" + tail)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=5, max_value=97))
def test_jpeg_quality_is_estimated_from_ijg_tables(quality: int) -> None:
    data = samples.encode(Image.new("RGB", (16, 16), (10, 200, 30)), "JPEG", quality=quality)
    tables = Image.open(io.BytesIO(data)).quantization
    assert abs(containers.estimate_jpeg_quality(list(tables[0])) - quality) <= 1


@FAST
@given(st.one_of(st.just(0), st.integers(min_value=4, max_value=300_000)))
def test_comment_padding_is_exact_and_valid(size: int) -> None:
    segments = containers.jpeg_comment_padding(size)
    assert sum(map(len, segments)) == size
    for seg in segments:
        assert seg[:2] == b"\xff\xfe"
        assert int.from_bytes(seg[2:4], "big") == len(seg) - 2


@FAST
@given(st.binary(max_size=2000).filter(lambda b: b"\x00" not in b))
def test_gif_xmp_extension_round_trips_and_keeps_the_gif_valid(packet: bytes) -> None:
    gif = samples.encode(Image.new("P", (4, 4)), "GIF")
    marked = containers.gif_insert_extension(gif, containers.gif_xmp_extension(packet))
    assert containers.gif_xmp(marked) == packet
    assert Image.open(io.BytesIO(marked)).size == (4, 4)  # decoders skip it
    Image.open(io.BytesIO(marked)).load()
    assert containers.gif_strip_xmp(marked) == gif


@FAST
@given(st.binary(max_size=3000))
def test_png_xmp_chunk_round_trips(packet: bytes) -> None:
    png = samples.encode(Image.new("RGB", (4, 4)), "PNG")
    marked = containers.png_insert_before_idat(png, containers.png_xmp_chunk(packet))
    assert containers.png_xmp(marked) == packet
    Image.open(io.BytesIO(marked)).load()


def test_webp_lossless_detection() -> None:
    assert containers.webp_is_lossless(samples.webp_lossless_rgba())
    assert not containers.webp_is_lossless(samples.webp_lossy())


APP13_PAYLOAD = b"Photoshop 3.0\x00" + b"8BIM-iptc-payload"
APP13 = b"\xff\xed" + (len(APP13_PAYLOAD) + 2).to_bytes(2, "big") + APP13_PAYLOAD


def test_jpeg_extra_segments_keep_photoshop_app13_only() -> None:
    jpeg = samples.jpeg_with_exif_and_icc()
    with_app13 = containers.jpeg_insert_segments(jpeg, [APP13])
    assert containers.jpeg_extra_segments(with_app13) == [APP13]
    assert containers.jpeg_extra_segments(jpeg) == []


def test_photoshop_app13_survives_protection(tiny_model: str) -> None:
    from perturb import protect

    data = containers.jpeg_insert_segments(samples.jpeg_with_exif_and_icc(), [APP13])
    out = protect(data, model=tiny_model).data
    assert APP13 in out
    Image.open(io.BytesIO(out)).load()
