"""Base64 `data:image/...` URLs inside JSON, form-urlencoded or plain text bodies.

Only the data URLs change; every other byte of the body is kept. In JSON the base64 may use the
`\\/` escape for `/` (kept in the same style on output); in forms the URL is percent-encoded.
`transform(image_bytes, mime) -> bytes` does the protection; this module knows no engine.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Literal
from urllib.parse import quote, unquote_plus

BodyKind = Literal["json", "form", "text"]
Transform = Callable[[bytes, str], bytes]


class DataUrlError(ValueError):
    """A data URL that claims to be a base64 image but does not decode."""


# data:image/png;base64,....  (parameters such as ;name=x.png allowed before ;base64)
_TEXT_RE = re.compile(
    rb"data:(image(?:/|\\/)[A-Za-z0-9.+-]+)((?:;[A-Za-z0-9!#$&+.^_`|~=-]+)*);base64,"
    rb"((?:[A-Za-z0-9+=]|\\?/)*)"
)
_FORM_PREFIX_RE = re.compile(r"^data:(image/[A-Za-z0-9.+-]+)((?:;[^;,]+)*);base64,(.*)$", re.S)


def _decode(payload: bytes) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise DataUrlError(f"a data:image URL is not valid base64 ({err})") from None


def _rewrite_text(body: bytes, transform: Transform, json_escapes: bool) -> tuple[bytes, int]:
    out: list[bytes] = []
    last = 0
    count = 0
    for match in _TEXT_RE.finditer(body):
        payload = match.group(3)
        if not payload:
            continue
        escaped = b"\\/" in payload
        if escaped and not json_escapes:
            continue
        raw = payload.replace(b"\\/", b"/") if json_escapes else payload
        if b"\\" in raw:
            continue
        mime = match.group(1).decode("ascii").replace("\\/", "/")
        new = base64.b64encode(transform(_decode(raw), mime))
        if escaped:
            new = new.replace(b"/", b"\\/")
        out.append(body[last : match.start(3)])
        out.append(new)
        last = match.end(3)
        count += 1
    if not count:
        return body, 0
    out.append(body[last:])
    return b"".join(out), count


def _rewrite_form(body: bytes, transform: Transform) -> tuple[bytes, int]:
    pieces = body.split(b"&")
    count = 0
    for i, piece in enumerate(pieces):
        key, sep, value = piece.partition(b"=")
        if not sep:
            continue
        text = unquote_plus(value.decode("latin-1"), encoding="latin-1")
        match = _FORM_PREFIX_RE.match(text)
        if not match:
            continue
        payload = re.sub(r"\s", "", match.group(3)).encode("latin-1")
        image = transform(_decode(payload), match.group(1))
        url = f"data:{match.group(1)}{match.group(2)};base64,{base64.b64encode(image).decode()}"
        pieces[i] = key + b"=" + quote(url, safe="").encode("ascii")
        count += 1
    return (b"&".join(pieces), count) if count else (body, 0)


def rewrite_data_urls(body: bytes, kind: BodyKind, transform: Transform) -> tuple[bytes, int]:
    """Replace every base64 image data URL in the body; returns (new body, how many).

    Raises DataUrlError for a data:image URL whose base64 is invalid; `transform` may raise.
    """
    if kind == "form":
        return _rewrite_form(body, transform)
    return _rewrite_text(body, transform, json_escapes=(kind == "json"))


def body_kind(content_type: str) -> BodyKind | None:
    """Which data-URL syntax a Content-Type implies, or None for bodies without text."""
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct == "application/x-www-form-urlencoded":
        return "form"
    if ct == "application/json" or ct.endswith("+json"):
        return "json"
    if ct.startswith("text/"):
        return "text"
    return None
