"""Images written as text: base64 inside `data:` URLs or as bare strings (JSON fields, XML,
plain text), and form-urlencoded fields.

Only the runs that change are rewritten; every other byte of the body is kept. A base64 run is
found whatever surrounds it: JSON's escapes (`\\/`, `\\u002F`, any `\\u00XX` of a base64
character) and line breaks (literal, or JSON's `\\n` escape) may occur inside it and are kept in
the same style on output, as are the URL-safe alphabet and missing padding. A run is decoded
when it starts like an image (by strict magic bytes), when a `data:` URL declares its type, or
when it is long enough to hold an image somewhere inside (the caller then searches the decoded
bytes).
`transform(decoded, declared_type) -> bytes` does the rest and returns its input object when
nothing changed; this module knows no engine.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
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
_DATA_URL = re.compile(
    rb"data:([A-Za-z0-9!#$&^_.+-]+(?:/|\\/|\\u002[fF])[A-Za-z0-9!#$&^_.+-]+)?"
    rb"((?:;[A-Za-z0-9!#$&'*+.^_`|~=%-]+)*);base64,$",
    re.I,
)
_BREAK = re.compile(rb"\\r\\n|\\n|\r\n|\n")


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
    found = _BREAK.search(original)
    if found is not None:
        width = len(_clean(original[: found.start()])) or 76
        lines = [text[i : i + width] for i in range(0, len(text), width)]
    else:
        lines = [text]
    if escapes and set(escapes) <= {b"/", b"+", b"="}:  # the usual ones: no escape holds another
        for char, escape in escapes.items():
            lines = [line.replace(char, escape) for line in lines]
    elif escapes:
        chars = re.compile(b"[" + re.escape(b"".join(escapes)) + b"]")
        lines = [chars.sub(lambda m: escapes[m.group(0)], line) for line in lines]
    return (found.group(0) if found is not None else b"").join(lines)


def rewrite_text(body: bytes, transform: Transform) -> tuple[bytes, list[Range]]:
    """Hand every image-like base64 run of `body` to `transform`; returns the new body and the
    ranges of `body` that were decoded and handed over (searched: the caller needs not search
    their raw bytes again). Raises Base64Error."""
    out: list[bytes] = []
    handled: list[Range] = []
    last = 0
    for match in _RUN.finditer(body):
        start = match.start()
        run = _wrapped_run(match.group(0))
        chars = _clean(run)
        declared = None
        if body[max(0, start - 7) : start].lower() == b"base64,":
            prefix = _DATA_URL.search(body, max(0, start - 300), start)
            if prefix is not None:
                mime = _clean(prefix.group(1) or b"text/plain")
                declared = mime.decode().lower()
        image_head = _head_is_image(chars)
        if not (declared or image_head):
            # Characters glued before the base64 ("x/9j/4AAQ..."): an image may start a few in.
            skip = next((k for k in range(1, GLUED + 1) if _head_is_image(chars[k:])), 0)
            if skip and not re.search(rb"[\\\r\n]", run[:skip]):
                start, run, chars, image_head = start + skip, run[skip:], chars[skip:], True
        if not (declared or image_head or len(chars) >= SEARCH_RUNS_FROM):
            continue
        try:
            decoded = _decode(chars)
        except (binascii.Error, ValueError) as err:
            shorter = _without_last_line(run)
            try:
                decoded = _decode(_clean(shorter))
            except (binascii.Error, ValueError):
                if image_head or (declared or "").startswith("image/"):
                    raise Base64Error(
                        f"an image written as base64 does not decode ({err})"
                    ) from None
                continue
            run = shorter
        end = start + len(run)
        handled.append((match.start(), end))
        new = transform(decoded, declared)
        if new is decoded:
            continue
        out += [body[last:start], _encode_like(new, run)]
        last = end
    if not out:
        return body, handled
    out.append(body[last:])
    return b"".join(out), handled


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
