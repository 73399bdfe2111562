"""Fuzz: valid uploads, mutated -- multipart framing (boundaries, transport padding, preambles and
epilogues, header spellings, nesting, transfer-encoded parts), transfer encodings (chunked,
gzip/deflate/br), appended data (inside a part, after the closing boundary, after a raw image,
before the image) and embedded previews (a second image in another part, a field, a data URL)
-- sent through a real mitmproxy with the addon. On every example the site receives nothing, or
each image the browser sent arrives with decoded pixels that differ from the original and none
of the original's bytes, plain or base64.

Previews inside the image file (EXIF thumbnails, comments, XMP, an image after its end) are the
engine's to regenerate; the second test holds them to the same invariant (what the engine would
carry over unchanged, the proxy refuses), in files protected before uploading too. The last one
holds the other half of the promise: requests without images reach the site byte for byte."""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import gzip
import io
import json
import quopri
import re
import ssl
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_to_bytes

import brotli
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from perturb.image_kinds import image_offsets, sniff_image
from tests.proxy.e2e_support import DA_UPLOAD, token

pytestmark = [pytest.mark.e2e]

EXAMPLES = 150  # examples of the main fuzz test, each one a request through the proxy
PREVIEW_EXAMPLES = 40


def _image(fmt: str, width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


# Palette images (GIF) whose pixels the engine cannot yet change are the engine's case (8).
IMAGES = [_image(fmt, 48, 40, seed) for seed, fmt in enumerate(["JPEG", "PNG", "WEBP"])]
PREVIEWS = [_image(fmt, 16, 12, 10 + seed) for seed, fmt in enumerate(["JPEG", "PNG"])]
JUNK = st.binary(min_size=1, max_size=64).filter(lambda b: b"--" not in b)


@dataclass
class Upload:
    """A request to send, the images in it, and where to find each in what the site gets."""

    url: str
    body: bytes
    headers: dict[str, str]
    images: list[bytes]
    extract: list[Callable[[bytes, str], bytes | None]] = field(default_factory=list)
    chunked: bool = False
    must_refuse: bool = False  # an image Sfumato cannot rebuild (appended after the form, ...)

    def __repr__(self) -> str:  # short: hypothesis prints it for a failing example
        return (
            f"Upload({self.url!r}, {len(self.body)} bytes, {self.headers}, "
            f"{len(self.images)} images, chunked={self.chunked}, must_refuse={self.must_refuse}, "
            f"body starts {self.body[:160]!r})"
        )


def _parts(body: bytes, boundary: str) -> list[tuple[bytes, bytes]]:
    """(headers, body) of each part, by plain splitting (the oracle, independent of the proxy)."""
    dash = b"--" + boundary.encode()
    pieces = re.split(rb"(?:^|\r\n)" + re.escape(dash) + rb"[ \t]*(?:\r\n|--)", body)
    out = []
    for piece in pieces[1:]:
        head, sep, data = piece.partition(b"\r\n\r\n")
        if sep:
            out.append((head, data))
    return out


def _part_image(index: int, boundary: str, encoding: str) -> Callable[[bytes, str], bytes | None]:
    def extract(body: bytes, _content_type: str) -> bytes | None:
        parts = _parts(body, boundary)
        if index >= len(parts):
            return None
        data = parts[index][1]
        try:
            if encoding == "base64":
                return base64.b64decode(re.sub(rb"\s", b"", data))
        except (binascii.Error, ValueError):
            return None  # not decodable as sent: the byte checks still look for the original
        if encoding == "quoted-printable":
            return quopri.decodestring(data)
        return data

    return extract


def _data_url_part(index: int, boundary: str) -> Callable[[bytes, str], bytes | None]:
    def extract(body: bytes, content_type: str) -> bytes | None:
        value = _part_image(index, boundary, "")(body, content_type)
        return base64.b64decode(value.split(b",", 1)[1]) if value and b"," in value else None

    return extract


def _form_field(name: str) -> Callable[[bytes, str], bytes | None]:
    def extract(body: bytes, _content_type: str) -> bytes | None:
        value = unquote_to_bytes(body.split(name.encode() + b"=")[1].split(b"&")[0])
        return base64.b64decode(value.split(b",", 1)[1])

    return extract


def _whole_body(body: bytes, _content_type: str) -> bytes | None:
    return body


def _json_field(name: str) -> Callable[[bytes, str], bytes | None]:
    def extract(body: bytes, _content_type: str) -> bytes | None:
        value = json.loads(body)[name]
        return base64.b64decode(value.split(",", 1)[-1])

    return extract


def _nested(outer: str, inner_extract):
    """An image inside a multipart/mixed part of the outer form."""

    def extract(body: bytes, content_type: str) -> bytes | None:
        for _, data in _parts(body, outer):
            found = inner_extract(data, content_type)
            if found:
                return found
        return None

    return extract


@st.composite
def multipart_uploads(draw: st.DrawFn) -> Upload:
    boundary = draw(st.sampled_from(["----WebKitFormBoundary7MA4YWxk", "a b:c", "=_x", "z" * 69]))
    quoted = " " in boundary or draw(st.booleans())
    content_type = f"multipart/form-data; boundary={json.dumps(boundary) if quoted else boundary}"
    padding = draw(st.sampled_from(["", " ", "\t ", "  "]))
    dash = ("--" + boundary).encode()
    parts: list[bytes] = []
    images: list[bytes] = []
    extract = []

    def add_part(head: bytes, data: bytes) -> None:
        parts.append(head + b"\r\n\r\n" + data)

    add_part(
        b'Content-Disposition: form-data; name="csrf"',
        draw(st.binary(max_size=40)).replace(dash, b""),
    )
    encoding = draw(st.sampled_from(["", "", "base64", "quoted-printable"]))
    image = draw(st.sampled_from(IMAGES))
    data = image
    if draw(st.booleans()):
        data += draw(JUNK)  # appended after the image, inside its part
    encoded = {
        "": data,
        "base64": base64.encodebytes(data).replace(b"\n", b"\r\n"),
        "quoted-printable": binascii.b2a_qp(data, quotetabs=True, istext=False).replace(
            b"=\n", b"=\r\n"
        ),
    }[encoding]
    name_header = draw(
        st.sampled_from(["Content-Disposition", "content-disposition", "CONTENT-DISPOSITION"])
    )
    head = f'{name_header}: form-data; name="upload_file"; filename="art"'.encode()
    if draw(st.booleans()):
        head += b"\r\nContent-Type: " + draw(
            st.sampled_from([b"image/jpeg", b"application/octet-stream", b"text/plain"])
        )
    if encoding:
        head += b"\r\nContent-Transfer-Encoding: " + encoding.encode()
    must_refuse = False
    if draw(st.integers(0, 9)) == 0:
        encoded = draw(JUNK) + encoded  # junk before the image: Sfumato cannot rebuild it
        must_refuse = encoding == ""
    nested = draw(st.integers(0, 4)) == 0
    if nested:
        inner = "inner" + draw(st.sampled_from(["1", "x"]))
        inner_body = (
            b"--"
            + inner.encode()
            + b"\r\n"
            + head
            + b"\r\n\r\n"
            + encoded
            + b"\r\n--"
            + inner.encode()
            + b"--"
        )
        add_part(
            b'Content-Disposition: form-data; name="files"\r\n'
            b"Content-Type: multipart/mixed; boundary=" + inner.encode(),
            inner_body,
        )
        extract.append(_nested(boundary, _part_image(0, inner, encoding)))
    else:
        add_part(head, encoded)
        extract.append(_part_image(len(parts) - 1, boundary, encoding))
    images.append(image)
    preview = draw(st.sampled_from(["none", "part", "data-url-field", "after-close"]))
    if preview != "none":
        small = draw(st.sampled_from(PREVIEWS))
        images.append(small)
        if preview == "part":
            add_part(b'Content-Disposition: form-data; name="thumb"; filename="t"', small)
            extract.append(_part_image(len(parts) - 1, boundary, ""))
        elif preview == "data-url-field":
            url = b"data:image/png;base64," + base64.b64encode(small)
            add_part(b'Content-Disposition: form-data; name="thumb"', url)
            index = len(parts) - 1
            extract.append(_data_url_part(index, boundary))
    preamble = draw(st.sampled_from([b"", b"preamble\r\n", b"\r\n"]))
    body = preamble + b"".join(dash + padding.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    body += dash + b"--" + padding.encode() + draw(st.sampled_from([b"", b"\r\n", b"\r\nepilogue"]))
    if preview == "after-close":
        body += b"\r\n" + images[-1]  # an image after the closing boundary
        must_refuse = True
    return Upload(
        f"{DA_UPLOAD}?t=",
        body,
        {"Content-Type": content_type},
        images,
        extract,
        must_refuse=must_refuse,
    )


@st.composite
def raw_uploads(draw: st.DrawFn) -> Upload:
    image = draw(st.sampled_from(IMAGES))
    body = image
    appended = draw(st.sampled_from(["none", "junk", "image"]))
    if appended == "junk":
        body += draw(JUNK)
    elif appended == "image":
        body += draw(st.sampled_from(PREVIEWS))  # a second image after the first one's end
    content_type = draw(st.sampled_from(["application/octet-stream", "image/jpeg", ""]))
    host = draw(
        st.sampled_from(["i.instagram.com/rupload_igphoto/fb_1", "www.pixiv.net/new/endpoint"])
    )
    images = [image] + ([body[len(image) :]] if appended == "image" else [])
    return Upload(
        f"https://{host}?t=",
        body,
        {"Content-Type": content_type} if content_type else {},
        images,
        [_whole_body],
    )


@st.composite
def text_uploads(draw: st.DrawFn) -> Upload:
    image = draw(st.sampled_from(IMAGES))
    encoded = base64.b64encode(image).decode()
    style = draw(
        st.sampled_from(["json-bare", "json-data-url", "json-escaped", "json-unicode", "form"])
    )
    if style == "form":
        value = quote("data:image/png;base64," + encoded, safe="")
        body = f"title=art&image={value}&x=1".encode()
        extract = _form_field("image")
        return Upload(
            "https://www.deviantart.com/_napi/new?t=",
            body,
            {"Content-Type": "application/x-www-form-urlencoded"},
            [image],
            [extract],
        )
    value = encoded if style == "json-bare" else "data:image/jpeg;base64," + encoded
    text = json.dumps({"title": "art", "image": value})
    if style == "json-escaped":
        text = text.replace("/", "\\/")
    elif style == "json-unicode":  # as .NET and other encoders write them
        text = text.replace("/", "\\u002F").replace("+", "\\u002B").replace("=", "\\u003D")
    return Upload(
        "https://www.deviantart.com/_napi/shared/v2/upload?t=",
        text.encode(),
        {"Content-Type": "application/json"},
        [image],
        [_json_field("image")],
    )


@st.composite
def mutated_uploads(draw: st.DrawFn) -> Upload:
    upload = draw(st.one_of(multipart_uploads(), raw_uploads(), text_uploads()))
    coding = draw(st.sampled_from(["", "", "gzip", "deflate", "br"]))
    if coding:
        compress = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}[coding]
        upload.body = compress(upload.body)
        upload.headers["Content-Encoding"] = coding
    upload.chunked = draw(st.booleans())
    return upload


def _slices(data: bytes) -> list[bytes]:
    """Runs of an image's compressed pixel data (not its headers, which protection keeps): any
    of them reaching the site means the original image, or a copy of it, went through.

    256 bytes long: a protected image legitimately shares short runs with its original where a
    PNG row filter or a JPEG block happens to cancel the perturbation (every decoded pixel still
    differs; the test model's ±amplitude blocks do this a few times in a hundred)."""
    start = {
        b"\xff\xd8": lambda: data.rindex(b"\xff\xda") + 14,  # after the last scan header
        b"\x89P": lambda: data.index(b"IDAT") + 4,
        b"RI": lambda: data.index(b"VP8") + 8,
    }[data[:2]]()
    pixels = data[start:]
    return [pixels[int(len(pixels) * f) :][:256] for f in (0.2, 0.5, 0.8)]


def _views(body: bytes) -> list[bytes]:
    """The received body as plain bytes, percent-decoded, quoted-printable-decoded, and every
    base64 run decoded at each of its four alignments."""
    plain = unquote_to_bytes(body)
    views = [body, plain, quopri.decodestring(body)]
    text = re.sub(rb"\\/", b"/", re.sub(rb"(?:\\r)?(?:\\n)|\r?\n", b"", plain))
    text = re.sub(rb"\\u00([2-7][0-9A-Fa-f])", lambda m: bytes([int(m.group(1), 16)]), text)
    for run in re.findall(rb"[A-Za-z0-9+/_-]{24,}", text):
        for skip in range(4):
            chars = run[skip:]
            chars = chars[: len(chars) // 4 * 4]
            for alphabet in (None, b"-_"):
                with contextlib.suppress(binascii.Error, ValueError):
                    views.append(base64.b64decode(chars, altchars=alphabet))
    return views


def _pixels(data: bytes) -> np.ndarray | None:
    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
    except Exception:
        return None


def assert_invariant(upload: Upload, status: int, headers: dict, received: list) -> None:
    event(f"refused: {headers['X-Sfumato-Error']}" if "X-Sfumato-Error" in headers else "sent")
    if headers.get("X-Sfumato-Error"):
        assert received == [], "a refused upload must not reach the site"
        return
    assert not upload.must_refuse, "an image Sfumato cannot rebuild went through"
    assert status == 200 and len(received) == 1, (status, headers)
    body = received[0].body
    views = _views(body)
    for index, original in enumerate(upload.images):
        for piece in _slices(original):
            leaked = [i for i, view in enumerate(views) if piece in view]
            assert not leaked, f"bytes of original image {index} reached the site (views {leaked})"
    content_type = received[0].headers.get("Content-Type", "")
    for original, extract in zip(upload.images, upload.extract, strict=False):
        sent = _pixels(extract(body, content_type) or b"")
        before = _pixels(original)
        if sent is not None:  # an image that arrived: protected
            assert sent.shape == before.shape and np.any(sent != before)


async def _send(proxy, session, upload: Upload) -> tuple[int, dict, str]:
    t = token()
    url = upload.url + t
    context = ssl.create_default_context(cafile=str(proxy.ca_file))
    data: object = upload.body
    if upload.chunked:

        async def chunks():
            for start in range(0, len(upload.body), 997):
                yield upload.body[start : start + 997]

        data = chunks()
    async with session.post(
        url, data=data, headers=upload.headers, proxy=proxy.url, ssl=context
    ) as resp:
        await resp.read()
        return resp.status, dict(resp.headers), t


@pytest.fixture(scope="module")
def loop(proxy):
    """The event loop the module's proxy runs on (idle between tests)."""
    return proxy.task.get_loop()


@pytest.fixture(scope="module")
def session(proxy, loop):
    import aiohttp

    async def make():
        return aiohttp.ClientSession()

    session = loop.run_until_complete(make())
    yield session
    loop.run_until_complete(session.close())


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@FUZZ
@given(upload=mutated_uploads())
def test_mutated_uploads_never_reach_the_site_unprotected(
    proxy, upstream, loop, session, upload
) -> None:
    status, headers, t = loop.run_until_complete(_send(proxy, session, upload))
    assert_invariant(upload, status, headers, upstream.matching(t))


def _with_exif_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """The JPEG with an EXIF APP1 whose IFD1 carries `thumbnail` (as cameras and editors write)."""
    ifd0 = (1).to_bytes(2, "little") + b"\x12\x01\x03\x00\x01\x00\x00\x00\x01\x00\x00\x00"
    ifd1_offset = 8 + len(ifd0) + 4
    thumb_offset = ifd1_offset + 2 + 2 * 12 + 4
    ifd1 = (2).to_bytes(2, "little")
    ifd1 += b"\x01\x02\x04\x00\x01\x00\x00\x00" + thumb_offset.to_bytes(4, "little")
    ifd1 += b"\x02\x02\x04\x00\x01\x00\x00\x00" + len(thumbnail).to_bytes(4, "little")
    tiff = b"II*\x00\x08\x00\x00\x00" + ifd0 + ifd1_offset.to_bytes(4, "little")
    tiff += ifd1 + b"\x00\x00\x00\x00" + thumbnail
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg[2:]


def _with_comment_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """The JPEG with a preview kept in a comment segment (some editors do)."""
    return jpeg[:2] + b"\xff\xfe" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail + jpeg[2:]


def _with_xmp_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """The JPEG with an XMP packet carrying the preview in base64 (xmpGImg:image)."""
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        b'22-rdf-syntax-ns#"><rdf:Description xmlns:xmpGImg="http://ns.adobe.com/xap/1.0/g/img/">'
        b"<xmpGImg:image>" + base64.b64encode(thumbnail) + b"</xmpGImg:image>"
        b"</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    app1 = b"http://ns.adobe.com/xap/1.0/\x00" + xmp
    return jpeg[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg[2:]


def _appended(jpeg: bytes, thumbnail: bytes) -> bytes:
    """The JPEG with another image after its end (as some phones append the unedited photo)."""
    return jpeg + thumbnail


@functools.cache
def _protected(model: str) -> bytes:
    import perturb

    return perturb.protect(IMAGES[0], model=model).data


@settings(
    max_examples=PREVIEW_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    where=st.sampled_from(
        [_with_exif_thumbnail, _with_comment_thumbnail, _with_xmp_thumbnail, _appended]
    ),
    shape=st.sampled_from(["multipart", "raw"]),
    protected_first=st.booleans(),
)
def test_previews_inside_the_image_file_never_reach_the_site(
    proxy, upstream, loop, session, tiny_model, where, shape, protected_first
) -> None:
    """Also into a file protected before uploading: its marker still matches its pixels, but
    it vouches for nothing else in the file."""
    thumbnail = PREVIEWS[0]
    base = _protected(str(tiny_model)) if protected_first else IMAGES[0]
    jpeg = where(base, thumbnail)
    if shape == "raw":
        upload = Upload(
            "https://i.instagram.com/rupload_igphoto/fb_2?t=",
            jpeg,
            {},
            [IMAGES[0], thumbnail],
            [_whole_body],
        )
    else:
        body = (
            b'--b\r\nContent-Disposition: form-data; name="upload_file"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + jpeg + b"\r\n--b--\r\n"
        )
        upload = Upload(
            f"{DA_UPLOAD}?t=",
            body,
            {"Content-Type": "multipart/form-data; boundary=b"},
            [IMAGES[0], thumbnail],
            [_part_image(0, "b", "")],
        )
    status, headers, t = loop.run_until_complete(_send(proxy, session, upload))
    assert_invariant(upload, status, headers, upstream.matching(t))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def bodies_without_images(draw: st.DrawFn) -> tuple[str, str, bytes, str]:
    """(method, url, body, content type) of an ordinary request to an enabled site."""
    kind = draw(st.sampled_from(["json", "form", "text", "binary", "multipart"]))
    if kind == "json":
        body, content_type = json.dumps(draw(JSON_VALUES)).encode(), "application/json"
    elif kind == "form":
        pairs = draw(st.lists(st.tuples(st.text(max_size=10), st.text(max_size=30)), max_size=5))
        body = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()
        content_type = "application/x-www-form-urlencoded"
    elif kind == "text":
        body, content_type = draw(st.text(max_size=300)).encode(), "text/plain; charset=utf-8"
    elif kind == "binary":
        body = draw(st.binary(min_size=1, max_size=2000))
        content_type = draw(
            st.sampled_from(["application/octet-stream", "application/x-protobuf", ""])
        )
    else:
        fields = draw(st.lists(st.binary(max_size=200), min_size=1, max_size=4))
        body = (
            b"".join(
                b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\n'
                + value.replace(b"--b", b"")
                + b"\r\n"
                for value in fields
            )
            + b"--b--\r\n"
        )
        content_type = "multipart/form-data; boundary=b"
    method = draw(st.sampled_from(["POST", "PUT", "PATCH"]))
    host = draw(
        st.sampled_from(["www.deviantart.com", "www.pixiv.net", "i.instagram.com", "upload.x.com"])
    )
    path = draw(
        st.sampled_from(
            ["/_napi/da-user-profile/api/like", "/ajax/work/create/illustration", "/api/graphql"]
        )
    )
    return method, f"https://{host}{path}?t=", body, content_type


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=bodies_without_images())
def test_requests_without_images_reach_the_site_byte_for_byte(
    proxy, upstream, loop, session, request
) -> None:
    method, url, body, content_type = request
    # Random bytes that happen to be an image (a short magic like "P6 1 1") are not the point.
    assume(sniff_image(body) is None and not any(image_offsets(body)))

    async def go() -> tuple[int, str]:
        t = token()
        context = ssl.create_default_context(cafile=str(proxy.ca_file))
        headers = {"Content-Type": content_type} if content_type else {}
        async with session.request(
            method, url + t, data=body, headers=headers, proxy=proxy.url, ssl=context
        ) as resp:
            await resp.read()
            return resp.status, t

    status, t = loop.run_until_complete(go())
    assert status == 200
    (got,) = upstream.matching(t)
    assert got.body == body
