"""Text in UTF-16 or UTF-32 (a byte-order mark, a declared `charset`, or the zero bytes that
ASCII leaves in them): base64 or hex written in it has a zero byte between its characters, so a
search of the raw bytes would miss it. `wide_codec` names the codec that reads such a body and
writes it back byte for byte; the caller searches the text as UTF-8 and encodes the result again.
"""

from __future__ import annotations

from email.message import Message

# Byte-order marks, UTF-32's first (FF FE 00 00 begins with UTF-16's FF FE).
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_CHARSETS = {
    "utf-16le": "utf-16-le",
    "utf-16be": "utf-16-be",
    "utf-32le": "utf-32-le",
    "utf-32be": "utf-32-be",
    "ucs-2": "utf-16",
    "utf-16": "utf-16",
    "utf-32": "utf-32",
}
# Which byte of each code unit ASCII leaves zero: (unit size, positions that are zero).
_ZERO_PATTERNS = (
    ("utf-32-le", 4, (1, 2, 3)),
    ("utf-32-be", 4, (0, 1, 2)),
    ("utf-16-le", 2, (1,)),
    ("utf-16-be", 2, (0,)),
)
SAMPLE = 1024  # bytes looked at to tell an encoding by its zeros


def charset(content_type: str | None) -> str:
    """The `charset` parameter of a Content-Type, lower case, or "" (parsed as `multipart`
    parses its parameters, by the standard library's MIME parser)."""
    message = Message()
    message["content-type"] = content_type or ""
    return message.get_content_charset() or ""


def wide_codec(data: bytes, content_type: str | None) -> str | None:
    """The codec (`utf-16-le`, ...) that reads `data` as UTF-16/32 text and writes it back
    unchanged (with `surrogatepass`), or None if `data` is not such text."""
    codec = _by_bom(data) or _CHARSETS.get(charset(content_type))
    if codec in ("utf-16", "utf-32"):  # no order given: by the zeros, else big-endian (RFC 2781)
        codec = _by_zeros(data, codec) or codec + "-be"
    codec = codec or _by_zeros(data)
    if codec is None:
        return None
    try:
        text = data.decode(codec, "surrogatepass")
    except UnicodeDecodeError:
        return None
    return codec if text.encode(codec, "surrogatepass") == data else None


def _by_bom(data: bytes) -> str | None:
    return next((codec for bom, codec in _BOMS if data.startswith(bom)), None)


def _by_zeros(data: bytes, family: str = "utf-") -> str | None:
    """The encoding whose zero pattern the first bytes follow: in each position of a code unit
    that ASCII leaves zero, at least half the bytes are zero (other scripts fill them); in the
    others at most 10 % (text has none there; binary data has zeros anywhere)."""
    for codec, unit, zeros in _ZERO_PATTERNS:
        if not codec.startswith(family):
            continue
        sample = data[: SAMPLE // unit * unit]
        if len(sample) < 4 * unit or len(data) % unit:
            continue
        units = len(sample) // unit
        zero = [sample[i::unit].count(0) for i in range(unit)]
        text_zeros = all(zero[i] >= 0.5 * units for i in zeros)
        if text_zeros and sum(zero) - sum(zero[i] for i in zeros) <= 0.1 * units * (
            unit - len(zeros)
        ):
            return codec
    return None
