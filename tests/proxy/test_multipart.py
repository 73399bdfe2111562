"""multipart: byte-exact parse/rebuild, part access, and robustness on arbitrary input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.uploads import multipart

CT = "multipart/form-data; boundary=----WebKitFormBoundaryX3b9"
B = b"------WebKitFormBoundaryX3b9"


def _body(*parts: tuple[bytes, bytes], epilogue: bytes = b"\r\n") -> bytes:
    out = b""
    for head, body in parts:
        out += B + b"\r\n" + head + b"\r\n\r\n" + body + b"\r\n"
    return out + B + b"--" + epilogue


def test_parses_parts_with_names_filenames_and_types() -> None:
    png = b"\x89PNG\r\n\x1a\n\r\n\r\n--binary\r\n\x00\xff"
    body = _body(
        (b'Content-Disposition: form-data; name="csrf_token"', b"abc"),
        (
            b'Content-Disposition: form-data; name="upload_file"; filename="art.png"\r\n'
            b"Content-Type: image/png",
            png,
        ),
    )
    form = multipart.parse(body, CT)
    assert [p.name for p in form.parts] == ["csrf_token", "upload_file"]
    assert form.parts[1].filename == "art.png"
    assert form.parts[1].content_type == "image/png"
    assert form.parts[1].body == png  # CR/LF inside the binary part survive
    assert form.to_bytes() == body


def test_replacing_one_part_keeps_every_other_byte() -> None:
    body = _body(
        (b'Content-Disposition: form-data; name="a"', b"first"),
        (b'Content-Disposition: form-data; name="f"; filename="x.jpg"', b"\xff\xd8\xffold"),
        (b'Content-Disposition: form-data; name="b"', b"last"),
    )
    form = multipart.parse(body, CT).with_body(1, b"\xff\xd8\xffNEW-LONGER")
    assert form.to_bytes() == body.replace(b"\xff\xd8\xffold", b"\xff\xd8\xffNEW-LONGER")


def test_preamble_padding_and_epilogue_are_kept() -> None:
    body = (
        b"preamble text\r\n"
        + B
        + b"  \t\r\n"
        + b'Content-Disposition: form-data; name="a"\r\n\r\nvalue\r\n'
        + B
        + b"--\r\nepilogue\r\n"
    )
    form = multipart.parse(body, CT)
    assert [p.body for p in form.parts] == [b"value"]
    assert form.to_bytes() == body


def test_quoted_boundary_and_lookalike_boundary_in_data() -> None:
    ct = 'multipart/form-data; boundary="abc def"'
    body = (
        b"--abc def\r\n"
        b'Content-Disposition: form-data; name="a"\r\n\r\n'
        b"line\r\n--abc defX not a delimiter\r\n"
        b"--abc def--"
    )
    form = multipart.parse(body, ct)
    assert form.parts[0].body == b"line\r\n--abc defX not a delimiter"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"no boundary here",
        B + b"--",
        B + b"\r\nContent-Disposition: form-data\r\n\r\nunterminated",
        B + b"\r\nheaders without end",
    ],
)
def test_malformed_bodies_raise(body: bytes) -> None:
    with pytest.raises(multipart.MultipartError):
        multipart.parse(body, CT)


def test_content_type_without_boundary_raises() -> None:
    assert multipart.boundary_from_content_type("multipart/form-data") is None
    assert multipart.boundary_from_content_type("application/json; boundary=x") is None
    with pytest.raises(multipart.MultipartError):
        multipart.parse(_body((b"", b"x")), "multipart/form-data")


def test_new_body_containing_the_boundary_is_rejected() -> None:
    form = multipart.parse(_body((b'Content-Disposition: form-data; name="a"', b"x")), CT)
    with pytest.raises(multipart.MultipartError):
        form.with_body(0, b"evil\r\n" + B + b"--")


# --- properties -----------------------------------------------------------------------------

boundaries = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'()+_,-./:=?",
    min_size=1,
    max_size=70,
)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_[]0123456789", min_size=1, max_size=12)
part_bodies = st.binary(max_size=300)
padding = st.sampled_from([b"", b" ", b"\t", b"  \t"])
extra_headers = st.sampled_from(
    [b"", b"\r\nContent-Type: text/plain", b"\r\nContent-Type: application/octet-stream"]
)


@st.composite
def multipart_bodies(draw) -> tuple[str, bytes, list[bytes]]:
    boundary = draw(boundaries)
    dash = b"--" + boundary.encode()
    n = draw(st.integers(min_value=1, max_value=6))
    preamble = draw(st.sampled_from([b"", b"preamble\r\n", b"\r\n"]))
    out = preamble
    bodies: list[bytes] = []
    for _ in range(n):
        body = draw(part_bodies)
        # RFC 2046: the delimiter never occurs inside a part.
        while dash in body:
            body = body.replace(dash, b"")
        name = draw(names).encode()
        filename = draw(st.sampled_from([b"", b'; filename="f.bin"', b'; filename="a b.txt"']))
        head = b'Content-Disposition: form-data; name="' + name + b'"' + filename
        head += draw(extra_headers)
        out += dash + draw(padding) + b"\r\n" + head + b"\r\n\r\n" + body + b"\r\n"
        bodies.append(body)
    out += dash + b"--" + draw(st.sampled_from([b"", b"\r\n", b"\r\nepilogue"]))
    return boundary, out, bodies


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(multipart_bodies())
def test_random_multipart_bodies_round_trip_byte_exact(case) -> None:
    boundary, body, bodies = case
    form = multipart.parse(body, f'multipart/form-data; boundary="{boundary}"')
    assert form.to_bytes() == body
    assert [p.body for p in form.parts] == bodies


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=500), boundaries)
def test_random_bytes_never_crash_the_parser(data: bytes, boundary: str) -> None:
    try:
        form = multipart.parse(data, f'multipart/form-data; boundary="{boundary}"')
    except multipart.MultipartError:
        return
    assert form.to_bytes() == data


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=200))
def test_random_content_types_never_crash(content_type: str) -> None:
    boundary = multipart.boundary_from_content_type(content_type)
    assert boundary is None or 1 <= len(boundary) <= 70


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(multipart_bodies(), st.data())
def test_mutated_bodies_parse_exactly_or_raise(case, data) -> None:
    boundary, body, _ = case
    position = data.draw(st.integers(0, len(body)))
    action = data.draw(st.sampled_from(["insert", "delete", "truncate"]))
    if action == "insert":
        mutated = body[:position] + data.draw(st.binary(min_size=1, max_size=8)) + body[position:]
    elif action == "delete":
        mutated = body[:position] + body[position + data.draw(st.integers(1, 8)) :]
    else:
        mutated = body[:position]
    try:
        form = multipart.parse(mutated, f'multipart/form-data; boundary="{boundary}"')
    except multipart.MultipartError:
        return
    assert form.to_bytes() == mutated
