"""Metadata carried across re-encoding: EXIF (orientation untouched), ICC, XMP, DPI, comments,
PNG text and colour chunks, and JPEG APPn segments Pillow would drop.

`collect` reads what the original holds; the engine passes it to the encoder and merges the
provenance marker into the XMP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from perturb import containers


@dataclass
class Metadata:
    """What is copied from the original file into the protected one."""

    exif: bytes | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None
    comment: bytes | None = None
    # PNG: serialised chunks (type, payload) copied before PLTE/IDAT, text chunks included.
    png_chunks: list[tuple[bytes, bytes]] = field(default_factory=list)
    # JPEG: whole APPn segments copied verbatim (e.g. Photoshop APP13 / IPTC).
    jpeg_segments: list[bytes] = field(default_factory=list)
    # PNG: the original's (bit depth, colour type, PLTE payload), to rewrite bKGD for the colour
    # type and depth actually written.
    png_source: tuple[int, int, bytes] | None = None
    notes: list[str] = field(default_factory=list)  # what was dropped or regenerated, and why

    def names(self) -> list[str]:
        """Human-readable list of what is carried (for reports and docs)."""
        names = []
        for attr in ("exif", "icc_profile", "xmp", "dpi", "comment"):
            if getattr(self, attr):
                names.append(attr)
        names += sorted({c.decode("latin-1") for c, _ in self.png_chunks})
        if self.jpeg_segments:
            names.append(f"{len(self.jpeg_segments)} APPn segment(s)")
        return names


def _as_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray):
        return bytes(value) or None
    return None


def collect(im: Image.Image, raw: bytes | None, fmt: str) -> Metadata:
    """Metadata of `im` (opened from `raw` when there is a file; a bare PIL image otherwise)."""
    info = im.info
    meta = Metadata(
        exif=_as_bytes(info.get("exif")),
        icc_profile=_as_bytes(info.get("icc_profile")),
        comment=_as_bytes(info.get("comment")),
    )
    dpi = info.get("dpi")
    if isinstance(dpi, tuple) and len(dpi) == 2 and all(float(d) > 0 for d in dpi):
        meta.dpi = (float(dpi[0]), float(dpi[1]))
    if raw is None:
        meta.xmp = _as_bytes(info.get("xmp") or info.get("XML:com.adobe.xmp"))
        return meta
    if fmt == "JPEG":
        meta.xmp = _as_bytes(info.get("xmp"))
        meta.jpeg_segments = containers.jpeg_extra_segments(raw)
    elif fmt == "PNG":
        meta.xmp = containers.png_xmp(raw)
        header = containers.png_header(raw)
        plte = b""
        for ctype, payload in containers.png_chunks(raw):
            if ctype == b"PLTE":
                plte = payload
            if ctype == b"sBIT":
                meta.notes.append("dropped sBIT: it declared the low bits insignificant, and "
                                  "the perturbation lives in them")
            if ctype in containers.PNG_COPY_BEFORE_PLTE or ctype in containers.PNG_COPY_ADAPTED or (
                ctype in containers.PNG_TEXT and not containers.png_is_xmp_chunk(ctype, payload)
            ):
                meta.png_chunks.append((ctype, payload))
        if header:
            meta.png_source = (header[2], header[3], plte)
        meta.comment = None  # PNG comments are text chunks, copied above
        meta.dpi = None  # pHYs is copied verbatim (Pillow's DPI round trip loses non-metre units)
    elif fmt == "WEBP":
        meta.xmp = containers.webp_xmp(raw)
    elif fmt == "GIF":
        meta.xmp = containers.gif_xmp(raw)
        meta.exif = meta.icc_profile = None  # GIF holds neither (Pillow may invent ICC from ext)
    return meta
