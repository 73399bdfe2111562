"""text_encodings: UTF-16 and UTF-32 bodies are told apart from UTF-8 and binary, and the codec
found writes them back byte for byte."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.uploads.text_encodings import charset, wide_codec

WIDE = ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]
BOM = {
    "utf-16-le": b"\xff\xfe",
    "utf-16-be": b"\xfe\xff",
    "utf-32-le": b"\xff\xfe\x00\x00",
    "utf-32-be": b"\x00\x00\xfe\xff",
}


def _upload(title: str, image: bytes) -> str:
    return json.dumps(
        {"title": title, "image": base64.b64encode(image).decode()}, ensure_ascii=False
    )


@settings(deadline=None, max_examples=200)
@given(
    st.text(max_size=40),
    st.binary(min_size=200, max_size=400),
    st.sampled_from(WIDE),
    st.sampled_from(["bom", "charset", "neither"]),
)
def test_wide_json_is_found_by_bom_charset_or_zeros(title, image, codec, told) -> None:
    text = _upload(title, image)
    data = (BOM[codec] if told == "bom" else b"") + text.encode(codec, "surrogatepass")
    content_type = f"application/json; charset={codec.replace('-le', 'le').replace('-be', 'be')}"
    found = wide_codec(data, content_type if told == "charset" else "application/json")
    assert found == codec
    assert data.decode(found, "surrogatepass").lstrip("\ufeff") == text


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=300).filter(lambda t: "\x00" not in t and not t.startswith("\ufeff")))
def test_utf8_text_is_not_wide(text: str) -> None:
    assert wide_codec(text.encode("utf-8", "surrogatepass"), "application/json") is None


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=600), st.sampled_from([None, "text/plain; charset=utf-16", "x/y"]))
def test_whatever_is_found_reads_and_writes_the_bytes_back(data: bytes, content_type) -> None:
    codec = wide_codec(data, content_type)
    if codec is not None:
        assert data.decode(codec, "surrogatepass").encode(codec, "surrogatepass") == data


def test_an_unordered_charset_without_bom_is_ordered_by_its_zeros() -> None:
    text = _upload("art", bytes(range(256)))
    assert wide_codec(text.encode("utf-16-le"), "application/json; charset=UTF-16") == "utf-16-le"
    assert wide_codec(text.encode("utf-32-be"), 'text/plain; charset="utf-32"') == "utf-32-be"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json; charset=UTF-16LE", "utf-16le"),
        ('text/plain;Charset="utf-8"', "utf-8"),
        ("application/json", ""),
        (None, ""),
    ],
)
def test_charset_parameter(content_type, expected) -> None:
    assert charset(content_type) == expected
