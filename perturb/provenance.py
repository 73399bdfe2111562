"""Provenance: the Sfumato XMP marker and the IPTC "no AI/ML training" reservation.

The marker (our own namespace: model id, version, strength, date) lets the proxy skip a file it
already protected. The reservation is IPTC Photo Metadata / PLUS `plus:DataMining` =
DMI-PROHIBITED-AIMLTRAINING. Both are written into the file's XMP packet: merged into an existing
packet (its other properties kept), or a new packet. The packet ends with whitespace padding, as
XMP recommends, which is also how `exact_length` grows a file byte by byte.
"""

from __future__ import annotations

import bisect
import os
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

SFUMATO_NS = "https://sfumato.dev/ns/xmp/1.0/"
PLUS_NS = "http://ns.useplus.org/ldf/xmp/1.0/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DMI_PROHIBITED_AIML = "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING"
MAX_PACKET = 4 * 1024 * 1024  # we never parse anything larger as XMP

_OPEN = b"<x:xmpmeta"
_CLOSE = b"</x:xmpmeta>"
MAX_PACKETS = 8  # a file with more candidate packets than this is not worth reading further
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
                 ai_reservation: bool) -> str:
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
        f'    sfumato:Date="{_attr(date)}"{plus}/>\n'
    )


def build_xmp(
    existing: bytes | None,
    *,
    model_id: str,
    model_version: str,
    strength: float,
    date: str,
    ai_reservation: bool,
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
        ours = _description(model_id, model_version, strength, date, ai_reservation)
        opening = re.search(r"<rdf:RDF\b[^>]*>", body)
        if opening is None:
            body = None
        else:
            body = body[: opening.end()] + "\n  " + ours + body[opening.end():]
    if body is None:
        ours = _description(model_id, model_version, strength, date, ai_reservation)
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


def inspect_marker(data: bytes) -> Marker | None:
    """The Sfumato marker of an image file (any format: XMP is stored uncompressed), or None."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("inspect_marker expects the file's bytes")
    data = bytes(data)
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
        return Marker(
            model_id=models[0],
            strength=strength,
            date=dates[0] if dates else "",
            model_version=versions[0] if versions else "",
            ai_reservation=has_ai_reservation(data),
        )
    return None
