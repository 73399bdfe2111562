"""Container-level knowledge: JPEG segments and quality tables, PNG chunks, WebP chunks, GIF
extensions. Pure byte functions (no decoding), so they are cheap to test with hypothesis.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import numpy as np

# --- JPEG -------------------------------------------------------------------------------------

# ITU-T T.81 Annex K luminance table (natural order), the base of IJG quality scaling.
_IJG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip


# ... and its chrominance table, for the chroma planes.
IJG_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32  # fmt: skip


def ijg_table(quality: int, base: tuple[int, ...] = _IJG_LUMA) -> list[int]:
    """The IJG (libjpeg) table for a quality 1..100 (baseline-clamped to 1..255)."""
    quality = min(100, max(1, quality))
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(255, max(1, (v * scale + 50) // 100)) for v in base]


def estimate_jpeg_quality(luma_table: list[int] | tuple[int, ...]) -> int:
    """IJG quality whose luminance table best matches `luma_table` (order-independent: sums)."""
    if len(luma_table) != 64:
        return 90
    total = sum(luma_table)
    best, best_err = 90, None
    for q in range(100, 0, -1):
        err = abs(sum(ijg_table(q)) - total)
        if best_err is None or err < best_err:
            best, best_err = q, err
    return best


def jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment from SOI up to (excluding) SOS."""
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            yield marker, pos, pos + 2
            pos += 2
            continue
        if marker in (0xDA, 0xD9):
            return
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > n:
            return
        yield marker, pos, pos + 2 + length
        pos += 2 + length


_APP1_HANDLED = (b"Exif\x00", b"http://ns.adobe.com/xap/1.0/\x00")
_APP2_HANDLED = (b"ICC_PROFILE\x00", b"MPF\x00")


def jpeg_extra_segments(data: bytes) -> list[bytes]:
    """APPn segments Pillow does not carry over by itself, to be copied verbatim.

    Kept: APP3–APP13 and APP15 (e.g. Photoshop IRB/IPTC in APP13), APP1 other than EXIF and
    standard XMP (e.g. extended XMP), APP2 other than ICC and MPF. Dropped: APP0 (JFIF, rewritten),
    APP14 (Adobe colour transform, which must match the new encoding) and MPF (its offsets point
    into the old file).
    """
    extras = []
    for marker, start, end in jpeg_segments(data):
        payload = data[start + 4 : end]
        if marker == 0xE1 and payload.startswith(_APP1_HANDLED):
            continue
        if marker == 0xE2 and payload.startswith(_APP2_HANDLED):
            continue
        if marker in (0xE1, 0xE2) or 0xE3 <= marker <= 0xED or marker == 0xEF:
            extras.append(data[start:end])
    return extras


def jpeg_insert_segments(data: bytes, segments: list[bytes]) -> bytes:
    """Insert whole marker segments after the leading APPn segments (before DQT/SOF)."""
    if not segments:
        return data
    insert_at = 2
    for marker, _start, end in jpeg_segments(data):
        if 0xE0 <= marker <= 0xEF:
            insert_at = end
        elif marker != 0xD8:
            break
    return data[:insert_at] + b"".join(segments) + data[insert_at:]


def jpeg_comment_padding(size: int) -> list[bytes]:
    """COM segments totalling exactly `size` bytes (each ≥ 4 bytes; `size` must be 0 or ≥ 4)."""
    segments = []
    while size > 0:
        part = min(size, 0xFFFF + 2)
        if size - part in (1, 2, 3):  # leave at least 4 bytes for the last segment
            part -= 4
        segments.append(b"\xff\xfe" + struct.pack(">H", part - 2) + b" " * (part - 4))
        size -= part
    return segments


# --- PNG --------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ancillary chunks copied verbatim (colour and time; text is handled with the XMP merge). Not
# sBIT: it declares the low bits insignificant, and decoders that honour it (pypng does) would
# shift the perturbation away.
PNG_COPY_BEFORE_PLTE = (b"cHRM", b"cICP", b"gAMA", b"sRGB", b"tIME")
PNG_CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")
PNG_TEXT = (b"tEXt", b"zTXt", b"iTXt")
# Also carried: the background colour (rescaled to the written colour type and depth), the
# physical pixel size (verbatim: Pillow only writes it from DPI) and suggested palettes.
PNG_COPY_ADAPTED = (b"bKGD", b"pHYs", b"sPLT")


def png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of each chunk; stops at IEND or at the first malformed chunk."""
    pos = len(PNG_SIGNATURE)
    n = len(data)
    while pos + 12 <= n:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        if pos + 12 + length > n:
            return
        yield ctype, data[pos + 8 : pos + 8 + length]
        if ctype == b"IEND":
            return
        pos += 12 + length


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    """One serialised PNG chunk with its CRC."""
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def png_is_xmp_chunk(ctype: bytes, payload: bytes) -> bool:
    return ctype == b"iTXt" and payload.startswith(b"XML:com.adobe.xmp\x00")


def png_xmp(data: bytes) -> bytes | None:
    """The XMP packet of a PNG (uncompressed or compressed iTXt `XML:com.adobe.xmp`)."""
    for ctype, payload in png_chunks(data):
        if png_is_xmp_chunk(ctype, payload):
            rest = payload[len(b"XML:com.adobe.xmp\x00") :]
            if len(rest) < 2:
                return None
            compressed = rest[0] == 1
            rest = rest[2:]
            # language tag and translated keyword, each NUL-terminated
            for _ in range(2):
                cut = rest.find(b"\x00")
                if cut < 0:
                    return None
                rest = rest[cut + 1 :]
            if compressed:
                try:
                    return zlib.decompressobj().decompress(rest, 8 * 1024 * 1024)
                except zlib.error:
                    return None
            return rest
    return None


def png_xmp_chunk(packet: bytes) -> bytes:
    """An uncompressed iTXt chunk holding an XMP packet (uncompressed so it can be padded)."""
    return png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + packet)


def png_bad_crc(data: bytes) -> bytes | None:
    """The type of the first critical chunk whose CRC does not match, or None."""
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 8 + length
        if end + 4 > len(data):
            return None
        ctype = data[pos + 4 : pos + 8]
        if ctype in PNG_CRITICAL:
            (crc,) = struct.unpack(">I", data[end : end + 4])
            if zlib.crc32(data[pos + 4 : end]) & 0xFFFFFFFF != crc:
                return ctype
        if ctype == b"IEND":
            return None
        pos = end + 4
    return None


def png_fix_crc(data: bytes, at: int) -> bytes:
    """`data` with the CRC of the chunk whose payload contains offset `at` recomputed."""
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 8 + length
        if pos + 8 <= at < end:
            crc = zlib.crc32(data[pos + 4 : end]) & 0xFFFFFFFF
            return data[:end] + struct.pack(">I", crc) + data[end + 4 :]
        pos = end + 4
    raise ValueError("offset is not inside a chunk payload")


def png_insert_before_idat(data: bytes, chunk: bytes) -> bytes:
    """Insert a serialised chunk before the first IDAT (or acTL/fcTL of an APNG)."""
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] in (b"IDAT", b"acTL", b"fcTL"):
            return data[:pos] + chunk + data[pos:]
        pos += 12 + length
    raise ValueError("no image data chunk")


def png_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from IHDR, or None."""
    for ctype, payload in png_chunks(data):
        if ctype == b"IHDR" and len(payload) >= 13:
            w, h, depth, colour = struct.unpack(">IIBB", payload[:10])
            return w, h, depth, colour
        return None
    return None


def png_adapt_colour_chunk(
    ctype: bytes,
    payload: bytes,
    source: tuple[int, int, bytes],
    target: tuple[int, int],
) -> bytes | None:
    """A bKGD payload of a PNG with `source` = (bit depth, colour type, PLTE payload), rewritten
    for a file with `target` = (bit depth, colour type), or None when it cannot be expressed (or
    is malformed): samples are rescaled to the target depth, a palette index becomes its colour."""
    depth, colour, plte = source
    t_depth, t_colour = target
    if ctype != b"bKGD":
        return None
    if colour == 3:
        if len(payload) != 1:
            return None
        if t_colour == 3:
            return payload
        index = payload[0]
        if 3 * index + 3 > len(plte):
            return None
        samples, top = list(plte[3 * index : 3 * index + 3]), 255
    elif colour in (0, 4) and len(payload) == 2:
        samples, top = [struct.unpack(">H", payload)[0]], (1 << depth) - 1
    elif colour in (2, 6) and len(payload) == 6:
        samples, top = list(struct.unpack(">HHH", payload)), (1 << depth) - 1
    else:
        return None
    if t_colour == 3 or any(v > top for v in samples):
        return None
    t_top = (1 << t_depth) - 1
    scaled = [(v * t_top + top // 2) // top for v in samples]
    if t_colour in (0, 4):
        if len(set(scaled)) != 1:
            return None
        scaled = scaled[:1]
    elif len(scaled) == 1:
        scaled = scaled * 3
    return b"".join(struct.pack(">H", v) for v in scaled)


# --- WebP -------------------------------------------------------------------------------------


def webp_chunks(
    data: bytes, start: int = 12, end: int | None = None
) -> Iterator[tuple[bytes, int, int]]:
    """(fourcc, payload start, payload end) of RIFF chunks."""
    end = len(data) if end is None else min(end, len(data))
    pos = start
    while pos + 8 <= end:
        fourcc = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        if pos + 8 + size > end:
            return
        yield fourcc, pos + 8, pos + 8 + size
        pos += 8 + size + (size & 1)


def webp_is_lossless(data: bytes) -> bool:
    """Whether the (first) image bitstream is VP8L (lossless) rather than VP8 (lossy)."""
    for fourcc, start, end in webp_chunks(data):
        if fourcc == b"VP8L":
            return True
        if fourcc == b"VP8 ":
            return False
        if fourcc == b"ANMF":
            for inner, _s, _e in webp_chunks(data, start + 16, end):
                if inner == b"VP8L":
                    return True
                if inner == b"VP8 ":
                    return False
    return False


def webp_xmp(data: bytes) -> bytes | None:
    for fourcc, start, end in webp_chunks(data):
        if fourcc == b"XMP ":
            return data[start:end]
    return None


# --- GIF --------------------------------------------------------------------------------------

_GIF_XMP_ID = b"XMP DataXMP"
# Adobe's "magic trailer": whatever byte a GIF decoder takes as a sub-block length inside the raw
# XMP text, it lands in this ramp and walks down to the terminating zero.
GIF_XMP_TRAILER = b"\x01" + bytes(range(255, -1, -1))


def gif_blocks_start(data: bytes) -> int:
    """Offset of the first block after the header, screen descriptor and global colour table."""
    if len(data) < 13:
        raise ValueError("truncated GIF header")
    flags = data[10]
    pos = 13
    if flags & 0x80:
        pos += 3 * (2 ** ((flags & 0x07) + 1))
    return pos


def gif_xmp(data: bytes) -> bytes | None:
    """The XMP packet stored in a GIF's `XMP DataXMP` application extension, if any."""
    marker = b"\x21\xff\x0b" + _GIF_XMP_ID
    at = data.find(marker)
    if at < 0:
        return None
    start = at + len(marker)
    end = data.find(GIF_XMP_TRAILER, start)
    return data[start:end] if end > 0 else None


def gif_xmp_extension(packet: bytes) -> bytes:
    """An application extension block holding `packet` the way Adobe XMP does for GIF."""
    if b"\x00" in packet:
        raise ValueError("an XMP packet in a GIF cannot contain NUL bytes")
    return b"\x21\xff\x0b" + _GIF_XMP_ID + packet + GIF_XMP_TRAILER + b"\x00"


def gif_strip_xmp(data: bytes) -> bytes:
    """`data` without its XMP application extension (the packet is rewritten, not duplicated)."""
    marker = b"\x21\xff\x0b" + _GIF_XMP_ID
    at = data.find(marker)
    if at < 0:
        return data
    end = data.find(GIF_XMP_TRAILER, at)
    if end < 0:
        return data
    return data[:at] + data[end + len(GIF_XMP_TRAILER) + 1 :]


def gif_insert_extension(data: bytes, block: bytes) -> bytes:
    """Insert an extension block before the first image/extension block."""
    pos = gif_blocks_start(data)
    return data[:pos] + block + data[pos:]


def png16_image_data(pixels: np.ndarray) -> tuple[bytes, list[bytes]]:
    """(IHDR payload, IDAT chunks) of a 16-bit grey+alpha or RGB(A) PNG, "Up"-filtered, deflated.

    Pillow cannot hold 16 bits per colour channel, so the engine writes these two parts itself
    and lets Pillow write everything else (metadata chunks) around them.
    """
    height, width, channels = pixels.shape
    colour_type = {2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    compressor = zlib.compressobj(6)
    parts: list[bytes] = []
    previous = np.zeros(width * channels * 2, dtype=np.uint8)
    for y0 in range(0, height, 256):
        rows = pixels[y0 : y0 + 256].astype(">u2").reshape(-1, width * channels).view(np.uint8)
        prior = np.vstack([previous[None], rows[:-1]])
        filtered = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.uint8)
        filtered[:, 0] = 2  # Up
        np.subtract(rows, prior, out=filtered[:, 1:])  # uint8 arithmetic wraps mod 256
        previous = rows[-1].copy()
        parts.append(compressor.compress(filtered.tobytes()))
    parts.append(compressor.flush())
    stream = b"".join(parts)
    chunk_size = 8 * 1024 * 1024
    chunks = [png_chunk(b"IDAT", stream[i : i + chunk_size])
              for i in range(0, len(stream), chunk_size)] or [png_chunk(b"IDAT", b"")]
    return header, chunks


def png_replace_image_data(
    data: bytes, header: bytes, idat: list[bytes], before_idat: list[bytes]
) -> bytes:
    """`data` with its IHDR payload and IDAT chunks replaced (and chunks added before IDAT)."""
    out = [PNG_SIGNATURE]
    pos = len(PNG_SIGNATURE)
    inserted = False
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        whole = data[pos : pos + 12 + length]
        pos += 12 + length
        if ctype == b"IHDR":
            out.append(png_chunk(b"IHDR", header))
        elif ctype in (b"IDAT", b"tRNS"):
            if ctype == b"IDAT" and not inserted:
                out += before_idat + idat
                inserted = True
        else:
            out.append(whole)
    return b"".join(out)
