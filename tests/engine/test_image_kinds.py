"""image_kinds: every image format browsers and sites accept is recognised by its magic bytes,
whatever follows it; text and arbitrary bytes are not mistaken for images; images are found
at any offset by their strict signatures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from perturb import image_kinds

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pil(fmt: str, mode: str = "RGB", **kwargs) -> bytes:
    out = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 255, (24, 32, 3), np.uint8)
    Image.fromarray(pixels).convert(mode).save(out, fmt, **kwargs)
    return out.getvalue()


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    box = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(box)).to_bytes(4, "big") + b"ftyp" + box + b"\0\0\0\x08meta"


# name -> a file of that format (real where Pillow writes it, a faithful header otherwise)
SAMPLES: dict[str, tuple[str, bytes]] = {
    "jpeg": ("JPEG", pil("JPEG")),
    "png": ("PNG", pil("PNG")),
    "apng": ("PNG", pil("PNG", save_all=True, append_images=[Image.new("RGB", (32, 24))])),
    "gif": ("GIF", pil("GIF")),
    "webp": ("WEBP", pil("WEBP")),
    "webp-lossless": ("WEBP", pil("WEBP", lossless=True)),
    "jxl-codestream": ("JPEG XL", b"\xff\x0a\xfa\x7f\x01\x90\x08"),
    "jxl-container": ("JPEG XL", b"\0\0\0\x0cJXL \r\n\x87\n" + ftyp(b"jxl ", b"jxl ")),
    "jp2": ("JPEG 2000", pil("JPEG2000", no_jp2=False)),
    "j2k": ("JPEG 2000", pil("JPEG2000", no_jp2=True)),
    "jpx": ("JPEG 2000", b"\0\0\0\x0cjP  \r\n\x87\n" + ftyp(b"jpx ", b"jpx ", b"jp2 ")),
    "jph": ("JPEG 2000", b"\0\0\0\x0cjP  \r\n\x87\n" + ftyp(b"jph ", b"jph ")),
    "avif-pillow": ("AVIF", pil("AVIF")),
    "tiff-le": ("TIFF", pil("TIFF")),
    "tiff-be": ("TIFF", b"MM\0*\0\0\0\x08\0\x01\x01\0\0\x03\0\0\0\x01\0\x20\0\0"),
    "bigtiff-le": ("TIFF", b"II+\0\x08\0\0\0\x10\0\0\0\0\0\0\0"),
    "bigtiff-be": ("TIFF", b"MM\0+\0\x08\0\0\0\0\0\0\0\0\0\x10"),
    "bmp": ("BMP", pil("BMP")),
    "ico": ("ICO", pil("ICO")),
    "cur": ("CUR", b"\0\0\2\0\1\0\x10\x10\0\0\1\0\1\0\x30\1\0\0\x16\0\0\0"),
    "psd": ("PSD", b"8BPS\0\1\0\0\0\0\0\0\0\3\0\0\0\x10\0\0\0\x10\0\x08\0\3"),
    "psb": ("PSD", b"8BPS\0\2\0\0\0\0\0\0\0\4\0\0\0\x10\0\0\0\x10\0\x08\0\3"),
    "qoi": ("QOI", pil("QOI")),
    "svg": ("SVG", b'<svg xmlns="http://www.w3.org/2000/svg" width="1"/>'),
    "svg-prologue": (
        "SVG",
        b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- made by hand -->\n'
        b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x.dtd">\n<svg>',
    ),
    "openexr": ("OpenEXR", b"\x76\x2f\x31\x01\x02\0\0\0channels\0"),
    "ppm": ("PNM", pil("PPM")),
    "pgm": ("PNM", pil("PPM", "L")),
    "pbm": ("PNM", b"P1\n# a comment\n2 2\n0 1\n1 0\n"),
    "pam": ("PNM", b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 3\nMAXVAL 255\nENDHDR\n\0\0\0"),
    "dds": ("DDS", pil("DDS")),
    "tga": ("TGA", pil("TGA")),
    "hdr": ("Radiance HDR", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n"),
    "mng": ("MNG", b"\x8aMNG\r\n\x1a\n\0\0\0\x1cMHDR"),
    "bpg": ("BPG", b"BPG\xfb\x20\0\x20\x20"),
    "jxr": ("JPEG XR", b"II\xbc\x01\x08\0\0\0"),
}
for _brand, _name in [
    (b"avif", "AVIF"), (b"avis", "AVIF"), (b"avio", "AVIF"),
    (b"heic", "HEIC"), (b"heix", "HEIC"), (b"hevc", "HEIC"), (b"heim", "HEIC"),
    (b"heis", "HEIC"), (b"hevm", "HEIC"), (b"hevs", "HEIC"),
    (b"mif1", "HEIF"), (b"msf1", "HEIF"), (b"miaf", "HEIF"),
]:  # fmt: skip
    SAMPLES[f"ftyp-major-{_brand.decode()}"] = (_name, ftyp(_brand, _brand))
    SAMPLES[f"ftyp-compatible-{_brand.decode()}"] = (_name, ftyp(b"isom", b"mp41", _brand))


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_every_format_is_recognised(sample: str) -> None:
    name, data = SAMPLES[sample]
    assert image_kinds.sniff_image(data) == name
    protectable = name in image_kinds.PROTECTABLE
    assert (image_kinds.sniff_format(data) == name) is protectable
    assert (image_kinds.sniff_other(data) == name) is not protectable


def test_videos_and_other_files_are_not_images() -> None:
    for data in (
        ftyp(b"isom", b"isom", b"mp41"),
        ftyp(b"qt  ", b"qt  "),
        ftyp(b"M4A ", b"M4A "),
        b"%PDF-1.7\n",
        b"PK\3\4\x14\0",
        b"\x1a\x45\xdf\xa3",
        b"<html><body>hi</body></html>",
        b'<?xml version="1.0"?><feed/>',
        b"BMX rider",
        b"P6 is a parking level",
    ):
        assert image_kinds.sniff_image(data) is None, data


@FAST
@given(st.sampled_from(sorted(SAMPLES)), st.binary(max_size=256))
def test_what_follows_the_header_does_not_matter(sample: str, tail: bytes) -> None:
    name, data = SAMPLES[sample]
    if name == "TGA":  # TGA 2.0 is recognised by its footer
        return
    assert image_kinds.sniff_image(data + tail) == name


# What people type: any printable character, spaces and line breaks (no control characters).
TYPED = st.text(st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from("\n\t\r "))


@FAST
@given(TYPED)
def test_text_is_never_a_strict_image(text: str) -> None:
    """What a user types into a form field is never taken for an image."""
    data = text.encode()
    assert image_kinds.sniff_image(data, strict=True) is None
    assert not list(image_kinds.image_offsets(data))


@FAST
@given(st.binary(max_size=512))
def test_sniffers_never_crash(data: bytes) -> None:
    name = image_kinds.sniff_image(data)
    assert name is None or isinstance(name, str)
    strict = image_kinds.sniff_image(data, strict=True)
    assert strict is None or strict == name  # strict only ever narrows
    for offset, found in image_kinds.image_offsets(data):
        assert 0 <= offset < len(data) and found
    assert image_kinds.pixel_count(data) >= 0


STRICT = ["jpeg", "png", "gif", "webp", "jxl-container", "jp2", "j2k", "avif-pillow", "tiff-le",
          "bmp", "ico", "psd", "qoi", "openexr", "dds", "mng", "bpg"]  # fmt: skip


@FAST
@given(st.sampled_from(STRICT), st.binary(max_size=300), st.binary(max_size=300))
def test_images_are_found_at_any_offset(sample: str, before: bytes, after: bytes) -> None:
    name, data = SAMPLES[sample]
    found = dict(image_kinds.image_offsets(before + data + after))
    assert found.get(len(before)) == name


def test_pixel_count_reads_the_header_only() -> None:
    assert image_kinds.pixel_count(SAMPLES["jpeg"][1]) == 32 * 24
    assert image_kinds.pixel_count(SAMPLES["apng"][1]) == 2 * 32 * 24
    assert image_kinds.pixel_count(b"\xff\xd8\xff broken") == 0
