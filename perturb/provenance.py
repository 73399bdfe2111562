"""Provenance: the Sfumato XMP marker and the IPTC "no AI/ML training" reservation.

The marker (our own namespace: model id, version, strength, date and a digest of the protected
pixels) lets the proxy skip a file it already protected. An XMP packet is trivially copied into
another file, or kept by an editor when the artwork is changed, so a marker only counts when its
`PixelDigest` matches the pixels the file decodes to (`inspect_marker` checks it). The reservation
is IPTC Photo Metadata / PLUS `plus:DataMining` = DMI-PROHIBITED-AIMLTRAINING. Both are written
into the file's XMP packet: merged into an existing packet (its other properties kept), or a new
packet. The packet ends with whitespace padding, as XMP recommends, which is also how
`exact_length` grows a file byte by byte.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from PIL import Image

SFUMATO_NS = "https://sfumato.dev/ns/xmp/1.0/"
PLUS_NS = "http://ns.useplus.org/ldf/xmp/1.0/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DMI_PROHIBITED_AIML = "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING"
MAX_PACKET = 4 * 1024 * 1024  # we never parse anything larger as XMP

_OPEN = b"<x:xmpmeta"
_CLOSE = b"</x:xmpmeta>"
MAX_PACKETS = 8  # a file with more candidate packets than this is not worth reading further
DIGEST_PREFIX = "sha256:"
# Written first, then overwritten in place by the real digest (same length, so an encoded file,
# padding included, keeps its size): the digest is of the pixels the encoder produced.
DIGEST_PLACEHOLDER = DIGEST_PREFIX + "0" * 64
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}\Z")
_OUR_DESCRIPTION_RE = re.compile(
    r"<rdf:Description\b[^>]*xmlns:sfumato=\"" + re.escape(SFUMATO_NS) + r"\"[^>]*/>\s*", re.S
)


@dataclass(frozen=True)
class Marker:
    """What the Sfumato marker of a file says."""

    model_id: str
    strength: float
    date: str
    model_version: str = ""
    ai_reservation: bool = False
    pixel_digest: str = ""  # "sha256:<hex>" of the protected pixels ("" in old markers)


MarkerStatus = Literal["absent", "matches", "no-digest", "pixels-changed", "unreadable"]


@dataclass(frozen=True)
class MarkerCheck:
    """A file's marker and whether it vouches for the file's pixels.

    `status`: "absent" (no marker), "matches" (protected), "no-digest" (a marker without a pixel
    digest, as written before markers were bound to pixels), "pixels-changed" (the pixels differ
    from those the marker was written for: edited, or the marker was copied from another file),
    "unreadable" (the pixels cannot be decoded within the limits).
    """

    marker: Marker | None
    status: MarkerStatus

    @property
    def protected(self) -> bool:
        return self.status == "matches"


def marker_date() -> str:
    """The date we stamp (UTC, day precision so output stays deterministic; SOURCE_DATE_EPOCH)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    try:
        seconds = float(epoch) if epoch else time.time()
    except ValueError:
        seconds = time.time()
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def _attr(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _description(model_id: str, model_version: str, strength: float, date: str,
                 ai_reservation: bool, pixel_digest: str) -> str:
    plus = (
        f'\n    xmlns:plus="{PLUS_NS}"\n    plus:DataMining="{DMI_PROHIBITED_AIML}"'
        if ai_reservation
        else ""
    )
    return (
        f'<rdf:Description rdf:about=""\n    xmlns:sfumato="{SFUMATO_NS}"\n'
        f'    sfumato:Model="{_attr(model_id)}"\n'
        f'    sfumato:ModelVersion="{_attr(model_version)}"\n'
        f'    sfumato:Strength="{strength:.6g}"\n'
        f'    sfumato:Date="{_attr(date)}"\n'
        f'    sfumato:PixelDigest="{_attr(pixel_digest)}"{plus}/>\n'
    )


def build_xmp(
    existing: bytes | None,
    *,
    model_id: str,
    model_version: str,
    strength: float,
    date: str,
    ai_reservation: bool,
    pixel_digest: str = DIGEST_PLACEHOLDER,
    padding: int = 0,
) -> bytes:
    """The XMP packet to write: `existing` with our description merged in, or a new packet.

    An existing `plus:DataMining` statement is the artist's own choice and is left untouched;
    ours is only added when there is none. A previous Sfumato description is replaced.
    """
    body = None
    if existing:
        for raw in _candidates(existing):
            try:
                text = raw.decode("utf-8")
                ET.fromstring(text)
                body = text
                break
            except (UnicodeDecodeError, ET.ParseError):
                continue  # unparseable: replaced by a fresh packet rather than corrupted further
    if body is not None:
        body = _OUR_DESCRIPTION_RE.sub("", body)
        if "DataMining" in body:
            ai_reservation = False
        ours = _description(model_id, model_version, strength, date, ai_reservation,
                            pixel_digest)
        opening = re.search(r"<rdf:RDF\b[^>]*>", body)
        if opening is None:
            body = None
        else:
            body = body[: opening.end()] + "\n  " + ours + body[opening.end():]
    if body is None:
        ours = _description(model_id, model_version, strength, date, ai_reservation,
                            pixel_digest)
        body = (
            '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
            f' <rdf:RDF xmlns:rdf="{RDF_NS}">\n  {ours} </rdf:RDF>\n</x:xmpmeta>'
        )
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        + body
        + "\n"
        + " " * max(0, padding)
        + '<?xpacket end="w"?>'
    )
    return packet.encode("utf-8")


def _candidates(data: bytes) -> list[bytes]:
    """`<x:xmpmeta ...</x:xmpmeta>` spans, found in linear time (the proxy runs this on every
    upload, so a body full of unclosed openings must not make it quadratic)."""
    closes = [m.start() for m in re.finditer(re.escape(_CLOSE), data)]
    found: list[bytes] = []
    if not closes:
        return found
    pos = 0
    while len(found) < MAX_PACKETS:
        start = data.find(_OPEN, pos)
        if start < 0:
            break
        at = bisect.bisect_right(closes, start)
        if at == len(closes):
            break
        end = closes[at] + len(_CLOSE)
        after = data[start + len(_OPEN) : start + len(_OPEN) + 1]
        if end - start <= MAX_PACKET and (after.isspace() or after == b">"):
            found.append(data[start:end])
            pos = end
        else:
            pos = start + 1
    return found


def _packets(data: bytes) -> list[ET.Element]:
    roots = []
    for raw in _candidates(data):
        try:
            roots.append(ET.fromstring(raw.decode("utf-8")))
        except (UnicodeDecodeError, ET.ParseError):
            continue
    return roots


def _values(root: ET.Element, ns: str, name: str) -> list[str]:
    """A property as attribute or element of any rdf:Description (both XMP serialisations)."""
    values = []
    tag = f"{{{ns}}}{name}"
    for desc in root.iter(f"{{{RDF_NS}}}Description"):
        if tag in desc.attrib:
            values.append(desc.attrib[tag])
        for child in desc.iter(tag):
            text = "".join(child.itertext()).strip()
            resource = child.attrib.get(f"{{{RDF_NS}}}resource")
            values.append(resource or text)
    return values


def has_ai_reservation(data: bytes) -> bool:
    """Whether any XMP packet in the file prohibits AI/ML training (`plus:DataMining`)."""
    for root in _packets(data):
        for value in _values(root, PLUS_NS, "DataMining"):
            if value.strip().startswith(DMI_PROHIBITED_AIML) or value.strip().endswith(
                ("DMI-PROHIBITED-AIMLTRAINING", "DMI-PROHIBITED", "DMI-PROHIBITED-GENAIMLTRAINING")
            ):
                return True
    return False


def _claimed_markers(data: bytes) -> list[Marker]:
    """What the Sfumato descriptions of a file say, unverified."""
    markers = []
    reserved: bool | None = None
    for root in _packets(data):
        models = _values(root, SFUMATO_NS, "Model")
        if not models:
            continue
        strengths = _values(root, SFUMATO_NS, "Strength")
        try:
            strength = float(strengths[0]) if strengths else float("nan")
        except ValueError:
            strength = float("nan")
        dates = _values(root, SFUMATO_NS, "Date")
        versions = _values(root, SFUMATO_NS, "ModelVersion")
        digests = _values(root, SFUMATO_NS, "PixelDigest")
        if reserved is None:
            reserved = has_ai_reservation(data)
        markers.append(Marker(
            model_id=models[0],
            strength=strength,
            date=dates[0] if dates else "",
            model_version=versions[0] if versions else "",
            ai_reservation=reserved,
            pixel_digest=digests[0].strip() if digests else "",
        ))
    return markers


def check_marker(data: bytes, *, max_pixels: int | None = None) -> MarkerCheck:
    """The file's Sfumato marker and whether its pixel digest matches the file's pixels.

    Decodes the image (only when a marker with a digest is present), refusing more than
    `max_pixels` (default: the engine's limit); any decoding failure is "unreadable".
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("check_marker expects the file's bytes")
    data = bytes(data)
    claimed = _claimed_markers(data)
    if not claimed:
        return MarkerCheck(None, "absent")
    digests = {m.pixel_digest for m in claimed if _DIGEST_RE.match(m.pixel_digest)}
    digests.discard(DIGEST_PLACEHOLDER)
    if not digests:
        return MarkerCheck(claimed[0], "no-digest")
    try:
        actual = digest_file(data, max_pixels=max_pixels)
    except Exception:  # undecodable, too large, anything: not protected
        return MarkerCheck(claimed[0], "unreadable")
    for marker in claimed:
        if marker.pixel_digest == actual:
            return MarkerCheck(marker, "matches")
    return MarkerCheck(claimed[0], "pixels-changed")


def inspect_marker(data: bytes, *, max_pixels: int | None = None) -> Marker | None:
    """The Sfumato marker of an image file if it vouches for the file's pixels, else None.

    This is the one test of "already protected": a marker whose pixel digest is missing or does
    not match the decoded pixels (an edited file, or a marker copied into another file) does not
    count. `check_marker` says why a marker did not count.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("inspect_marker expects the file's bytes")
    check = check_marker(data, max_pixels=max_pixels)
    return check.marker if check.protected else None


def already_protected(data: bytes) -> Marker | None:
    """The marker of a file that needs no protecting, else None: the one rule the proxy and
    `sfumato protect` skip by. The marker vouches for the pixels only, so a file that also holds
    an embedded image or bytes after its end (an original's thumbnail or copy added after
    protection, `previews.extra_content`) needs protecting again, which regenerates or drops it.
    """
    from perturb.previews import extra_content

    marker = inspect_marker(data)
    return marker if marker is not None and extra_content(data) is None else None


# --- the pixel digest -----------------------------------------------------------------------------


def digest_frames(frames: Iterable[Image.Image], n_frames: int) -> str:
    """"sha256:<hex>" over the frame count, size, and each frame's mode and pixel bytes (palette
    frames as RGBA, so the palette counts). Frames are the ones `formats.decode_frame` yields, so
    the engine (from the frames it encoded, or by decoding its own output) and `check_marker`
    (by decoding the file) hash the same thing. Hashed in strips: no whole-image copy."""
    digest = hashlib.sha256(f"sfumato-pixels/1 {n_frames}".encode())
    for frame in frames:
        image = frame.convert("RGBA") if frame.mode in ("P", "PA", "1") else frame
        width, height = image.size
        digest.update(f"|{image.mode} {width}x{height}|".encode())
        for y in range(0, height, 256):
            digest.update(image.crop((0, y, width, min(height, y + 256))).tobytes())
    return DIGEST_PREFIX + digest.hexdigest()


def digest_file(data: bytes, *, max_pixels: int | None = None) -> str:
    """The pixel digest of an encoded file, decoded as the engine decodes (bounded by
    `max_pixels` per frame and in total; None: the engine's default limit)."""
    from perturb import formats

    fmt = formats.sniff_format(data)
    if fmt is None:
        raise ValueError("not a supported image")
    limit = formats.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    with Image.open(io.BytesIO(data), formats=[fmt]) as im:
        width, height = im.size
        n_frames = 1 if fmt == "JPEG" else int(getattr(im, "n_frames", 1))
        if width * height * n_frames > limit:
            raise ValueError(f"{width}x{height}x{n_frames} is over the {limit} pixel limit")
        frames = (formats.decode_frame(im, i, fmt, n_frames).image for i in range(n_frames))
        return digest_frames(frames, n_frames)
