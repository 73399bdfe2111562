"""text_images: base64 images in data: URLs and bare strings, in JSON, form and text bodies;
only the changed runs are rewritten, in the style they were written."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import parse_qs, quote, quote_from_bytes, unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.uploads import text_images

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
# SOI, a JFIF APP0 segment, the next marker
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xdb"


def _flip(data: bytes, mime: str | None) -> bytes:
    return b"NEW:" + (mime or "bare").encode() + b":" + data[::-1]


def _keep(data: bytes, mime: str | None) -> bytes:
    return data


def test_json_data_url_is_replaced_and_the_rest_is_kept() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    body = json.dumps({"title": "art", "image": url, "n": 1}, indent=2).encode()
    new, handled = text_images.rewrite_text(body, _flip)
    assert len(handled) == 1
    doc = json.loads(new)
    assert doc["title"] == "art" and doc["n"] == 1
    prefix, payload = doc["image"].split(",", 1)
    assert prefix == "data:image/png;base64"
    assert base64.b64decode(payload) == _flip(PNG, "image/png")
    # everything outside the URL payload is byte-identical
    assert new.startswith(body[: body.index(b"base64,") + 7])
    assert new.endswith(body[body.index(b'",\n  "n"') :])


def test_bare_base64_image_in_json_is_found() -> None:
    body = json.dumps({"photo": base64.b64encode(PNG).decode(), "id": "a" * 40}).encode()
    new, handled = text_images.rewrite_text(body, _flip)
    assert base64.b64decode(json.loads(new)["photo"]) == _flip(PNG, None)
    assert json.loads(new)["id"] == "a" * 40 and len(handled) == 1


def test_json_escaped_slashes_are_decoded_and_kept_escaped() -> None:
    payload = base64.b64encode(b"\xff\xd8\xff" + b"\xfb\xff" * 50).decode()
    assert "/" in payload
    # PHP-style JSON escapes every slash, in the mime type too
    body = ('{"img":"data:image\\/jpeg;base64,' + payload.replace("/", "\\/") + '"}').encode()
    seen: list[tuple[bytes, str | None]] = []

    def keep(data: bytes, mime: str | None) -> bytes:
        seen.append((data, mime))
        return data

    new, _ = text_images.rewrite_text(body, keep)
    assert seen == [(base64.b64decode(payload), "image/jpeg")]
    assert new == body
    flipped, _ = text_images.rewrite_text(body, _flip)
    encoded = json.loads(flipped)["img"].split(",", 1)[1]
    assert "\\/" in flipped.decode() and base64.b64decode(encoded) == _flip(
        base64.b64decode(payload), "image/jpeg"
    )


def _json_escaped(text: str, chars: str, spelling: str) -> str:
    """`text` as a JSON string body with each of `chars` written as a \\u escape."""
    return "".join(spelling % ord(c) if c in chars else c for c in text)


@pytest.mark.parametrize(
    ("chars", "spelling"),
    [("/", "\\u%04x"), ("/+=", "\\u%04X"), ("".join(map(chr, range(32, 127))), "\\u%04x")],
    ids=["slashes", "slash-plus-equals", "everything"],
)
def test_json_unicode_escapes_are_decoded_and_kept_in_their_style(chars, spelling) -> None:
    """.NET, Java and other encoders write `/`, `+` or every character as \\u00XX: the same
    JSON string, so the same image."""
    image = b"\xff\xd8\xff\xe0\x00\x02\xff\xdb\x00" + b"\xfb\xef\xbe\xff\xff\xff" * 30 + b"\xd9"
    payload = base64.b64encode(image).decode()
    assert "/" in payload and "+" in payload
    for value in (payload, "data:image/jpeg;base64," + payload):
        body = ('{"img":"' + _json_escaped(value, chars, spelling) + '"}').encode()
        assert json.loads(body)["img"] == value
        seen: list[tuple[bytes, str | None]] = []

        def keep(data: bytes, mime: str | None, seen=seen) -> bytes:
            seen.append((data, mime))
            return data

        new, handled = text_images.rewrite_text(body, keep)
        assert new == body and len(handled) == 1
        assert seen[0][0] == image
        flipped, _ = text_images.rewrite_text(body, _flip)
        written = json.loads(flipped)["img"]
        assert written.startswith(value[: value.index(",") + 1] if "," in value else "")
        assert base64.b64decode(written.split(",")[-1]) == _flip(image, seen[0][1])
        assert "\\u" in flipped.decode()  # written in the same style


def test_wrapped_base64_keeps_its_line_width_and_the_text_after_it() -> None:
    encoded = base64.b64encode(PNG)
    lines = b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    body = b"<xml><img>" + lines + b"</img>\r\nafter</xml>"
    new, _ = text_images.rewrite_text(body, _flip)
    payload = new[len(b"<xml><img>") : new.index(b"</img>")]
    assert all(len(line) == 76 for line in payload.split(b"\r\n")[:-1])
    assert base64.b64decode(payload.replace(b"\r\n", b"")) == _flip(PNG, None)
    assert new.endswith(b"</img>\r\nafter</xml>")


def test_urlsafe_and_unpadded_base64_is_read_and_written_alike() -> None:
    image = PNG + b"\xfb\xff"  # makes '-' and '_' appear
    encoded = base64.urlsafe_b64encode(image).rstrip(b"=")
    new, _ = text_images.rewrite_text(b'{"i":"' + encoded + b'"}', _flip)
    out = json.loads(new)["i"].encode()
    assert b"=" not in out and b"+" not in out and b"/" not in out
    assert base64.urlsafe_b64decode(out + b"=" * (-len(out) % 4)) == _flip(image, None)


def test_form_field_is_decoded_and_encoded_again() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    body = b"a=1&image=" + quote(url, safe="").encode() + b"&b=x%20y"
    seen: list[bytes] = []

    def field(value: bytes) -> bytes:
        seen.append(value)
        return value.upper() if value.startswith(b"data:") else value

    new, handled = text_images.rewrite_form(body, field)
    assert seen == [b"1", url.encode(), b"x y"] and len(handled) == 3
    assert new.startswith(b"a=1&image=") and new.endswith(b"&b=x%20y")
    assert parse_qs(new.decode())["image"][0] == url.upper()


def test_runs_that_are_not_images_are_left_alone() -> None:
    body = b'{"text": "data:text/plain;base64,aGk=", "token": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"}'
    assert text_images.rewrite_text(body, _flip)[0] == body


def test_an_image_in_base64_that_does_not_decode_raises() -> None:
    with pytest.raises(text_images.Base64Error):
        text_images.rewrite_text(b'{"i":"data:image/png;base64,abcdefghijklmnopq"}', _flip)
    truncated = base64.b64encode(PNG)[:101]
    with pytest.raises(text_images.Base64Error):
        text_images.rewrite_text(b'{"i":"' + truncated + b'"}', _flip)


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=600))
def test_random_bodies_never_crash_and_identity_keeps_them(body: bytes) -> None:
    try:
        new, _ = text_images.rewrite_text(body, _keep)
    except text_images.Base64Error:
        return
    assert new == body
    assert text_images.rewrite_form(body, lambda value: value)[0] == body


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=200), st.binary(min_size=12, max_size=200), st.text(max_size=200))
def test_identity_transform_keeps_json_bytes(before: str, image: bytes, after: str) -> None:
    url = "data:image/webp;base64," + base64.b64encode(image).decode()
    body = json.dumps({"a": before, "img": url, "z": after}).encode()
    new, handled = text_images.rewrite_text(body, _keep)
    assert new == body
    assert handled  # the data URL was decoded and handed over


def _hex_text(data: bytes, prefix: bytes, upper: bool, width: int | None, newline: bytes) -> bytes:
    text = prefix + (data.hex().upper() if upper else data.hex()).encode()
    if width is None:
        return text
    return newline.join(text[i : i + width] for i in range(0, len(text), width))


@settings(deadline=None, max_examples=150)
@given(
    st.binary(min_size=4, max_size=300),
    st.sampled_from([b"", b"0x", b"\\\\x"]),  # bare, SQL-style, PostgREST's bytea in JSON
    st.booleans(),
    st.sampled_from([None, 60, 64]),  # xxd -p wraps at 60
    st.sampled_from([b"\n", b"\\n", b"\r\n"]),
)
def test_hex_images_are_read_and_written_in_their_style(
    tail: bytes, prefix: bytes, upper: bool, width: int | None, newline: bytes
) -> None:
    image = PNG[:8] + tail
    written = _hex_text(image, prefix, upper, width, newline)
    body = b'{"title":"art","data":"' + written + b'","n":1}'
    seen: list[bytes] = []

    def flip(data: bytes, mime: str | None) -> bytes:
        seen.append(data)
        return _flip(data, mime)

    new, handled = text_images.rewrite_text(body, flip)
    assert seen == [image] and len(handled) == 1
    assert new.startswith(b'{"title":"art","data":"') and new.endswith(b'","n":1}')
    out = new[len(b'{"title":"art","data":"') : -len(b'","n":1}')]
    wrapped = width if newline in written else None  # a one-line original says no width
    assert out == _hex_text(_flip(image, None), prefix, upper, wrapped, newline)


def test_hex_that_is_not_an_image_is_searched_and_left_alone() -> None:
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    body = json.dumps({"sha256": digest, "short": "deadbeef"}).encode()
    seen: list[bytes] = []

    def keep(data: bytes, mime: str | None) -> bytes:
        seen.append(data)
        return data

    new, handled = text_images.rewrite_text(body, keep)
    assert new == body
    assert seen == [bytes.fromhex(digest)] and len(handled) == 1  # long: searched for images


@settings(deadline=None, max_examples=150)
@given(
    st.binary(min_size=4, max_size=300),
    st.sampled_from(["", "!*'()", "/+:;,@$"]),  # quote(safe=""), encodeURIComponent, by hand
    st.booleans(),
    st.booleans(),
)
def test_percent_encoded_images_are_read_and_written_in_their_style(
    tail: bytes, safe: str, lower: bool, data_url: bool
) -> None:
    def percent(data: bytes) -> bytes:
        text = quote_from_bytes(data, safe=safe).encode()
        return re.sub(rb"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text) if lower else text

    image = JPEG_HEAD + tail
    prefix = b'{"i":"data:image/jpeg,' if data_url else b'{"i":"'
    written = percent(image)
    body = prefix + written + b'","n":1}'
    seen: list[tuple[bytes, str | None]] = []

    def flip(data: bytes, mime: str | None) -> bytes:
        seen.append((data, mime))
        return _flip(data, mime)

    new, handled = text_images.rewrite_text(body, flip)
    assert seen == [(image, "image/jpeg" if data_url else None)] and len(handled) == 1
    assert new.startswith(prefix) and new.endswith(b'","n":1}')
    out = new[len(prefix) : -len(b'","n":1}')]
    assert unquote_to_bytes(out) == _flip(*seen[0])
    # In its style: what the original left as it was stays so, what it escaped is escaped,
    # in the same case.
    kept = set(re.sub(rb"%[0-9A-Fa-f]{2}", b"", written))
    escaped = {int(m, 16) for m in re.findall(rb"%([0-9A-Fa-f]{2})", written)}
    assert kept <= set(re.sub(rb"%[0-9A-Fa-f]{2}", b"", out)) | set(b"NEW:bare")
    assert not escaped & set(re.sub(rb"%[0-9A-Fa-f]{2}", b"", out))
    assert (re.search(rb"%[0-9A-F]?[a-f]", out) is not None) == lower


def test_a_percent_encoded_svg_data_url_is_handed_over_with_its_type() -> None:
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/png;base64,iVBO"/></svg>'
    )
    body = b'{"icon":"data:image/svg+xml,' + quote_from_bytes(svg).encode() + b'"}'
    seen: list[tuple[bytes, str | None]] = []
    text_images.rewrite_text(body, lambda data, mime: seen.append((data, mime)) or data)
    assert seen == [(svg, "image/svg+xml")]


def test_text_with_a_few_escapes_is_left_alone() -> None:
    body = b'{"url":"https://example.com/a%20b%2Fc?q=%E6%97%A5","note":"100%25 done"}'
    assert text_images.rewrite_text(body, _flip) == (body, [])


@settings(deadline=None, max_examples=100)
@given(st.binary(min_size=16, max_size=300), st.sampled_from([",", ", ", " , "]))
def test_json_byte_arrays_are_read_and_written_with_their_separator(tail, comma) -> None:
    image = PNG[:8] + tail
    array = ("[" + comma.join(str(b) for b in image) + "]").encode()
    body = b'{"type":"Buffer","data":' + array + b"}"
    new, handled = text_images.rewrite_text(body, _flip)
    assert len(handled) == 1
    flipped = _flip(image, None)
    assert (
        new == b'{"type":"Buffer","data":[' + comma.join(str(b) for b in flipped).encode() + b"]}"
    )


def test_arrays_that_are_not_bytes_are_left_alone() -> None:
    seen: list[bytes] = []
    body = json.dumps({"ids": list(range(200, 300)), "few": [137, 80, 78, 71]}).encode()
    assert text_images.rewrite_text(body, lambda d, m: seen.append(d) or d)[0] == body
    assert seen == []


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_percent_encoded_images_whose_first_bytes_are_letters_are_found(fmt: str) -> None:
    """`GIF89a` and `RIFF....WEBPVP8` need no escape: the run starts before its first `%`."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 97), (200, 30, 90)).save(out, fmt)
    image = out.getvalue()
    body = b'{"id":"x1","img":"' + quote_from_bytes(image, safe="").encode() + b'"}'
    seen: list[bytes] = []
    new, _ = text_images.rewrite_text(body, lambda d, m: seen.append(d) or _flip(d, m))
    assert seen == [image]
    assert (
        new
        == b'{"id":"x1","img":"' + quote_from_bytes(_flip(image, None), safe="").encode() + b'"}'
    )


def test_base64_behind_an_escape_is_still_found() -> None:
    """A percent run that is no image's bytes gives its characters back to the base64 search."""
    image = JPEG_HEAD + bytes(range(256))
    for glue in (b"%20", b"%2", b"100%25"):
        body = b'{"a":"' + glue + base64.b64encode(image) + b'"}'
        seen: list[bytes] = []
        text_images.rewrite_text(body, lambda d, m, seen=seen: seen.append(d) or d)
        assert seen == [image], glue


@settings(deadline=None, max_examples=400)
@given(
    st.lists(
        st.sampled_from(
            [b"%", b"%2", b"%FF", b"%d8", b"[", b"]", b",", b", ", b"255", b"137", b"0x", b"\\x"]
            + [b"ff", b"D8", b"89504e47", b"/9j/", b"iVBOR", b"AAAA", b"=", b"\\n", b"\n", b'"']
            + [b"data:image/png,", b"data:,", b"data:image/jpeg;base64,", b"GIF89a", b"RIFF"]
        ),
        max_size=80,
    )
)
def test_text_made_of_the_notations_pieces_never_crashes(pieces: list[bytes]) -> None:
    body = b"".join(pieces)
    try:
        new, handled = text_images.rewrite_text(body, _keep)
    except text_images.Base64Error:
        return
    assert new == body
    assert all(0 <= a < b <= len(body) for a, b in handled)
    flipped, _ = text_images.rewrite_text(body, _flip)  # every notation's writer runs too
    if handled:
        first, last = handled[0][0], handled[-1][1]
        assert flipped.startswith(body[:first]) and flipped.endswith(body[last:])


def test_a_percent_encoded_image_whose_first_bytes_include_any_literal_character_is_found():
    """RIFF's size bytes may be `:` or `@`, which hand-written data URLs leave as they are."""
    image = b"RIFF:@\x00\x00WEBPVP8 " + bytes(range(256))
    body = b'{"img":"' + quote_from_bytes(image, safe="/+:;,@$").encode() + b'"}'
    seen: list[bytes] = []
    text_images.rewrite_text(body, lambda d, m: seen.append(d) or d)
    assert seen == [image]
