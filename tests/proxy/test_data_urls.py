"""data_urls: only the base64 image data URLs change, in JSON, form and text bodies."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.uploads import text_images as data_urls

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3


def _flip(data: bytes, mime: str) -> bytes:
    return b"NEW:" + mime.encode() + b":" + data[::-1]


def test_json_data_url_is_replaced_and_the_rest_is_kept() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    body = json.dumps({"title": "art", "image": url, "n": 1}, indent=2).encode()
    new, count = data_urls.rewrite_data_urls(body, "json", _flip)
    assert count == 1
    doc = json.loads(new)
    assert doc["title"] == "art" and doc["n"] == 1
    prefix, payload = doc["image"].split(",", 1)
    assert prefix == "data:image/png;base64"
    assert base64.b64decode(payload) == _flip(PNG, "image/png")
    # everything outside the URL payload is byte-identical
    assert new.startswith(body[: body.index(b"base64,") + 7])
    assert new.endswith(body[body.index(b'",\n  "n"') :])


def test_json_escaped_slashes_are_decoded_and_kept_escaped() -> None:
    payload = base64.b64encode(b"\xff\xd8\xff" + b"\xfb\xff" * 50).decode()
    assert "/" in payload
    # PHP-style JSON escapes every slash, in the mime type too
    body = ('{"img":"data:image\\/jpeg;base64,' + payload.replace("/", "\\/") + '"}').encode()
    seen: list[tuple[bytes, str]] = []

    def keep(data: bytes, mime: str) -> bytes:
        seen.append((data, mime))
        return data

    new, count = data_urls.rewrite_data_urls(body, "json", keep)
    assert count == 1 and seen == [(base64.b64decode(payload), "image/jpeg")]
    assert new == body
    assert json.loads(new)["img"].endswith(payload)


def test_form_field_data_url_is_replaced_percent_encoded() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    body = b"a=1&image=" + quote(url, safe="").encode() + b"&b=x%20y"
    new, count = data_urls.rewrite_data_urls(body, "form", _flip)
    assert count == 1
    assert new.startswith(b"a=1&image=") and new.endswith(b"&b=x%20y")
    fields = parse_qs(new.decode())
    assert base64.b64decode(fields["image"][0].split(",", 1)[1]) == _flip(PNG, "image/png")


def test_bodies_without_data_urls_are_returned_unchanged() -> None:
    body = b'{"text": "data:text/plain;base64,aGk=", "x": "data:image/png;base64,"}'
    assert data_urls.rewrite_data_urls(body, "json", _flip) == (body, 0)


def test_invalid_base64_raises() -> None:
    with pytest.raises(data_urls.DataUrlError):
        data_urls.rewrite_data_urls(b'{"i":"data:image/png;base64,abc"}', "json", _flip)


def test_body_kind_from_content_type() -> None:
    assert data_urls.body_kind("application/json; charset=utf-8") == "json"
    assert data_urls.body_kind("application/vnd.api+json") == "json"
    assert data_urls.body_kind("application/x-www-form-urlencoded") == "form"
    assert data_urls.body_kind("text/plain") == "text"
    assert data_urls.body_kind("image/png") is None


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=600), st.sampled_from(["json", "form", "text"]))
def test_random_bodies_never_crash(body: bytes, kind: str) -> None:
    try:
        new, count = data_urls.rewrite_data_urls(body, kind, lambda d, m: d)
    except data_urls.DataUrlError:
        return
    if count == 0:
        assert new == body


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=200), st.binary(min_size=1, max_size=200), st.text(max_size=200))
def test_identity_transform_keeps_json_bytes(before: str, image: bytes, after: str) -> None:
    url = "data:image/webp;base64," + base64.b64encode(image).decode()
    body = json.dumps({"a": before, "img": url, "z": after}).encode()
    new, count = data_urls.rewrite_data_urls(body, "json", lambda d, m: d)
    assert new == body
    assert count >= 1
