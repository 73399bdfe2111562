"""Images written as text: base64 inside `data:` URLs or as bare strings (JSON fields, XML,
plain text), hex digits, percent-encoded bytes, JSON arrays of byte values, and form-urlencoded
fields.

Only the runs that change are rewritten; every other byte of the body is kept. A base64 run is
found whatever surrounds it: JSON's escapes (`\\/`, `\\u002F`, any `\\u00XX` of a base64
character) and line breaks (literal, or JSON's `\\n` escape) may occur inside it and are kept in
the same style on output, as are the URL-safe alphabet and missing padding. The other notations
are written back in their style too: hex (`0x...`, PostgreSQL's `\\x...` for `bytea`, wrapped
like `xxd -p`) in its case and line width; percent-encoding (a `data:` URL without `;base64`,
`encodeURIComponent`) with the same characters left as they are; byte arrays (`JSON.stringify`
of a Node.js Buffer) with the same separator. A run is decoded when it starts like an image (by
strict magic bytes), when a `data:` URL declares its type, or when it is long enough to hold an
image somewhere inside (the caller then searches the decoded bytes).
`transform(decoded, declared_type) -> bytes` does the rest and returns its input object when
nothing changed; this module knows no engine."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from typing import NamedTuple
from urllib.parse import quote_from_bytes, unquote_to_bytes

from perturb.image_kinds import sniff_image

Transform = Callable[[bytes, str | None], bytes]
Range = tuple[int, int]

# Decoded and searched even without an image at its start: could hold an image inside (an image
# behind glued characters, a container of images).
SEARCH_RUNS_FROM = 64
GLUED = 7  # characters before a base64 image that may belong to something else


class Base64Error(ValueError):
    """A run that claims to be an image (data:image URL, image magic) but does not decode."""


# A base64 character, also as JSON writes it escaped: `\/`, or `\u00XX` (some encoders escape
# `/`, `+` and `=`, or everything).
_CHARS = (
    rb"(?:[A-Za-z0-9+/_-]|\\/"
    rb"|\\u00(?:2[bBdDfF]|3[0-9]|4[1-9A-Fa-f]|5[0-9aAfF]|6[1-9A-Fa-f]|7[0-9aA]))"
)
_ESCAPE = re.compile(rb"\\u00([2-7][0-9A-Fa-f])")
# At least 16 characters (the shortest image is longer), then more lines of the same run.
_RUN = re.compile(
    _CHARS + rb"{16,}(?:(?:\\r\\n|\\n|\r\n|\n)" + _CHARS + rb"+)*(?:=|\\u003[dD]){0,2}"
)
# A `data:` URL up to its payload: media type (its `/` perhaps JSON-escaped) and parameters.
_DATA_URL_HEAD = (
    rb"data:([A-Za-z0-9!#$&^_.+-]+(?:/|\\/|\\u002[fF])[A-Za-z0-9!#$&^_.+-]+)?"
    rb"((?:;[A-Za-z0-9!#$&'*+.^_`|~=%-]+)*)"
)
_DATA_URL = re.compile(_DATA_URL_HEAD + rb";base64,$", re.I)
_PLAIN_DATA_URL = re.compile(_DATA_URL_HEAD + rb",$", re.I)  # percent-encoded (RFC 2397)
_BREAK = re.compile(rb"\\r\\n|\\n|\r\n|\n")
_HEX = re.compile(rb"(0[xX]|x)?((?:[0-9a-fA-F]{2})+)")
# Percent-encoded bytes: an escape, then escapes and the characters that URL encoders leave as
# they are (encodeURIComponent, `quote`, data URLs written by hand).
_PCT_SAFE = "!*'()/+:;,@$"  # besides letters, digits and `-._~`, which `quote` never escapes
_PCT_LITERAL = rb"[A-Za-z0-9\-._~" + re.escape(_PCT_SAFE.encode()) + rb"]"
_ESCAPED = re.compile(rb"%[0-9A-Fa-f]{2}")
_PCT_RUN = rb"%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2}|" + _PCT_LITERAL + rb")*"
# The characters before the first escape that may belong to the bytes ("GIF89a", "RIFF....WEBP").
_PCT_LEAD = re.compile(_PCT_LITERAL + rb"*\Z")
PCT_LEAD_MAX = 24
# A JSON array of byte values (`JSON.stringify` of a Node.js Buffer or `Array.from(bytes)`).
_BYTE_ARRAY = rb"\[\s*\d{1,3}(?:\s*,\s*\d{1,3}){15,}\s*\]"
# The runs to look for, without the kinds whose first character (`[`, `%`) a body lacks: each
# alternative costs the regex a try at every position.
_TOKENS = {
    (array, pct): re.compile(
        (rb"(?P<array>" + _BYTE_ARRAY + rb")|" if array else b"")
        + (rb"(?P<pct>" + _PCT_RUN + rb")|" if pct else b"")
        + _RUN.pattern
    )
    for array in (False, True)
    for pct in (False, True)
}


def _clean(run: bytes) -> bytes:
    """The base64 characters of a run (escapes and line breaks removed)."""
    run = _BREAK.sub(b"", run).replace(b"\\/", b"/")
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), run)


def _decode(chars: bytes) -> bytes:
    text = chars.rstrip(b"=")
    if len(text) % 4 == 1:
        raise binascii.Error("impossible base64 length")
    text += b"=" * (-len(text) % 4)
    if b"-" in text or b"_" in text:
        if b"+" in text or b"/" in text:
            raise binascii.Error("mixed base64 alphabets")
        return base64.b64decode(text, altchars=b"-_", validate=True)
    return base64.b64decode(text, validate=True)


def _head_is_image(chars: bytes) -> bool:
    try:
        head = _decode(chars[:64][: len(chars[:64]) // 4 * 4])
    except (binascii.Error, ValueError):
        return False
    return sniff_image(head, strict=True) is not None


def _wrapped_run(run: bytes) -> bytes:
    """The part of a run that is one base64 text wrapped at a fixed width: the middle lines as
    long as the second (the first may carry a few glued characters), the last one no longer;
    text on a later line is not part of it."""
    breaks = list(_BREAK.finditer(run))
    if not breaks:
        return run
    starts = [0] + [b.end() for b in breaks]
    ends = [b.start() for b in breaks] + [len(run)]
    widths = [len(_clean(run[a:b])) for a, b in zip(starts, ends, strict=True)]
    width = widths[1] if len(widths) > 2 else widths[0]
    kept = 1
    while kept < len(widths) and widths[kept] <= width:
        kept += 1
        if widths[kept - 1] < width:
            break  # a short line ends the text
    return run[: ends[kept - 1]]


def _without_last_line(run: bytes) -> bytes:
    """A wrapped run without its last line (which may be a word that follows the base64)."""
    breaks = list(_BREAK.finditer(run))
    return run[: breaks[-1].start()] if breaks else run


def _lines_like(text: bytes, original: bytes) -> tuple[list[bytes], bytes]:
    """`text` cut into lines as long as the `original` run's first line, and the break."""
    found = _BREAK.search(original)
    if found is None:
        return [text], b""
    width = len(_clean(original[: found.start()])) or 76
    return [text[i : i + width] for i in range(0, len(text), width)], found.group(0)


def _encode_like(data: bytes, original: bytes) -> bytes:
    """Base64 of `data` in the style of the `original` run."""
    cleaned = _clean(original)
    urlsafe = b"-" in cleaned or b"_" in cleaned
    text = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    if len(cleaned) % 4:  # written without padding
        text = text.rstrip(b"=")
    # The characters the original escaped, escaped alike (`\/`, `\u002F`, ...).
    escapes = {bytes([int(m.group(1), 16)]): m.group(0) for m in _ESCAPE.finditer(original)}
    if b"\\/" in original:
        escapes.setdefault(b"/", b"\\/")
    lines, newline = _lines_like(text, original)
    if escapes and set(escapes) <= {b"/", b"+", b"="}:  # the usual ones: no escape holds another
        for char, escape in escapes.items():
            lines = [line.replace(char, escape) for line in lines]
    elif escapes:
        chars = re.compile(b"[" + re.escape(b"".join(escapes)) + b"]")
        lines = [chars.sub(lambda m: escapes[m.group(0)], line) for line in lines]
    return newline.join(lines)


def _hex_run(run: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, digits) if the run is hex digits (line breaks aside), else None."""
    if _ESCAPE.search(run) or b"\\/" in run:
        return None
    found = _HEX.fullmatch(_BREAK.sub(b"", run))
    if found is None:
        return None
    return found.group(1) or b"", found.group(2)


def _hex_like(data: bytes, original: bytes, prefix: bytes, digits: bytes) -> bytes:
    """Hex of `data` in the style of the `original` run: prefix, case, line width."""
    text = data.hex().encode()
    if re.search(rb"[A-F]", digits) and not re.search(rb"[a-f]", digits):
        text = text.upper()
    lines, newline = _lines_like(prefix + text, original)
    return newline.join(lines)


class _Found(NamedTuple):
    """A run to hand over: where it is, its bytes, their declared type, how to write new ones."""

    start: int
    end: int
    decoded: bytes
    declared: str | None
    encode: Callable[[bytes], bytes]


def rewrite_text(body: bytes, transform: Transform) -> tuple[bytes, list[Range]]:
    """Hand every image-like run of `body` (base64, hex, percent-encoded, byte arrays) to
    `transform`; returns the new body and the ranges of `body` that were decoded and handed over
    (searched: the caller needs not search their raw bytes again). Raises Base64Error."""
    out: list[bytes] = []
    handled: list[Range] = []
    last = 0
    for begin, found in _runs(body):
        handled.append((begin, found.end))
        new = transform(found.decoded, found.declared)
        if new is found.decoded:
            continue
        out += [body[last : found.start], found.encode(new)]
        last = found.end
    if not out:
        return body, handled
    out.append(body[last:])
    return b"".join(out), handled


def _runs(body: bytes) -> Iterator[tuple[int, _Found]]:
    """The runs of `body` to hand over, in order, each with where its text begins."""
    array, pct = b"[" in body, b"%" in body
    pattern, without_pct = _TOKENS[array, pct], _TOKENS[array, False]
    pos = floor = 0
    while (match := pattern.search(body, pos)) is not None:
        pos = match.end()
        found = _found(body, match, floor)
        if found is not None:
            floor = found.end
            yield min(match.start(), found.start), found
        elif match.lastgroup == "pct":
            # Not an image's bytes; its characters may still hold one (`%20/9j/4AAQ...`).
            inner = without_pct.search(body, match.start() + 1)
            while inner is not None and inner.start() < match.end():
                pos = max(pos, inner.end())
                found = _found(body, inner, floor)
                if found is not None:
                    floor = found.end
                    yield min(inner.start(), found.start), found
                inner = without_pct.search(body, inner.end())


def _found(body: bytes, match: re.Match[bytes], floor: int) -> _Found | None:
    if match.lastgroup == "array":
        return _byte_array(match)
    if match.lastgroup == "pct":
        return _percent_run(body, match, floor)
    return _hex_or_base64_run(body, match)


def _declared_type(body: bytes, start: int, url: re.Pattern[bytes]) -> str | None:
    """The media type of the `data:` URL whose payload starts at `start`, if it is one."""
    prefix = url.search(body, max(0, start - 300), start)
    if prefix is None:
        return None
    return _clean(prefix.group(1) or b"text/plain").decode().lower()


def _hex_or_base64_run(body: bytes, match: re.Match[bytes]) -> _Found | None:
    start = match.start()
    run = _wrapped_run(match.group(0))
    chars = _clean(run)
    declared = None
    if body[max(0, start - 7) : start].lower() == b"base64,":
        declared = _declared_type(body, start, _DATA_URL)
    hex_run = None if declared else _hex_run(run)
    if hex_run is not None:
        hex_prefix, digits = hex_run
        decoded = bytes.fromhex(digits.decode("ascii"))
        if not (sniff_image(decoded[:64], strict=True) or len(digits) >= SEARCH_RUNS_FROM):
            return None
        return _Found(
            start,
            start + len(run),
            decoded,
            None,
            lambda new: _hex_like(new, run, hex_prefix, digits),
        )
    image_head = _head_is_image(chars)
    if not (declared or image_head):
        # Characters glued before the base64 ("x/9j/4AAQ..."): an image may start a few in.
        skip = next((k for k in range(1, GLUED + 1) if _head_is_image(chars[k:])), 0)
        if skip and not re.search(rb"[\\\r\n]", run[:skip]):
            start, run, chars, image_head = start + skip, run[skip:], chars[skip:], True
    if not (declared or image_head or len(chars) >= SEARCH_RUNS_FROM):
        return None
    try:
        decoded = _decode(chars)
    except (binascii.Error, ValueError) as err:
        shorter = _without_last_line(run)
        try:
            decoded = _decode(_clean(shorter))
        except (binascii.Error, ValueError):
            if image_head or (declared or "").startswith("image/"):
                raise Base64Error(f"an image written as base64 does not decode ({err})") from None
            return None
        run = shorter
    return _Found(start, start + len(run), decoded, declared, lambda new: _encode_like(new, run))


def _percent_run(body: bytes, match: re.Match[bytes], floor: int) -> _Found | None:
    """Percent-encoded bytes: a `data:` URL without `;base64` (RFC 2397), or bare ones that
    start like an image, perhaps with a few of its bytes written as they are before the first
    escape (but not before `floor`, where the last run handed over ended)."""
    start, end = match.start(), match.end()
    declared = None
    if body[start - 1 : start] == b",":
        declared = _declared_type(body, start, _PLAIN_DATA_URL)
    if declared is None:
        lead = _PCT_LEAD.search(body, max(floor, start - PCT_LEAD_MAX), start)
        first = lead.start() if lead is not None else start
        start = next(
            (k for k in range(first, start + 1) if _percent_head_is_image(body[k:end])), -1
        )
        if start < 0:
            return None
    run = body[start:end]
    return _Found(start, end, unquote_to_bytes(run), declared, lambda new: _percent_like(new, run))


def _byte_array(match: re.Match[bytes]) -> _Found | None:
    """`[255, 216, 255, ...]`: handed over if it starts like an image or is long enough to hold
    one; written back with the same separator."""
    text = match.group(0)
    values = [int(v) for v in re.findall(rb"\d+", text)]
    if max(values) > 255:
        return None
    decoded = bytes(values)
    if not (sniff_image(decoded[:64], strict=True) or len(decoded) >= SEARCH_RUNS_FROM):
        return None
    comma = re.search(rb"\s*,\s*", text).group(0)
    head, tail = re.match(rb"\[\s*", text).group(0), re.search(rb"\s*\]$", text).group(0)

    def encode(new: bytes) -> bytes:
        return head + comma.join(str(b).encode() for b in new) + tail

    return _Found(match.start(), match.end(), decoded, None, encode)


def _percent_head_is_image(run: bytes) -> bool:
    return sniff_image(unquote_to_bytes(run[:192])[:64], strict=True) is not None


def _percent_like(data: bytes, original: bytes) -> bytes:
    """Percent-encoding of `data` in the style of the `original` run: the characters it left
    as they are stay so (letters, digits and `-._~` always do), escapes in its case."""
    literal = set(_ESCAPED.sub(b"", original).decode("ascii")) & set(_PCT_SAFE)
    text = quote_from_bytes(data, safe="".join(sorted(literal))).encode("ascii")
    if re.search(rb"%[0-9A-F]?[a-f]", original):
        text = _ESCAPED.sub(lambda m: m.group(0).lower(), text)
    return text


def rewrite_form(body: bytes, transform: Callable[[bytes], bytes]) -> tuple[bytes, list[Range]]:
    """Hand every value of a form-urlencoded body, percent-decoded, to `transform` (which
    searches it as a text field); changed values are percent-encoded again. Returns the new body
    and the value ranges (all of them searched)."""
    pieces: list[bytes] = []
    handled: list[Range] = []
    changed = False
    pos = 0
    for piece in body.split(b"&"):
        key, sep, value = piece.partition(b"=")
        start = pos + len(key) + 1
        pos += len(piece) + 1
        if sep:
            handled.append((start, start + len(value)))
            decoded = unquote_to_bytes(value.replace(b"+", b" "))
            new = transform(decoded)
            if new is not decoded:
                piece = key + b"=" + quote_from_bytes(new, safe="").encode("ascii")
                changed = True
        pieces.append(piece)
    return (b"&".join(pieces) if changed else body), handled
