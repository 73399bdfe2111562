"""Embedded previews never carry the unprotected original: EXIF IFD1, Photoshop APP13 1033/1036
and XMP xmpGImg thumbnails are regenerated from the protected pixels; other embedded images in
carried metadata (maker notes, FlashPix segments, PNG raw profiles) are removed."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from perturb import inspect_marker, protect
from perturb.containers import jpeg_insert_segments, png_chunk, png_insert_before_idat
from tests.engine import samples

RED = (220, 20, 30)  # the old thumbnails are solid red: nothing like the artwork


def jpeg_of(size: tuple[int, int], colour=RED, quality: int = 90) -> bytes:
    noise = np.random.default_rng(size[0]).integers(0, 12, (size[1], size[0], 3))
    pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
    return samples.encode(Image.fromarray(pixels), "JPEG", quality=quality)


def exif_with_thumbnail(thumb: bytes, maker_preview: bytes = b"", order: str = "<") -> bytes:
    """A TIFF/EXIF block: IFD0 (orientation 6, optional maker-note blob) → IFD1 thumbnail."""
    mark = b"II*\x00" if order == "<" else b"MM\x00*"
    entries = 2 if maker_preview else 1
    blob_at = 8 + 2 + 12 * entries + 4
    pad = b"\x00" * (len(maker_preview) % 2)
    ifd1_at = blob_at + len(maker_preview) + len(pad)
    thumb_at = ifd1_at + 2 + 12 * 2 + 4
    ifd0 = struct.pack(order + "H", entries) + struct.pack(order + "HHIHH", 0x0112, 3, 1, 6, 0)
    if maker_preview:
        ifd0 += struct.pack(order + "HHII", 0x927C, 7, len(maker_preview), blob_at)
    ifd0 += struct.pack(order + "I", ifd1_at)
    ifd1 = struct.pack(order + "H", 2)
    ifd1 += struct.pack(order + "HHII", 0x0201, 4, 1, thumb_at)
    ifd1 += struct.pack(order + "HHII", 0x0202, 4, 1, len(thumb))
    ifd1 += struct.pack(order + "I", 0)
    return (b"Exif\x00\x00" + mark + struct.pack(order + "I", 8) + ifd0 + maker_preview + pad
            + ifd1 + thumb)


def photoshop_app13(thumb_1036: bytes, thumb_1033: bytes) -> bytes:
    def resource(rid: int, data: bytes) -> bytes:
        return b"8BIM" + struct.pack(">H", rid) + b"\x00\x00" + struct.pack(">I", len(data)) \
            + data + b"\x00" * (len(data) % 2)

    def thumb_resource(jpeg: bytes) -> bytes:
        w, h = Image.open(io.BytesIO(jpeg)).size
        row = (w * 24 + 31) // 32 * 4
        return struct.pack(">IIIIIIHH", 1, w, h, row, row * h, len(jpeg), 24, 1) + jpeg

    iptc = b"\x1c\x02\x05\x00\x05Title"
    payload = (b"Photoshop 3.0\x00" + resource(0x0404, iptc)
               + resource(0x040C, thumb_resource(thumb_1036))
               + resource(0x0409, thumb_resource(thumb_1033)))
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def xmp_with_thumbnail(thumb: bytes) -> bytes:
    encoded = base64.b64encode(thumb)
    lines = b"&#xA;".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    return (
        b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        b'xmlns:xmpGImg="http://ns.adobe.com/xap/1.0/g/img/"><xmp:Thumbnails><rdf:Alt><rdf:li '
        b'rdf:parseType="Resource"><xmpGImg:width>32</xmpGImg:width><xmpGImg:height>24'
        b"</xmpGImg:height><xmpGImg:format>JPEG</xmpGImg:format><xmpGImg:image>" + lines
        + b"</xmpGImg:image></rdf:li></rdf:Alt></xmp:Thumbnails></rdf:Description></rdf:RDF>"
        b'</x:xmpmeta><?xpacket end="w"?>'
    )


def fingerprints(jpeg: bytes, size: int = 24) -> list[bytes]:
    """Windows of a JPEG's entropy-coded data: any of them in an output means it survived."""
    scan = jpeg[jpeg.index(b"\xff\xda") + 20 : -2]
    return [scan[i : i + size] for i in range(0, max(1, len(scan) - size), size)]


def assert_gone(output: bytes, *thumbs: bytes) -> None:
    for thumb in thumbs:
        for window in fingerprints(thumb):
            assert window not in output, "bytes of an original thumbnail survived"
        b64 = base64.b64encode(thumb)
        assert b64[100:160] not in output


def looks_like(thumb: bytes, protected: bytes) -> None:
    """A regenerated thumbnail shows the protected artwork, not the (red) original thumbnail."""
    small = Image.open(io.BytesIO(thumb)).convert("RGB")
    expected = Image.open(io.BytesIO(protected)).convert("RGB").resize(small.size)
    diff = np.abs(np.asarray(small, np.int16) - np.asarray(expected, np.int16)).mean()
    assert diff < 12


def embedded_jpegs(data: bytes) -> list[bytes]:
    """Every decodable JPEG stream inside `data` after the first (the image itself)."""
    found, pos = [], 3
    while (at := data.find(b"\xff\xd8\xff", pos)) >= 0:
        end = data.find(b"\xff\xd9", at)
        if end < 0:
            break
        try:
            Image.open(io.BytesIO(data[at : end + 2])).load()
            found.append(data[at : end + 2])
        except Exception:
            pass
        pos = at + 3
    return found


@pytest.fixture(scope="module")
def artwork_jpeg() -> bytes:
    return samples.encode(Image.fromarray(samples.artwork(320, 240, 11)), "JPEG", quality=90)


def test_jpeg_exif_photoshop_and_xmp_thumbnails_are_regenerated(tiny_model, artwork_jpeg) -> None:
    exif_thumb, ps_new, ps_old, xmp_thumb = (jpeg_of((160, 120)), jpeg_of((128, 96)),
                                             jpeg_of((112, 84)), jpeg_of((32, 24)))
    image = Image.open(io.BytesIO(artwork_jpeg))
    data = samples.encode(image, "JPEG", quality=90, exif=exif_with_thumbnail(exif_thumb),
                          xmp=xmp_with_thumbnail(xmp_thumb))
    data = jpeg_insert_segments(data, [photoshop_app13(ps_new, ps_old)])
    out = protect(data, model=tiny_model)
    assert_gone(out.data, exif_thumb, ps_new, ps_old, xmp_thumb)
    after = Image.open(io.BytesIO(out.data))
    assert after.getexif()[0x0112] == 6  # orientation kept
    text = out.data[out.data.index(b"<xmpGImg:image>") + 15 : out.data.index(b"</xmpGImg:image>")]
    thumbs = embedded_jpegs(out.data) + [base64.b64decode(text)]
    sizes = sorted(Image.open(io.BytesIO(t)).size for t in thumbs)
    assert sizes == sorted([(160, 120), (128, 96), (112, 84), (32, 24)])
    for thumb in thumbs:
        if Image.open(io.BytesIO(thumb)).size != (112, 84):  # 1033 is stored BGR
            looks_like(thumb, out.data)
    assert b"\x1c\x02\x05\x00\x05Title" in out.data  # the IPTC resource is kept
    notes = " ".join(out.report.notes)
    assert "EXIF thumbnail" in notes and "resource 1036" in notes and "resource 1033" in notes
    assert "xmpGImg" in notes
    assert inspect_marker(out.data) is not None


def test_other_embedded_images_are_removed(tiny_model, artwork_jpeg) -> None:
    maker = jpeg_of((40, 30), (10, 200, 10))
    fpxr = jpeg_of((48, 36), (10, 10, 200))
    exif_thumb = jpeg_of((80, 60))
    image = Image.open(io.BytesIO(artwork_jpeg))
    data = samples.encode(image, "JPEG", quality=90,
                          exif=exif_with_thumbnail(exif_thumb, maker_preview=maker))
    app2 = b"FPXR\x00\x00" + fpxr
    data = jpeg_insert_segments(data, [b"\xff\xe2" + struct.pack(">H", len(app2) + 2) + app2])
    out = protect(data, model=tiny_model)
    assert_gone(out.data, maker, fpxr, exif_thumb)
    assert [Image.open(io.BytesIO(t)).size for t in embedded_jpegs(out.data)] == [(80, 60)]
    notes = " ".join(out.report.notes)
    assert "maker notes" in notes and "APP2" in notes


@pytest.mark.parametrize("fmt", ["JPEG", "GIF"])
def test_a_comment_holding_a_preview_is_not_written_back(tiny_model, fmt: str) -> None:
    """Pillow re-writes a frame's own comment unless told otherwise: the dropped one must stay
    dropped."""
    thumb = jpeg_of((40, 30), (200, 200, 10))
    image = Image.fromarray(samples.artwork(64, 48, 0 if fmt == "JPEG" else 200))
    data = samples.encode(image if fmt == "JPEG" else image.quantize(200), fmt, comment=thumb)
    out = protect(data, model=tiny_model)
    assert_gone(out.data, thumb)
    assert "dropped a comment holding an embedded image" in out.report.notes


def test_png_exif_thumbnail_and_raw_profiles(tiny_model) -> None:
    thumb = jpeg_of((64, 48))
    exif = exif_with_thumbnail(thumb, order=">")[6:]
    raw_profile = b"\nexif\n" + str(len(exif)).encode().rjust(8) + b"\n" + exif.hex().encode()
    png = samples.encode(Image.fromarray(samples.artwork(200, 150, 4)), "PNG")
    chunks = png_chunk(b"eXIf", exif) + png_chunk(
        b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(raw_profile))
    data = png_insert_before_idat(png, chunks)
    out = protect(data, model=tiny_model)
    assert_gone(out.data, thumb)
    assert b"Raw profile type exif" not in out.data
    (regenerated,) = embedded_jpegs(out.data)
    assert Image.open(io.BytesIO(regenerated)).size == (64, 48)
    looks_like(regenerated, out.data)


def test_webp_exif_thumbnail(tiny_model) -> None:
    thumb = jpeg_of((64, 48))
    image = Image.fromarray(samples.artwork(200, 150, 5))
    data = samples.encode(image, "WEBP", quality=90, exif=exif_with_thumbnail(thumb))
    out = protect(data, model=tiny_model)
    assert_gone(out.data, thumb)
    (regenerated,) = embedded_jpegs(out.data)
    looks_like(regenerated, out.data)


def test_mpo_secondary_images_do_not_survive(tiny_model) -> None:
    first = Image.fromarray(samples.artwork(64, 48, 8))
    second = Image.fromarray(samples.artwork(64, 48, 9))
    data = samples.encode(first, "MPO", save_all=True, append_images=[second])
    second_jpeg = data[data.rindex(b"\xff\xd8\xff") :]
    out = protect(data, model=tiny_model).data
    assert_gone(out, second_jpeg)
    assert embedded_jpegs(out) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.binary(max_size=300), cut=st.integers(0, 400), big_endian=st.booleans())
def test_damaged_exif_never_lets_a_thumbnail_through(tiny_model, junk, cut, big_endian) -> None:
    thumb = jpeg_of((40, 30))
    exif = exif_with_thumbnail(thumb, order=">" if big_endian else "<")
    damaged = exif[: len(exif) - cut] if cut < len(exif) - 20 else exif
    damaged = damaged[:20] + junk[:20] + damaged[40:] if junk else damaged
    image = Image.fromarray(samples.artwork(48, 36, 6))
    data = samples.encode(image, "JPEG", quality=90, exif=damaged)
    out = protect(data, model=tiny_model).data
    for window in fingerprints(thumb):
        assert window not in out


def exif_with_raw_thumbnail(raw: bytes, size: tuple[int, int], order: str = "<",
                            strips: int = 1) -> bytes:
    """EXIF whose IFD1 holds an uncompressed RGB thumbnail (TIFF strips, as older cameras and
    TIFF-EP writers store it) in `strips` strips (their offsets then in an array)."""
    mark = b"II*\x00" if order == "<" else b"MM\x00*"
    ifd0 = struct.pack(order + "H", 1) + struct.pack(order + "HHIHH", 0x0112, 3, 1, 1, 0)
    ifd1_at = 8 + len(ifd0) + 4
    count = 8
    arrays_at = ifd1_at + 2 + 12 * count + 4
    bits_at = arrays_at
    offsets_at = bits_at + 6
    counts_at = offsets_at + 4 * strips
    data_at = counts_at + 4 * strips
    step = -(-len(raw) // strips)
    pieces = [raw[i : i + step] for i in range(0, len(raw), step)]
    offsets = [data_at + i * step for i in range(len(pieces))]

    def longs(values: list[int], at: int) -> tuple[int, int]:
        return (len(values), values[0]) if len(values) == 1 else (len(values), at)

    entries = [(0x0100, 4, 1, size[0]), (0x0101, 4, 1, size[1]), (0x0102, 3, 3, bits_at),
               (0x0103, 3, 1, 1), (0x0106, 3, 1, 2),
               (0x0111, 4, *longs(offsets, offsets_at)), (0x0115, 3, 1, 3),
               (0x0117, 4, *longs([len(p) for p in pieces], counts_at))]
    ifd1 = struct.pack(order + "H", count)
    for tag, kind, n, value in entries:
        if kind == 3 and n == 1:
            ifd1 += struct.pack(order + "HHIHH", tag, kind, n, value, 0)
        else:
            ifd1 += struct.pack(order + "HHII", tag, kind, n, value)
    ifd1 += struct.pack(order + "I", 0)
    arrays = struct.pack(order + "HHH", 8, 8, 8)
    arrays += struct.pack(order + "I" * strips, *offsets) if strips > 1 else b"\0" * 4
    arrays += struct.pack(order + "I" * strips, *[len(p) for p in pieces]) if strips > 1 \
        else b"\0" * 4
    tiff = mark + struct.pack(order + "I", 8) + ifd0 + struct.pack(order + "I", ifd1_at) + ifd1
    assert len(tiff) == arrays_at
    return b"Exif\x00\x00" + tiff + arrays + raw


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize(("order", "strips"), [("<", 1), (">", 1), ("<", 3)])
def test_an_uncompressed_exif_thumbnail_is_erased(tiny_model, fmt, order, strips) -> None:
    """Not only unlinked: its bytes are the original's pixels."""
    art = Image.fromarray(samples.artwork(160, 120, 12))
    raw = np.asarray(art.resize((40, 30)), np.uint8).tobytes()
    exif = exif_with_raw_thumbnail(raw, (40, 30), order, strips)
    data = samples.encode(art, fmt, exif=exif[6:] if fmt == "PNG" else exif)
    assert raw[1000:1048] in data
    out = protect(data, model=tiny_model)
    for at in range(0, len(raw) - 48, 48):
        assert raw[at : at + 48] not in out.data, "bytes of the original thumbnail survived"
    assert "dropped the EXIF thumbnail (uncompressed; not regenerated), its pixels erased" in (
        out.report.notes)
