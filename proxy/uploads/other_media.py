"""Files that are not images but may hold some (a video's cover, a PDF's pages, a ZIP of
drawings): recognised by magic bytes and passed on whole, not searched.

Searching inside them would refuse ordinary video and document uploads for the artwork they
embed; protecting inside them is not possible. docs/sites.md states this limit. A container's
magic followed at once by an image (within `DISGUISE` bytes) is no container but a disguise,
and is not recognised: the image is found and refused.
"""

from __future__ import annotations

from perturb.image_kinds import image_offsets

DISGUISE = 256

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF-", 0, "PDF document"),
    (b"PK\x03\x04", 0, "ZIP archive"),
    (b"PK\x05\x06", 0, "ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "Office document"),
    (b"7z\xbc\xaf\x27\x1c", 0, "7-Zip archive"),
    (b"Rar!\x1a\x07", 0, "RAR archive"),
    (b"\xfd7zXZ\x00", 0, "XZ archive"),
    (b"BZh", 0, "bzip2 archive"),
    (b"\x28\xb5\x2f\xfd", 0, "Zstandard archive"),
    (b"\x1f\x8b", 0, "gzip archive"),
    (b"ustar", 257, "tar archive"),
    (b"\x1a\x45\xdf\xa3", 0, "video (Matroska/WebM)"),
    (b"FLV\x01", 0, "video (FLV)"),
    (b"\x00\x00\x01\xba", 0, "video (MPEG)"),
    (b"OggS", 0, "audio/video (Ogg)"),
    (b"fLaC", 0, "audio (FLAC)"),
    (b"ID3", 0, "audio (MP3)"),
    (b"MThd", 0, "audio (MIDI)"),
    (b"wOFF", 0, "font"),
    (b"wOF2", 0, "font"),
    (b"OTTO", 0, "font"),
    (b"\x00asm", 0, "WebAssembly"),
)
_RIFF_MEDIA = {b"AVI ": "video (AVI)", b"WAVE": "audio (WAV)"}
# QuickTime files may start with any of these atoms instead of `ftyp`.
_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


def sniff_other_media(data: bytes) -> str | None:
    """What kind of non-image file `data` is (call after the image sniffers), or None."""
    kind = _kind(bytes(data[:512]))
    if kind is not None and any(image_offsets(data, 0, DISGUISE)):
        return None
    return kind


def _kind(head: bytes) -> str | None:
    for magic, offset, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_MEDIA:
        return _RIFF_MEDIA[head[8:12]]
    if head[4:8] == b"ftyp":
        return "video/audio (MP4, QuickTime)"  # image brands were recognised before
    if head[4:8] in _QUICKTIME_ATOMS and int.from_bytes(head[:4], "big") >= 8:
        return "video (QuickTime)"
    return None
