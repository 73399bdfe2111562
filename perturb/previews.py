"""Embedded previews: a small copy of the artwork inside its own metadata (the EXIF IFD1
thumbnail, Photoshop's APP13 thumbnail resources 1033/1036, XMP `xmpGImg` thumbnails) would hand
a scraper the unprotected original. They are regenerated from the protected pixels at their
original size. Any other embedded image found in metadata we carry (maker-note previews,
FlashPix or extended-XMP segments, raw profiles in PNG text) is removed. Each change is a note
in the report.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import re
import struct
import zlib

from PIL import Image

from perturb import containers
from perturb.metadata import Metadata

_JPEG_SOI = b"\xff\xd8\xff"
_BASE64_IMAGE = re.compile(rb"(?:/9j/|iVBORw0KGgo)(?:[A-Za-z0-9+/=]|\s|&#x?[0-9A-Fa-f]+;)+")
_PHOTOSHOP = b"Photoshop 3.0\x00"
_THUMBNAIL_RESOURCES = (0x0409, 0x040C)  # Photoshop 4 (BGR) and 5+ thumbnails
_APP_LIMIT = 65533  # payload bytes of one JPEG marker segment
_MAX_PREVIEW_SIDE = 1024


def refresh(meta: Metadata, protected: Image.Image) -> None:
    """Regenerate or remove every embedded preview in `meta` (in place), from `protected`."""
    thumbnails = _Thumbnails(protected)
    if meta.exif:
        meta.exif = _refresh_exif(meta.exif, thumbnails, meta.notes)
    if meta.xmp:
        meta.xmp = _refresh_xmp(meta.xmp, thumbnails, meta.notes)
    kept = []
    for segment in meta.jpeg_segments:
        payload = segment[4:]
        if segment[1] == 0xED and payload.startswith(_PHOTOSHOP):
            refreshed = _refresh_photoshop(payload, thumbnails, meta.notes)
            if refreshed is not None:
                kept.append(segment[:2] + struct.pack(">H", len(refreshed) + 2) + refreshed)
            continue
        if _holds_image(payload):
            meta.notes.append(f"dropped an APP{segment[1] - 0xE0} segment holding an embedded "
                              f"image (a preview of the unprotected original)")
            continue
        kept.append(segment)
    meta.jpeg_segments = kept
    if meta.comment and _holds_image(meta.comment):
        meta.comment = None
        meta.notes.append("dropped a comment holding an embedded image")
    chunks = []
    for ctype, payload in meta.png_chunks:
        if ctype in containers.PNG_TEXT and _holds_image(_png_text(ctype, payload)):
            meta.notes.append(f"dropped a PNG {ctype.decode()} chunk holding an embedded image "
                              f"(e.g. a raw EXIF/Photoshop profile with a thumbnail)")
            continue
        chunks.append((ctype, payload))
    meta.png_chunks = chunks


class _Thumbnails:
    """JPEG thumbnails of the protected image at requested sizes (resized once per size)."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image

    def jpeg(self, size: tuple[int, int], quality: int = 80, bgr: bool = False) -> bytes:
        source = self.image
        if source.mode not in ("RGB", "L"):
            source = source.convert("RGBA" if "A" in source.mode else "RGB")
        small = source.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
        if small.mode == "RGBA":
            backdrop = Image.new("RGB", small.size, (255, 255, 255))
            backdrop.paste(small, mask=small.getchannel("A"))
            small = backdrop
        small = small.convert("RGB")
        if bgr:
            red, green, blue = small.split()
            small = Image.merge("RGB", (blue, green, red))
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()

    def like(self, original: bytes, limit: int | None = None, bgr: bool = False) -> bytes | None:
        """A thumbnail of the size of the embedded image `original` (None if it cannot be read
        or none fits in `limit` bytes)."""
        try:
            with Image.open(io.BytesIO(original)) as old:
                size = old.size
        except Exception:
            return None
        if not (0 < size[0] <= _MAX_PREVIEW_SIDE and 0 < size[1] <= _MAX_PREVIEW_SIDE):
            return None
        for quality in (80, 60, 40, 20):
            data = self.jpeg(size, quality, bgr)
            if limit is None or len(data) <= limit:
                return data
        return None


# Chunks the engine writes (PNG: critical, carried, APNG; WebP: every chunk of the container).
_PNG_WRITTEN = frozenset(
    {b"tRNS", b"iCCP", b"eXIf", b"acTL", b"fcTL", b"fdAT"}
    | set(containers.PNG_CRITICAL + containers.PNG_COPY_BEFORE_PLTE)
    | set(containers.PNG_TEXT + containers.PNG_COPY_ADAPTED)
)
_WEBP_WRITTEN = frozenset(
    {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP", b"EXIF", b"XMP "}
)
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{64,}")


def extra_content(data: bytes) -> str | None:
    """What an encoded JPEG, PNG, WebP or GIF holds besides its own image and metadata without
    images, or None: an embedded image anywhere in its metadata (raw, in base64, in compressed
    PNG text), a PNG or WebP chunk the engine never writes, bytes after the image's end, or a
    structure that cannot be followed to its end.

    The Sfumato marker vouches for a file's pixels only. A marked file holding any of these may
    carry the unprotected original next to the protected pixels (a thumbnail or a copy added
    after protection), so it does not count as protected as it is. The previews the engine
    itself regenerated count too: nothing in the file tells them from the original's.
    """
    from perturb import image_kinds

    fmt = image_kinds.sniff_format(data)
    if fmt is None:
        return "not an image the engine writes"
    end = image_kinds.image_end(data)
    if end is None:
        return f"a {fmt} structure that breaks off before its end"
    if end < len(data):
        return f"{len(data) - end} bytes after the end of the {fmt} image"
    if fmt == "PNG":
        unknown = sorted(set(image_kinds.png_chunk_types(data)) - _PNG_WRITTEN)
        if unknown:
            return f"a PNG {unknown[0].decode('latin-1')!r} chunk"
        for ctype, payload in containers.png_chunks(data):
            if ctype in containers.PNG_TEXT and _holds_image(_png_text(ctype, payload)):
                return f"an image in a PNG {ctype.decode()} chunk"
    if fmt == "WEBP":
        unknown = sorted(set(image_kinds.webp_chunk_types(data)) - _WEBP_WRITTEN)
        if unknown:
            return f"a WebP {unknown[0].decode('latin-1')!r} chunk"
    for start, stop in image_kinds.metadata_regions(data):
        region = bytes(data[start:stop])
        own = _exif_tiff_offset(region)  # EXIF is itself a TIFF structure: not an image
        for offset, name in image_kinds.image_offsets(data, start, stop):
            if own is None or offset != start + own:
                return f"an embedded {name} image"
        if own is not None and _exif_points_at_image(region[own:]):
            return "image data in its EXIF (a thumbnail, strips or tiles)"
        if _BASE64_IMAGE.search(region):
            return "a base64 image in its metadata"
        for run in _BASE64_RUN.finditer(region):
            text = run.group(0)
            altchars = b"-_" if b"-" in text or b"_" in text else None
            for skip in range(4):  # the run may start with a few characters glued to it
                with contextlib.suppress(binascii.Error, ValueError):
                    head = base64.b64decode(text[skip : skip + 60], altchars=altchars)
                    if image_kinds.sniff_image(head, strict=True):
                        return "a base64 image in its metadata"
    return None


def _holds_image(data: bytes) -> bool:
    return _JPEG_SOI in data or containers.PNG_SIGNATURE in data or bool(_BASE64_IMAGE.search(data))


def _png_text(ctype: bytes, payload: bytes) -> bytes:
    """The text of a PNG text chunk (decompressed, bounded); raw profiles are hex, decoded."""
    keyword, _, rest = payload.partition(b"\x00")
    try:
        if ctype == b"zTXt":
            rest = zlib.decompressobj().decompress(rest[1:], 16 * 1024 * 1024)
        elif ctype == b"iTXt" and rest[:1] == b"\x01":
            parts = rest[2:].split(b"\x00", 2)
            rest = zlib.decompressobj().decompress(parts[-1], 16 * 1024 * 1024)
    except (zlib.error, IndexError):
        return payload
    if keyword.lower().startswith(b"raw profile type"):
        digits = b"".join(rest.split(b"\n")[3:]).replace(b" ", b"")
        try:
            return rest + binascii.unhexlify(digits[: len(digits) // 2 * 2])
        except binascii.Error:
            return rest
    return rest


def _exif_tiff_offset(region: bytes) -> int | None:
    """Where an EXIF region's own TIFF header starts (after a JPEG APP1's "Exif" prefix, or at
    once in a PNG eXIf / WebP EXIF chunk), or None if the region is not EXIF."""
    at = 6 if region.startswith(b"Exif\x00\x00") else 0
    return at if region[at : at + 4] in (b"II*\x00", b"MM\x00*") else None


def _exif_points_at_image(tiff: bytes) -> bool:
    """Whether an EXIF TIFF structure links image data: an IFD1 (the thumbnail's directory, JPEG
    or uncompressed strips alike) or strips, tiles or a JPEG stream in IFD0."""
    order = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd0,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd0)
        tags = {struct.unpack_from(order + "H", tiff, ifd0 + 2 + 12 * i)[0] for i in range(count)}
        (ifd1,) = struct.unpack_from(order + "I", tiff, ifd0 + 2 + 12 * count)
    except struct.error:
        return True  # a directory that cannot be followed may hide anything
    return ifd1 != 0 or bool(tags & _IMAGE_DATA_TAGS)


# TIFF tags that point at image data (strips, tiles, a JPEG stream): EXIF's IFD0 has none
_IMAGE_DATA_TAGS = {0x0111, 0x0144, 0x0201}


# --- EXIF -----------------------------------------------------------------------------------------


def _refresh_exif(exif: bytes, thumbnails: _Thumbnails, notes: list[str]) -> bytes:
    """EXIF with its IFD1 JPEG thumbnail regenerated (or dropped), other embedded JPEGs (maker
    note previews) blanked. Keeps every offset valid: the new thumbnail is appended."""
    own = _exif_tiff_offset(exif)
    if own is None or len(exif) - own < 8:
        return exif
    prefix, tiff = bytes(exif[:own]), bytearray(exif[own:])
    order = "<" if tiff[:2] == b"II" else ">"
    new_region = (0, 0)
    # A malformed IFD1: whatever image it points to is blanked below.
    with contextlib.suppress(struct.error, IndexError, ValueError):
        new_region = _refresh_ifd1(tiff, order, thumbnails, notes, len(prefix))
    blanked = _blank_embedded_jpegs(tiff, skip=new_region)
    if blanked:
        notes.append(f"blanked {blanked} embedded preview(s) in the EXIF data (maker notes)")
    return prefix + bytes(tiff)


def _refresh_ifd1(
    tiff: bytearray, order: str, thumbnails: _Thumbnails, notes: list[str], prefix: int
) -> tuple[int, int]:
    (ifd0,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, ifd0)
    next_at = ifd0 + 2 + 12 * count
    (ifd1,) = struct.unpack_from(order + "I", tiff, next_at)
    if ifd1 == 0 or ifd1 + 2 > len(tiff):
        return 0, 0
    (count1,) = struct.unpack_from(order + "H", tiff, ifd1)
    fields: dict[int, int] = {}
    entries: dict[int, int] = {}
    for i in range(count1):
        entry = ifd1 + 2 + 12 * i
        tag, _type, n = struct.unpack_from(order + "HHI", tiff, entry)
        entries[tag] = entry
        if tag in (0x0201, 0x0202) and n == 1:
            fields[tag] = entry + 8
    # An uncompressed thumbnail (strips or tiles of raw pixels) is erased, not only unlinked:
    # its bytes are the original's pixels.
    erased = _erase_strips(tiff, order, entries)
    if 0x0201 not in fields or 0x0202 not in fields:
        struct.pack_into(order + "I", tiff, next_at, 0)
        notes.append(
            "dropped the EXIF thumbnail (uncompressed; not regenerated)"
            + (", its pixels erased" if erased else "")
        )
        return 0, 0
    (offset,) = struct.unpack_from(order + "I", tiff, fields[0x0201])
    (length,) = struct.unpack_from(order + "I", tiff, fields[0x0202])
    old = bytes(tiff[offset : offset + length])
    tiff[offset : offset + length] = bytes(len(old))  # the original thumbnail is gone
    if offset + length >= len(tiff):
        del tiff[offset:]
    room = _APP_LIMIT - 2 - prefix - len(tiff) - 1
    new = thumbnails.like(old, limit=room)
    if new is None:
        struct.pack_into(order + "I", tiff, next_at, 0)
        notes.append("dropped the EXIF thumbnail (it could not be regenerated within the "
                     "EXIF segment's size)")
        return 0, 0
    if len(tiff) % 2:
        tiff.append(0)
    start = len(tiff)
    tiff += new
    struct.pack_into(order + "I", tiff, fields[0x0201], start)
    struct.pack_into(order + "I", tiff, fields[0x0202], len(new))
    notes.append("regenerated the EXIF thumbnail from the protected pixels")
    return start, start + len(new)


def _ifd_values(tiff: bytearray, order: str, entry: int) -> list[int]:
    """The SHORT or LONG values of one IFD entry (inline or pointed to); [] if unreadable."""
    _tag, kind, n = struct.unpack_from(order + "HHI", tiff, entry)
    size = {3: 2, 4: 4}.get(kind)
    if size is None or not 0 < n <= 1 << 16:
        return []
    at = entry + 8 if size * n <= 4 else struct.unpack_from(order + "I", tiff, entry + 8)[0]
    if at + size * n > len(tiff):
        return []
    return list(struct.unpack_from(order + ("H" if size == 2 else "I") * n, tiff, at))


def _erase_strips(tiff: bytearray, order: str, entries: dict[int, int]) -> int:
    """Zero the image data an IFD's strips or tiles point to; how many bytes were zeroed."""
    erased = 0
    for offsets_tag, counts_tag in ((0x0111, 0x0117), (0x0144, 0x0145)):
        if offsets_tag not in entries or counts_tag not in entries:
            continue
        offsets = _ifd_values(tiff, order, entries[offsets_tag])
        counts = _ifd_values(tiff, order, entries[counts_tag])
        for offset, count in zip(offsets, counts, strict=False):
            end = min(len(tiff), offset + count)
            if 8 <= offset < end:
                tiff[offset:end] = bytes(end - offset)
                erased += end - offset
    return erased


def _blank_embedded_jpegs(data: bytearray, skip: tuple[int, int]) -> int:
    """Zero every JPEG stream (SOI up to its EOI, or to the end) outside `skip`."""
    blanked = 0
    pos = 0
    while True:
        at = data.find(_JPEG_SOI, pos)
        if at < 0:
            return blanked
        if skip[0] <= at < skip[1]:
            pos = skip[1]
            continue
        end = data.find(b"\xff\xd9", at + 3)
        end = len(data) if end < 0 else end + 2
        if skip[0] > at:
            end = min(end, skip[0])
        data[at:end] = bytes(end - at)
        blanked += 1
        pos = end


# --- Photoshop APP13 --------------------------------------------------------------------------


def _refresh_photoshop(payload: bytes, thumbnails: _Thumbnails, notes: list[str]) -> bytes | None:
    """An APP13 payload with thumbnail resources regenerated; None drops the segment (when it
    cannot be parsed but holds an image)."""
    resources = _photoshop_resources(payload)
    if resources is None:
        if _holds_image(payload):
            notes.append("dropped a Photoshop APP13 segment holding an embedded image")
            return None
        return payload
    if not any(rid in _THUMBNAIL_RESOURCES for rid, _, _ in resources):
        return payload
    out = [_PHOTOSHOP]
    for rid, name, data in resources:
        if rid in _THUMBNAIL_RESOURCES:
            data = _photoshop_thumbnail(data, thumbnails, bgr=rid == 0x0409)
            if data is None:
                notes.append(f"dropped the Photoshop thumbnail (resource {rid})")
                continue
            notes.append(f"regenerated the Photoshop thumbnail (resource {rid}) from the "
                         f"protected pixels")
        out.append(b"8BIM" + struct.pack(">H", rid) + name + struct.pack(">I", len(data)) + data
                   + (b"\x00" if len(data) % 2 else b""))
    result = b"".join(out)
    if len(result) > _APP_LIMIT:
        notes.append("dropped a Photoshop APP13 segment (too large once regenerated)")
        return None
    return result


def _photoshop_resources(payload: bytes) -> list[tuple[int, bytes, bytes]] | None:
    """(id, padded Pascal name, data) of each image resource, or None if malformed."""
    pos = len(_PHOTOSHOP)
    found = []
    while pos < len(payload):
        if payload[pos : pos + 4] != b"8BIM" or pos + 7 > len(payload):
            return None
        (rid,) = struct.unpack_from(">H", payload, pos + 4)
        name_length = payload[pos + 6]
        name_size = name_length + 1 + ((name_length + 1) % 2)
        name = payload[pos + 6 : pos + 6 + name_size]
        size_at = pos + 6 + name_size
        if size_at + 4 > len(payload):
            return None
        (size,) = struct.unpack_from(">I", payload, size_at)
        data = payload[size_at + 4 : size_at + 4 + size]
        if len(data) != size:
            return None
        found.append((rid, name, data))
        pos = size_at + 4 + size + (size % 2)
    return found


def _photoshop_thumbnail(data: bytes, thumbnails: _Thumbnails, bgr: bool) -> bytes | None:
    """A thumbnail resource (28-byte header + JFIF) regenerated at its original size."""
    if len(data) < 28:
        return None
    fmt, width, height = struct.unpack_from(">III", data, 0)
    bits, planes = struct.unpack_from(">HH", data, 24)
    if fmt != 1:
        return None
    new = thumbnails.like(data[28:], limit=_APP_LIMIT - 64, bgr=bgr)
    if new is None:
        return None
    with Image.open(io.BytesIO(new)) as check:
        width, height = check.size
    row = (width * 24 + 31) // 32 * 4
    header = struct.pack(">IIIIIIHH", 1, width, height, row, row * height, len(new), bits, planes)
    return header + new


# --- XMP --------------------------------------------------------------------------------------


def _refresh_xmp(xmp: bytes, thumbnails: _Thumbnails, notes: list[str]) -> bytes:
    """XMP with every base64 JPEG/PNG (xmpGImg:image, whatever its prefix) regenerated as a
    base64 JPEG of the same size from the protected pixels, or emptied."""
    regenerated = dropped = 0

    def replace(match: re.Match[bytes]) -> bytes:
        nonlocal regenerated, dropped
        text = re.sub(rb"\s|&#x?[0-9A-Fa-f]+;", b"", match.group(0))
        try:
            old = base64.b64decode(text + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            old = b""
        new = thumbnails.like(old) if old else None
        if new is None:
            dropped += 1
            return b""
        regenerated += 1
        return base64.b64encode(new)

    out = _BASE64_IMAGE.sub(replace, xmp)
    if regenerated:
        notes.append("regenerated the XMP thumbnail (xmpGImg) from the protected pixels")
    if dropped:
        notes.append("dropped an XMP thumbnail that could not be read")
    return out
