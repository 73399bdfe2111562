"""Request builders for the proxy tests, written independently of the code under test."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

BOUNDARY = "----sfumatoTestBoundary7MA4YWxkTrZu0gW"
MULTIPART_CT = f"multipart/form-data; boundary={BOUNDARY}"


def form_field(name: str, value: bytes) -> tuple[bytes, bytes]:
    return (f'Content-Disposition: form-data; name="{name}"'.encode(), value)


def file_field(name: str, filename: str, content_type: str, data: bytes) -> tuple[bytes, bytes]:
    head = (
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}"
    ).encode()
    return (head, data)


def multipart_body(*parts: tuple[bytes, bytes], boundary: str = BOUNDARY) -> bytes:
    dash = b"--" + boundary.encode()
    out = b""
    for head, body in parts:
        out += dash + b"\r\n" + head + b"\r\n\r\n" + body + b"\r\n"
    return out + dash + b"--\r\n"


def split_multipart(body: bytes, boundary: str = BOUNDARY) -> list[tuple[bytes, bytes]]:
    """(head, body) of every part, by plain splitting (the test oracle)."""
    dash = b"--" + boundary.encode()
    chunks = body.split(b"\r\n" + dash)
    first = chunks[0]
    assert first.startswith(dash + b"\r\n")
    chunks[0] = first[len(dash) + 2 :]
    parts = []
    for chunk in chunks[:-1]:
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        head, _, data = chunk.partition(b"\r\n\r\n")
        parts.append((head, data))
    assert chunks[-1].startswith(b"--")
    return parts


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def assert_protected(original: bytes, new: bytes) -> None:
    """`new` is `original` protected: other bytes, the marker, the same dimensions."""
    import perturb

    assert new != original
    assert perturb.inspect_marker(new) is not None
    assert decode(new).shape == decode(original).shape


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"
