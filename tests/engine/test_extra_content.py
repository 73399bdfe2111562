"""`previews.extra_content`: what a marked file holds besides the pixels its marker vouches for.
A file the engine writes holds nothing else; the same file with an image added after protection
(a thumbnail in its metadata, a copy after its end, a chunk the engine never writes) does, in
every way such a copy can be stored -- so the proxy does not pass it as already protected."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from perturb import inspect_marker, protect
from perturb.containers import jpeg_insert_segments, png_chunk, png_insert_before_idat
from perturb.image_kinds import image_end, metadata_regions
from perturb.previews import extra_content
from tests.engine import samples
from tests.engine.test_previews import (
    exif_with_raw_thumbnail,
    exif_with_thumbnail,
    photoshop_app13,
    xmp_with_thumbnail,
)

ART = Image.fromarray(samples.artwork(160, 120, 31))
OTHER = Image.fromarray(samples.artwork(160, 120, 32))
SMALL = samples.encode(ART.resize((40, 30)), "JPEG", quality=90)  # an original's thumbnail
RAW = ART.resize((40, 30)).tobytes()  # the same, uncompressed


def _encoded(name: str) -> bytes:
    if name == "apng":
        out = io.BytesIO()
        ART.save(out, "PNG", save_all=True, append_images=[OTHER], duration=100)
        return out.getvalue()
    if name == "animated-webp":
        out = io.BytesIO()
        ART.save(out, "WEBP", save_all=True, append_images=[OTHER], duration=100)
        return out.getvalue()
    if name == "exif-jpeg":  # EXIF (itself a TIFF structure) and ICC, no thumbnail
        return samples.jpeg_with_exif_and_icc()
    if name == "exif-png":
        exif = Image.Exif()
        exif[0x010F] = "SfumatoCam"
        return samples.encode(ART, "PNG", exif=exif.tobytes())
    if name == "progressive-jpeg":
        return samples.encode(ART, "JPEG", quality=90, progressive=True)
    fmt, *options = name.split("-")
    kwargs = {"quality": 90} if fmt == "JPEG" else {"lossless": True} if options else {}
    return samples.encode(ART if fmt != "GIF" else ART.quantize(256), fmt, **kwargs)


KINDS = ["JPEG", "progressive-jpeg", "exif-jpeg", "PNG", "exif-png", "apng", "WEBP",
         "WEBP-lossless", "animated-webp", "GIF"]


@pytest.fixture(scope="module")
def protected(tiny_model: str) -> dict[str, bytes]:
    return {kind: protect(_encoded(kind), model=tiny_model, seed=3).data for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_what_the_engine_writes_holds_nothing_else(kind: str, protected) -> None:
    data = protected[kind]
    assert inspect_marker(data) is not None
    assert image_end(data) == len(data)
    assert extra_content(data) is None


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _riff_add(webp: bytes, fourcc: bytes, payload: bytes) -> bytes:
    padding = b"\0" * (len(payload) & 1)
    body = webp[12:] + fourcc + struct.pack("<I", len(payload)) + payload + padding
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def _gif_comment(gif: bytes, payload: bytes) -> bytes:
    blocks = b"".join(bytes([len(payload[i : i + 255])]) + payload[i : i + 255]
                      for i in range(0, len(payload), 255))
    return gif[:-1] + b"\x21\xfe" + blocks + b"\x00\x3b"


def exif_with_strips(pixels: bytes) -> bytes:
    """EXIF whose first directory (IFD0) points at uncompressed image strips after it."""
    # width, height, and where the strip starts: right after this one directory
    entries = [(0x0100, 3, 1, 40), (0x0101, 3, 1, 30), (0x0111, 4, 1, 8 + 2 + 12 * 3 + 4)]
    ifd = struct.pack(">H", len(entries)) + b"".join(
        struct.pack(">HHII", tag, typ, n, v << 16 if typ == 3 else v) for tag, typ, n, v in entries)
    return b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + ifd + b"\x00" * 4 + pixels


ADDED = {
    "JPEG": {
        "image strips in EXIF's IFD0": lambda d: jpeg_insert_segments(
            d, [_segment(0xE1, exif_with_strips(RAW))]),
        "a copy after EOI": lambda d: d + SMALL,
        "junk after EOI": lambda d: d + b"\0" * 16,
        "an EXIF thumbnail": lambda d: jpeg_insert_segments(
            d, [_segment(0xE1, exif_with_thumbnail(SMALL))]),
        "an uncompressed EXIF thumbnail": lambda d: jpeg_insert_segments(
            d, [_segment(0xE1, exif_with_raw_thumbnail(RAW, (40, 30)))]),
        "a Photoshop thumbnail": lambda d: jpeg_insert_segments(d, [photoshop_app13(SMALL, SMALL)]),
        "an XMP thumbnail": lambda d: jpeg_insert_segments(d, [_segment(
            0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp_with_thumbnail(SMALL))]),
        "a comment between the scan and EOI": lambda d: d[:-2] + _segment(0xFE, SMALL) + d[-2:],
        "a URL-safe base64 copy in an APP segment": lambda d: jpeg_insert_segments(
            d, [_segment(0xE9, b"x" + base64.urlsafe_b64encode(SMALL))]),
    },
    "PNG": {
        "a copy after IEND": lambda d: d + SMALL,
        "a private chunk": lambda d: png_insert_before_idat(d, png_chunk(b"prVw", SMALL)),
        "an uncompressed EXIF thumbnail": lambda d: png_insert_before_idat(
            d, png_chunk(b"eXIf", exif_with_raw_thumbnail(RAW, (40, 30), ">")[6:])),
        "a compressed private chunk": lambda d: png_insert_before_idat(
            d, png_chunk(b"zPRV", zlib.compress(SMALL))),
        "base64 in tEXt": lambda d: png_insert_before_idat(
            d, png_chunk(b"tEXt", b"Thumb\0" + base64.b64encode(SMALL))),
        "a hex raw profile in zTXt": lambda d: png_insert_before_idat(d, png_chunk(
            b"zTXt", b"Raw profile type exif\0\0" + zlib.compress(
                b"\nexif\n%8d\n" % len(SMALL) + SMALL.hex().encode()))),
    },
    "WEBP": {
        "a copy after the RIFF": lambda d: d + SMALL,
        "an unknown chunk": lambda d: _riff_add(d, b"THMB", SMALL),
        "a JPEG in the XMP chunk": lambda d: _riff_add(d, b"XMP ", b"<x>" + SMALL + b"</x>"),
    },
    "GIF": {
        "a copy after the trailer": lambda d: d + SMALL,
        "a JPEG in a comment": lambda d: _gif_comment(d, SMALL),
    },
}


@pytest.mark.parametrize(
    ("kind", "what"), [(kind, what) for kind, adders in ADDED.items() for what in adders]
)
def test_an_image_added_after_protection_is_extra_content(kind: str, what: str,
                                                          protected) -> None:
    tampered = ADDED[kind][what](protected[kind])
    assert inspect_marker(tampered) is not None, "the pixels (and so the marker) are unchanged"
    assert extra_content(tampered) is not None


def test_regions_and_end_follow_every_jpeg_segment(protected) -> None:
    data = protected["progressive-jpeg"]
    assert data.count(b"\xff\xda") > 1  # several scans, tables between them
    between = data[:-2] + _segment(0xFE, b"between") + data[-2:]
    assert image_end(between) == len(between)
    assert any(between[a:b] == b"between" for a, b in metadata_regions(between))


def test_a_structure_that_breaks_off_is_extra_content(protected) -> None:
    for kind in ("JPEG", "PNG", "WEBP", "GIF"):
        cut = protected[kind][:-5]
        assert image_end(cut) is None
        assert extra_content(cut) is not None
