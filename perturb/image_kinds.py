"""Image kinds by magic bytes: which image format some bytes are, whether the engine can protect
it, and where images start inside larger bytes.

Browsers and sites accept many more formats than the engine protects (JPEG XL, JPEG 2000,
AVIF/HEIC, TIFF, ...). Every one of them is recognised here, so that the proxy refuses what it
cannot protect instead of passing it on as "not an image".

Each signature says how far it can be trusted:
- `start`: the check at the start of a file (lenient: a damaged JPEG is still a JPEG, and the
  engine says what is wrong with it);
- `strict`: a stricter structural check, used where a false alarm costs an upload -- inside form
  text fields and when looking for images at any offset of a body (`image_offsets`). Signatures
  whose magic is ordinary text (SVG, PNM, ...) or too short to mean anything inside other bytes
  have no strict check: they count only for whole files.
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PIL import Image

PROTECTABLE = ("JPEG", "PNG", "WEBP", "GIF")
_HEAD = 8192  # bytes any check reads (ISO BMFF brand lists, SVG prologues)

_JPEG_MARKERS = frozenset(range(0xC0, 0xD0)) | {0xDB, 0xDD, 0xFE} | frozenset(range(0xE0, 0xF0))
# ISO BMFF brands of still images and image sequences (HEIF family: AVIF, HEIC, ...).
_AVIF_BRANDS = frozenset({b"avif", b"avis", b"avio"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_HEIF_BRANDS = (
    _AVIF_BRANDS
    | _HEIC_BRANDS
    | frozenset(
        {b"mif1", b"mif2", b"msf1", b"miaf", b"jpeg", b"jpgs", b"avci", b"avcs", b"vvic", b"vvis"}
        | {b"j2ki", b"j2is"}
    )
)
_JP2_BRANDS = frozenset({b"jp2 ", b"jpx ", b"jph ", b"jpm "})
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_SVG_PROLOGUE = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]{0,512}\?>\s*)?"
    rb"(?:(?:<!--.{0,4096}?-->|<!DOCTYPE[^>]{0,1024}>)\s*){0,16}<svg[\s>/:]",
    re.S | re.I,
)
_PNM = re.compile(rb"^P[1-7][ \t\r\n]+(?:#[^\n]{0,256}\n\s*)*(?:\d|WIDTH)")


def _u16be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def _u32be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


def _u32le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


def _jpeg_strict(data: bytes) -> bool:
    """SOI, a marker that may follow it, and a first segment that ends at the next marker."""
    if len(data) < 6 or data[3] not in _JPEG_MARKERS:
        return False
    length = _u16be(data, 4)
    end = 4 + length
    return length >= 2 and (end >= len(data) or data[end] == 0xFF)


def _gif_strict(data: bytes) -> bool:
    """The logical screen, then (after the global colour table) a block introducer."""
    if len(data) < 14 or data[6:10] == b"\0\0\0\0":
        return False
    flags = data[10]
    table = 3 * (2 << (flags & 7)) if flags & 0x80 else 0
    at = 13 + table
    return at >= len(data) or data[at] in (0x21, 0x2C, 0x3B)


def _webp_start(data: bytes) -> bool:
    return data[8:12] == b"WEBP"


def _webp_strict(data: bytes) -> bool:
    return data[8:12] == b"WEBP" and data[12:16] in (b"VP8 ", b"VP8L", b"VP8X")


def _ftyp_brands(data: bytes) -> set[bytes]:
    """Major and compatible brands of an ISO BMFF `ftyp` box at the start, or nothing."""
    if data[4:8] != b"ftyp":
        return set()
    size = _u32be(data, 0)
    if not 16 <= size <= 4096:
        return set()
    box = data[8:size]
    return {box[0:4]} | {box[i : i + 4] for i in range(8, len(box) - 3, 4)}


def _heif_name(data: bytes) -> str | None:
    brands = _ftyp_brands(data)
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIC_BRANDS:
        return "HEIC"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    if b"crx " in brands:
        return "Camera RAW"
    return None


def _is_heif(data: bytes) -> bool:
    return _heif_name(data) is not None


def _jp2(data: bytes) -> bool:
    return data[16:20] == b"ftyp" and data[20:24] in _JP2_BRANDS


def _j2k(data: bytes) -> bool:
    # SIZ segment length is 38 + 3 * components.
    return len(data) >= 40 and (_u16be(data, 4) - 38) % 3 == 0 and _u16be(data, 4) > 38


def _tiff_classic(little: bool, strict: bool) -> Callable[[bytes], bool]:
    def check(data: bytes) -> bool:
        offset = int.from_bytes(data[4:8], "little" if little else "big")
        # Strict: the first directory lies within 64 MiB. Text after "II*\0" would put it
        # beyond 512 MiB (its most significant byte is a printable character).
        return len(data) >= 8 and offset >= 8 and (not strict or offset < 1 << 26)

    return check


def _bigtiff(data: bytes) -> bool:
    little = data[:2] == b"II"
    return len(data) >= 16 and data[4:6] == (b"\x08\x00" if little else b"\x00\x08")


def _bmp(data: bytes) -> bool:
    # "BM", file size, two reserved zero words, pixel offset, a known DIB header size: a text
    # starting with "BM" ("BMX art") is not a bitmap.
    return (
        len(data) >= 18
        and data[6:10] == b"\0\0\0\0"
        and _u32le(data, 14) in _BMP_HEADER_SIZES
        and 14 + _u32le(data, 14) <= _u32le(data, 10) < 1 << 30
    )


def _ico(data: bytes) -> bool:
    count = int.from_bytes(data[4:6], "little")
    if len(data) < 22 or not 1 <= count <= 512:
        return False
    reserved, planes, bits = data[9], int.from_bytes(data[10:12], "little"), data[12]
    size, offset = _u32le(data, 14), _u32le(data, 18)
    return (
        reserved == 0
        and (planes in (0, 1) or data[2] == 2)  # cursors keep the hotspot there
        and (bits in (0, 1, 4, 8, 16, 24, 32) or data[2] == 2)
        and size > 0
        and offset >= 6 + 16 * count
    )


def _psd(data: bytes) -> bool:
    version, reserved, channels = data[4:6], data[6:12], _u16be(data, 12)
    return version in (b"\0\1", b"\0\2") and reserved == b"\0" * 6 and 1 <= channels <= 56


def _qoi(data: bytes) -> bool:
    return (
        len(data) >= 14
        and _u32be(data, 4) > 0
        and _u32be(data, 8) > 0
        and (data[12] in (3, 4) and data[13] in (0, 1))
    )


def _exr(data: bytes) -> bool:
    return len(data) >= 8 and data[4] == 2


def _dds(data: bytes) -> bool:
    return data[4:8] == b"\x7c\0\0\0"


def _svg(data: bytes) -> bool:
    return _SVG_PROLOGUE.match(bytes(data[:_HEAD])) is not None


def _svgz(data: bytes) -> bool:
    try:
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(bytes(data[:_HEAD]), _HEAD)
    except zlib.error:
        return False
    return _svg(head)


def _pnm(data: bytes) -> bool:
    return _PNM.match(bytes(data[:512])) is not None


def _tga(data: bytes) -> bool:
    # Only TGA 2.0 files are recognisable: they end with this footer.
    return (
        len(data) >= 44
        and data[-18:] == b"TRUEVISION-XFILE.\0"
        and data[1] in (0, 1)
        and data[2] in (1, 2, 3, 9, 10, 11, 32, 33)
    )


def _pcx(data: bytes) -> bool:
    version, encoding, bits = data[1:2], data[2:3], data[3:4]
    return (
        len(data) >= 128
        and version in b"\0\2\3\4\5"
        and encoding == b"\1"
        and bits in b"\1\2\4\x08"
    )


def _always(data: bytes) -> bool:
    return True


@dataclass(frozen=True)
class _Signature:
    name: str
    magic: bytes
    start: Callable[[bytes], bool] = _always
    strict: Callable[[bytes], bool] | None = None
    magic_at: int = 0  # where the magic sits (ISO BMFF: the box type after its size)


_SIGNATURES: tuple[_Signature, ...] = (
    _Signature("JPEG", b"\xff\xd8\xff", strict=_jpeg_strict),
    _Signature("PNG", b"\x89PNG\r\n\x1a\n", strict=_always),
    _Signature("GIF", b"GIF87a", strict=_gif_strict),
    _Signature("GIF", b"GIF89a", strict=_gif_strict),
    _Signature("WEBP", b"RIFF", _webp_start, _webp_strict),
    _Signature("JPEG XL", b"\x00\x00\x00\x0cJXL \r\n\x87\n", strict=_always),
    _Signature("JPEG XL", b"\xff\x0a"),
    _Signature("JPEG 2000", b"\x00\x00\x00\x0cjP  \r\n\x87\n", _jp2, _jp2),
    _Signature("JPEG 2000", b"\xff\x4f\xff\x51", _j2k, _j2k),
    _Signature("HEIF", b"ftyp", _is_heif, _is_heif, magic_at=4),
    _Signature("TIFF", b"II*\x00", _tiff_classic(True, False), _tiff_classic(True, True)),
    _Signature("TIFF", b"MM\x00*", _tiff_classic(False, False), _tiff_classic(False, True)),
    _Signature("TIFF", b"II+\x00", _bigtiff, _bigtiff),
    _Signature("TIFF", b"MM\x00+", _bigtiff, _bigtiff),
    _Signature("Camera RAW", b"IIRO"),
    _Signature("Camera RAW", b"IIRS"),
    _Signature("Camera RAW", b"IIU\x00"),
    _Signature("Camera RAW", b"FUJIFILMCCD-RAW", strict=_always),
    _Signature("JPEG XR", b"II\xbc\x01"),
    _Signature("BMP", b"BM", _bmp, _bmp),
    _Signature("ICO", b"\x00\x00\x01\x00", _ico, _ico),
    _Signature("CUR", b"\x00\x00\x02\x00", _ico, _ico),
    _Signature("PSD", b"8BPS", _psd, _psd),
    _Signature("QOI", b"qoif", _qoi, _qoi),
    _Signature("OpenEXR", b"\x76\x2f\x31\x01", _exr, _exr),
    _Signature("DDS", b"DDS ", _dds, _dds),
    _Signature("MNG", b"\x8aMNG\r\n\x1a\n", strict=_always),
    _Signature("JNG", b"\x8bJNG\r\n\x1a\n", strict=_always),
    _Signature("BPG", b"BPG\xfb", strict=_always),
    _Signature("FLIF", b"FLIF"),
    _Signature("ICNS", b"icns"),
    _Signature("farbfeld", b"farbfeld"),
    _Signature("XCF", b"gimp xcf "),
    _Signature("Radiance HDR", b"#?RADIANCE\n"),
    _Signature("Radiance HDR", b"#?RGBE\n"),
    _Signature("PNM", b"P", _pnm),
    _Signature("PFM", b"PF\n"),
    _Signature("PFM", b"Pf\n"),
    _Signature("PCX", b"\x0a", _pcx),
    _Signature("SVG", b"", _svg),
    _Signature("SVG", b"\x1f\x8b", _svgz),
)


def _matches(sig: _Signature, head: bytes, strict: bool) -> bool:
    if head[sig.magic_at : sig.magic_at + len(sig.magic)] != sig.magic:
        return False
    check = sig.strict if strict else sig.start
    return check is not None and check(head)


def _name(sig: _Signature, head: bytes) -> str:
    return (_heif_name(head) or sig.name) if sig.name == "HEIF" else sig.name


def sniff_image(data: bytes, *, strict: bool = False) -> str | None:
    """The image format of `data` by its magic bytes, protectable or not, or None.

    `strict`: only signatures that cannot be the start of ordinary text (for form text fields,
    whose content is the user's words).
    """
    head = bytes(data[:_HEAD])
    for sig in _SIGNATURES:
        if _matches(sig, head, strict):
            return _name(sig, head)
    if not strict and _tga(data):
        return "TGA"
    return None


def sniff_format(data: bytes) -> str | None:
    """The engine-protectable format of `data` ("JPEG", "PNG", "WEBP", "GIF"), or None."""
    name = sniff_image(data)
    return name if name in PROTECTABLE else None


def sniff_other(data: bytes) -> str | None:
    """The name of an image format the engine cannot protect ("AVIF", "TIFF", ...), or None."""
    name = sniff_image(data)
    return name if name is not None and name not in PROTECTABLE else None


# Signatures worth looking for inside other bytes: their strict checks make a chance match in
# unrelated data (compressed streams, other media) vanishingly rare.
_EMBEDDED = tuple(s for s in _SIGNATURES if s.strict is not None)


def image_offsets(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, str]]:
    """Where images start inside `data[start:end]` (offset, format), by strict signatures, in
    no order. The image itself may run past `end`."""
    end = len(data) if end is None else min(end, len(data))
    for sig in _EMBEDDED:
        pos = data.find(sig.magic, start + sig.magic_at, end + sig.magic_at)
        while pos >= 0:
            offset = pos - sig.magic_at
            head = bytes(data[offset : offset + _HEAD])
            if _matches(sig, head, strict=True):
                yield offset, _name(sig, head)
            pos = data.find(sig.magic, pos + 1, end + sig.magic_at)


def pixel_count(data: bytes) -> int:
    """How many pixels decoding `data` makes (all frames), read from its header; 0 if the
    header cannot be read (the engine then refuses the file before decoding it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                frames = 1 if im.format == "JPEG" else int(getattr(im, "n_frames", 1))
    except Exception:
        return 0
    return width * height * frames


_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # in entropy-coded data


def _jpeg_layout(data: bytes) -> tuple[list[tuple[int, int]], int | None]:
    """(payload ranges of every marker segment, before and between the scans; the offset just
    after EOI, or None if the structure breaks off first). Entropy-coded data is skipped: in it
    0xFF is always followed by 0x00, a restart marker or more fill bytes."""
    regions: list[tuple[int, int]] = []
    pos = 2
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            return regions, None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return regions, pos + 2
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = _u16be(data, pos + 2)
        if length < 2 or pos + 2 + length > len(data):
            return regions, None
        end = pos + 2 + length
        if marker != 0xDA:
            regions.append((pos + 4, end))
            pos = end
            continue
        found = _JPEG_NEXT_MARKER.search(data, end)
        if found is None:
            return regions, None
        pos = found.start()
    return regions, None


def _png_layout(data: bytes) -> tuple[list[tuple[bytes, int, int]], int | None]:
    """((type, payload start, payload end) of each chunk; the offset just after IEND, or
    None if the chunks break off first)."""
    chunks: list[tuple[bytes, int, int]] = []
    pos = 8
    while pos + 12 <= len(data):
        length, ctype = _u32be(data, pos), bytes(data[pos + 4 : pos + 8])
        if pos + 12 + length > len(data):
            return chunks, None
        chunks.append((ctype, pos + 8, pos + 8 + length))
        pos += 12 + length
        if ctype == b"IEND":
            return chunks, pos
    return chunks, None


def _webp_layout(data: bytes) -> tuple[list[tuple[bytes, int, int]], int | None]:
    """((fourcc, payload start, payload end) of each top-level chunk; the end the RIFF header
    declares, or None if the chunks do not fill it exactly)."""
    end = 8 + _u32le(data, 4)
    limit = min(end, len(data))
    chunks: list[tuple[bytes, int, int]] = []
    pos = 12
    while pos + 8 <= limit:
        fourcc, length = bytes(data[pos : pos + 4]), _u32le(data, pos + 4)
        if pos + 8 + length > limit:
            return chunks, None
        chunks.append((fourcc, pos + 8, pos + 8 + length))
        pos += 8 + length + (length & 1)
    return chunks, (end if pos == end <= len(data) else None)


def _gif_end(data: bytes) -> int | None:
    """The offset just after the GIF trailer, following every block; None if they break off."""
    if len(data) < 13:
        return None
    pos = 13 + (3 * (2 << (data[10] & 7)) if data[10] & 0x80 else 0)
    while pos < len(data):
        introducer = data[pos]
        if introducer == 0x3B:
            return pos + 1
        if introducer == 0x21:  # extension: label, then sub-blocks
            pos += 2
        elif introducer == 0x2C:  # image: descriptor, local colour table, LZW code size
            if pos + 10 > len(data):
                return None
            flags = data[pos + 9]
            pos += 10 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0) + 1
        else:
            return None
        while pos < len(data) and data[pos]:  # sub-blocks up to the terminator
            pos += 1 + data[pos]
        pos += 1
    return None


def metadata_regions(data: bytes) -> list[tuple[int, int]]:
    """Where an image file keeps data other than its pixels (JPEG segments before and between
    the scans, PNG and WebP chunks other than image data, all of a GIF): where embedded previews
    live."""
    name = sniff_format(data)
    if name == "JPEG":
        return _jpeg_layout(data)[0]
    if name == "PNG":
        return [
            (start, end)
            for ctype, start, end in _png_layout(data)[0]
            if ctype not in (b"IDAT", b"fdAT", b"IHDR", b"PLTE", b"IEND")
        ]
    if name == "WEBP":
        return [
            (start, end)
            for fourcc, start, end in _webp_layout(data)[0]
            if fourcc not in (b"VP8 ", b"VP8L", b"ALPH", b"ANMF")
        ]
    if name == "GIF":
        return [(6, len(data))]
    return []


def image_end(data: bytes) -> int | None:
    """Where the JPEG, PNG, WebP or GIF image that `data` starts with ends (after EOI, IEND,
    the RIFF size, the trailer): bytes beyond it are not part of the image. None if its
    structure breaks off before its end, or for other formats."""
    name = sniff_format(data)
    if name == "JPEG":
        return _jpeg_layout(data)[1]
    if name == "PNG":
        return _png_layout(data)[1]
    if name == "WEBP":
        return _webp_layout(data)[1]
    if name == "GIF":
        return _gif_end(data)
    return None


def png_chunk_types(data: bytes) -> list[bytes]:
    """The chunk types of a PNG, in order, up to IEND."""
    return [ctype for ctype, _, _ in _png_layout(data)[0]]


def webp_chunk_types(data: bytes) -> list[bytes]:
    """The top-level chunk types of a WebP, in order."""
    return [fourcc for fourcc, _, _ in _webp_layout(data)[0]]


def pixel_data_sample(data: bytes, start: int = 0, size: int = 32) -> bytes | None:
    """A short run from the middle of the compressed pixel data of the JPEG or PNG at `start`:
    found again elsewhere, it means a copy of that image. None for other formats or images too
    small to tell."""
    if data[start : start + 3] == b"\xff\xd8\xff":
        scan = data.find(b"\xff\xda", start)
        if scan < 0:
            return None
        begin = scan + 2 + _u16be(data, scan + 2)
        end = data.find(b"\xff\xd9", begin)  # entropy-coded data never holds FF D9
        end = len(data) if end < 0 else end
    elif data[start : start + 8] == b"\x89PNG\r\n\x1a\n":
        chunk = data.find(b"IDAT", start)
        if chunk < 4:
            return None
        begin = chunk + 4
        end = min(len(data), begin + _u32be(data, chunk - 4))
    else:
        return None
    if end - begin < 4 * size:
        return None
    middle = (begin + end) // 2
    return bytes(data[middle : middle + size])
