"""multipart/form-data, parsed and rebuilt byte-exact.

mitmproxy's own helpers lose CR/LF inside file parts and drop per-part headers, so this parser
keeps every byte: the preamble and first delimiter line, each part's raw header block and body,
each delimiter line exactly as sent (transport padding included), and the epilogue.
`Multipart.to_bytes()` of an unmodified parse is the original body; replacing a part's body
changes nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from email.message import Message


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


_BOUNDARY_CHARS = re.compile(rb"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")


def boundary_from_content_type(content_type: str) -> str | None:
    """The boundary parameter of a multipart Content-Type, or None."""
    if not content_type.lower().lstrip().startswith("multipart/"):
        return None
    msg = Message()
    msg["content-type"] = content_type
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        return None
    try:
        encoded = boundary.encode("ascii")
    except UnicodeEncodeError:
        return None
    return boundary if _BOUNDARY_CHARS.match(encoded) else None


def _header_params(value: str) -> dict[str, str]:
    msg = Message()
    msg["content-disposition"] = value
    params = msg.get_params(header="content-disposition") or []
    out: dict[str, str] = {}
    for key, val in params[1:]:
        if isinstance(val, tuple):  # RFC 2231 encoded
            val = val[2]
        out[key.lower()] = str(val)
    return out


@dataclass(frozen=True)
class Part:
    """One part: its raw header block (through the blank line), its body, and what follows it
    up to and including the next delimiter line (or the close delimiter and epilogue)."""

    head: bytes
    body: bytes
    tail: bytes

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The part's headers (decoded leniently; the raw block is what is kept)."""
        out: list[tuple[str, str]] = []
        for line in self.head.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep and name.strip():
                out.append((name.strip().lower(), value.strip()))
        return out

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def name(self) -> str | None:
        disposition = self.header("content-disposition")
        return _header_params(disposition).get("name") if disposition else None

    @property
    def filename(self) -> str | None:
        disposition = self.header("content-disposition")
        return _header_params(disposition).get("filename") if disposition else None

    @property
    def content_type(self) -> str | None:
        return self.header("content-type")


@dataclass(frozen=True)
class Multipart:
    """A parsed multipart body: `prefix` (preamble + first delimiter line) and the parts."""

    boundary: str
    prefix: bytes
    parts: tuple[Part, ...]

    def to_bytes(self) -> bytes:
        return self.prefix + b"".join(p.head + p.body + p.tail for p in self.parts)

    def body_ranges(self) -> list[tuple[int, int]]:
        """Where each part's body lies in the parsed bytes (start, end)."""
        ranges = []
        pos = len(self.prefix)
        for part in self.parts:
            start = pos + len(part.head)
            ranges.append((start, start + len(part.body)))
            pos = start + len(part.body) + len(part.tail)
        return ranges

    def with_body(self, index: int, body: bytes) -> Multipart:
        """A copy with part `index`'s body replaced (everything else byte-identical)."""
        if b"\r\n--" + self.boundary.encode() in body:
            raise MultipartError("the new part body contains the boundary")
        parts = list(self.parts)
        parts[index] = replace(parts[index], body=body)
        return replace(self, parts=tuple(parts))


def _delimiter_line_end(body: bytes, pos: int) -> int | None:
    """After `--boundary` at pos: the end of the delimiter line (padding + CRLF), else None."""
    end = pos
    while end < len(body) and body[end] in b" \t":
        end += 1
    if body.startswith(b"\r\n", end):
        return end + 2
    return None


def _next_after_crlf(body: bytes, dash: bytes, start: int) -> int:
    found = body.find(b"\r\n" + dash, start)
    return found + 2 if found >= 0 else -1


def parse(body: bytes, content_type: str) -> Multipart:
    """Parse a multipart body; raises MultipartError for anything malformed."""
    boundary = boundary_from_content_type(content_type)
    if boundary is None:
        raise MultipartError(
            f"not a multipart Content-Type with a valid boundary: {content_type!r}"
        )
    dash = b"--" + boundary.encode("ascii")
    # First delimiter: at the very start, or after a CRLF (anything before is preamble).
    candidate = 0 if body.startswith(dash) else _next_after_crlf(body, dash, 0)
    while True:
        if candidate < 0:
            raise MultipartError("the boundary does not occur in the body")
        after = candidate + len(dash)
        if body.startswith(b"--", after):
            raise MultipartError("the body has no parts")
        line_end = _delimiter_line_end(body, after)
        if line_end is not None:
            break
        candidate = _next_after_crlf(body, dash, candidate + 1)
    prefix = body[:line_end]
    pos = line_end
    parts: list[Part] = []
    delim = b"\r\n" + dash
    while True:
        if body.startswith(b"\r\n", pos):
            head_end = pos + 2  # a part without headers
        else:
            found = body.find(b"\r\n\r\n", pos)
            if found < 0:
                raise MultipartError("a part's headers are not terminated")
            head_end = found + 4
        if delim in body[pos:head_end]:
            raise MultipartError("a part's headers run into the next boundary")
        search = head_end
        while True:
            found = body.find(delim, search)
            if found < 0:
                raise MultipartError("the body ends without a closing boundary")
            after = found + len(delim)
            if body.startswith(b"--", after):
                parts.append(Part(body[pos:head_end], body[head_end:found], body[found:]))
                return Multipart(boundary, prefix, tuple(parts))
            line_end = _delimiter_line_end(body, after)
            if line_end is not None:
                break
            search = found + 1
        parts.append(Part(body[pos:head_end], body[head_end:found], body[found:line_end]))
        pos = line_end
