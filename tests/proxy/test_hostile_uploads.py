"""The promise against a hostile world, through a real mitmproxy: while protection is on, an image
never reaches the site unprotected -- whatever the path spelling, method or endpoint (case 3),
the image format (case 4), the encoding of the image inside the body (case 5), the size of the
body and the load on the proxy (case 6); and a refusal is logged as one line (case 7).

Each test checks what the site received: nothing, or an image whose decoded pixels differ from
the original."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import os
import shutil
import ssl
import sys
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes

import aiohttp
import numpy as np
import pytest
from PIL import Image
from yarl import URL

from tests.proxy.conftest import image_bytes
from tests.proxy.e2e_support import DA_UPLOAD, free_port, send, token
from tests.proxy.helpers import (
    MULTIPART_CT,
    assert_protected,
    decode,
    file_field,
    form_field,
    multipart_body,
    split_multipart,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
DA = "https://www.deviantart.com"


def pixels_differ(original: bytes, received: bytes) -> bool:
    a, b = decode(original), decode(received)
    return a.shape == b.shape and bool(np.any(a != b))


async def send_raw_path(proxy, session, method: str, url: str, body: bytes, **headers: str):
    """Like `send`, but the URL's path is sent exactly as written (no client normalisation)."""
    context = ssl.create_default_context(cafile=str(proxy.ca_file))
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    async with session.request(
        method, URL(url, encoded=True), data=body, headers=hdrs, proxy=proxy.url, ssl=context
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def received_image(upstream, t: str) -> bytes | None:
    """The image the site received for request `t` (multipart part or raw body), or None."""
    got = upstream.matching(t)
    if not got:
        return None
    (request,) = got
    content_type = request.headers.get("Content-Type", "")
    if content_type.startswith("multipart/"):
        boundary = content_type.split("boundary=", 1)[1]
        (part,) = [p for p in split_multipart(request.body, boundary) if b"filename=" in p[0]]
        return part[1]
    return request.body


# ----------------------------------------------------------- case 3: paths, methods, endpoints


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/_puppy/dashared/deviation/submit/upload/deviation/"),
        ("POST", "//_puppy/dashared/deviation/submit/upload/deviation"),
        ("POST", "/_puppy/dashared/deviation/submit/upload/%64eviation"),
        ("POST", "/_puppy/dashared/deviation/submit/upload/Deviation"),
        ("POST", "/_puppy/dashared/deviation/submit/upload/deviation;x=1"),
        ("POST", "/_puppy/dashared/./deviation/submit/upload/deviation"),
        ("PUT", "/_puppy/dashared/deviation/submit/upload/deviation"),
        ("PATCH", "/_puppy/dashared/deviation/submit/upload/deviation"),
        ("POST", "/_puppy/dashared/deviation/submit/upload/v2/new-endpoint"),
    ],
)
async def test_deviantart_path_spellings_and_methods_are_protected(
    proxy, upstream, client, jpeg, method, path
) -> None:
    t = token()
    body = multipart_body(
        form_field("csrf", b"x"), file_field("upload_file", "a.jpg", "image/jpeg", jpeg)
    )
    status, _, _ = await send_raw_path(
        proxy, client, method, f"{DA}{path}?t={t}", body, content_type=MULTIPART_CT
    )
    assert status == 200
    received = received_image(upstream, t)
    assert received is not None and pixels_differ(jpeg, received)
    assert proxy.outcomes[-1].outcome == "protected"


@pytest.mark.parametrize(
    "path",
    ["//rupload_igphoto/fb_{t}", "/Rupload_igphoto/fb_{t}", "/rupload_igphoto%2Ffb_{t}"],
)
async def test_instagram_path_spellings_get_the_endpoint_fixes(proxy, upstream, client, path):
    t = token()
    image = image_bytes(300, 200, "JPEG", seed=31)
    params = json.dumps({"upload_id": t, "upload_media_width": 300, "upload_media_height": 200})
    status, _, _ = await send_raw_path(
        proxy,
        client,
        "POST",
        f"https://i.instagram.com{path.format(t=t)}?t={t}",
        image,
        x_entity_length=str(len(image)),
        x_instagram_rupload_params=params,
        content_type="application/octet-stream",
    )
    assert status == 200
    (got,) = upstream.matching(t)
    assert pixels_differ(image, got.body)
    assert got.headers["X-Entity-Length"] == str(len(got.body))


async def test_an_image_to_any_endpoint_of_an_enabled_site_is_protected(
    proxy, upstream, client, png
) -> None:
    """A new upload endpoint the site ships tomorrow: raw body, unknown path, PATCH."""
    t = token()
    status, _, _ = await send(
        proxy,
        client,
        "PATCH",
        f"https://www.pixiv.net/v3/media/new?t={t}",
        png,
        content_type="application/octet-stream",
    )
    assert status == 200
    assert pixels_differ(png, upstream.matching(t)[0].body)


# ------------------------------------------------------------------------ case 4: formats


def _pil(fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (32, 32, 3), np.uint8)).save(
        out, fmt, **kwargs
    )
    return out.getvalue()


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    box = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(box)).to_bytes(4, "big") + b"ftyp" + box + b"\0\0\0\x08meta" + b"\0" * 64


UNPROTECTABLE = {
    "JPEG 2000 (jp2)": lambda: _pil("JPEG2000", no_jp2=False),
    "JPEG 2000 (j2k)": lambda: _pil("JPEG2000", no_jp2=True),
    "AVIF (avio)": lambda: _ftyp(b"avio", b"avio", b"mif1", b"miaf"),
    "AVIF (avis)": lambda: _ftyp(b"avis", b"avis", b"msf1", b"miaf"),
    "HEIC": lambda: _ftyp(b"heic", b"mif1", b"heic"),
    "HEIF (mif1)": lambda: _ftyp(b"mif1", b"mif1"),
    "JPEG XL (codestream)": lambda: b"\xff\x0a\xfa\x7f\x01\x90\x08" + b"\0" * 64,
    "JPEG XL (container)": lambda: b"\0\0\0\x0cJXL \r\n\x87\n" + _ftyp(b"jxl ", b"jxl "),
    "TIFF (big-endian)": lambda: b"MM\0*\0\0\0\x08" + b"\0" * 64,
    "TIFF": lambda: _pil("TIFF"),
    "BigTIFF": lambda: b"II+\0\x08\0\0\0\x10\0\0\0\0\0\0\0" + b"\0" * 64,
    "BMP": lambda: _pil("BMP"),
    "ICO": lambda: _pil("ICO"),
    "PSD": lambda: b"8BPS\0\1\0\0\0\0\0\0\0\3" + b"\0" * 64,
    "QOI": lambda: _pil("QOI"),
    "DDS": lambda: _pil("DDS"),
    "TGA": lambda: _pil("TGA"),
    "PNM": lambda: _pil("PPM"),
    "OpenEXR": lambda: b"\x76\x2f\x31\x01\x02\0\0\0" + b"\0" * 64,
    "SVG": lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9"/></svg>',
}


@pytest.mark.parametrize("name", sorted(UNPROTECTABLE))
async def test_image_formats_the_engine_cannot_protect_are_refused(
    proxy, upstream, client, name
) -> None:
    data = UNPROTECTABLE[name]()
    for t, body, content_type in (
        (
            token(),
            multipart_body(file_field("upload_file", "art", "application/octet-stream", data)),
            MULTIPART_CT,
        ),
        (token(), data, "application/octet-stream"),
    ):
        status, headers, reply = await send(
            proxy, client, "POST", f"{DA_UPLOAD}?t={t}", body, content_type=content_type
        )
        assert (status, headers.get("X-Sfumato-Error")) == (415, "unsupported-image"), reply
        assert "sfumato protect" in json.loads(reply)["hint"]
        assert upstream.matching(t) == []


# ------------------------------------------------------------ case 5: images in other encodings


async def test_base64_transfer_encoded_part_is_protected(proxy, upstream, client, jpeg) -> None:
    t = token()
    head = (
        b'Content-Disposition: form-data; name="upload_file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\nContent-Transfer-Encoding: base64"
    )
    body = multipart_body(form_field("t", b"x"), (head, base64.encodebytes(jpeg)))
    status, _, _ = await send(
        proxy, client, "POST", f"{DA_UPLOAD}?t={t}", body, content_type=MULTIPART_CT
    )
    assert status == 200
    sent = base64.b64decode(split_multipart(upstream.matching(t)[0].body)[1][1])
    assert_protected(jpeg, sent)
    assert pixels_differ(jpeg, sent)


async def test_svg_embedding_a_base64_jpeg_is_refused(proxy, upstream, client, jpeg) -> None:
    svg = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
        b'xmlns:xlink="http://www.w3.org/1999/xlink"><image xlink:href="data:image/jpeg;base64,'
        + base64.b64encode(jpeg)
        + b'"/></svg>'
    )
    for t, body, content_type in (
        (
            token(),
            multipart_body(file_field("upload_file", "a.svg", "text/xml", svg)),
            MULTIPART_CT,
        ),
        (token(), svg, "text/xml"),
    ):
        status, headers, _ = await send(
            proxy, client, "POST", f"{DA_UPLOAD}?t={t}", body, content_type=content_type
        )
        assert (status, headers.get("X-Sfumato-Error")) == (415, "unsupported-image")
        assert upstream.matching(t) == []


async def test_bare_base64_in_json_and_gzip_encoded_bodies_are_protected(
    proxy, upstream, client, png, jpeg
) -> None:
    t = token()
    doc = {"title": "art", "image": base64.b64encode(png).decode()}
    status, _, _ = await send(
        proxy,
        client,
        "POST",
        f"{DA}/_napi/new/thing?t={t}",
        json.dumps(doc).encode(),
        content_type="application/json",
    )
    assert status == 200
    got = json.loads(upstream.matching(t)[0].body)
    assert got["title"] == "art" and pixels_differ(png, base64.b64decode(got["image"]))
    t = token()
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", jpeg))
    status, _, _ = await send(
        proxy,
        client,
        "POST",
        f"{DA_UPLOAD}?t={t}",
        gzip.compress(body),
        content_type=MULTIPART_CT,
        content_encoding="gzip",
    )
    assert status == 200
    got = upstream.matching(t)[0]  # the upload server decodes the gzip body it receives
    assert got.headers["Content-Encoding"] == "gzip"
    assert pixels_differ(jpeg, split_multipart(got.body)[0][1])


async def test_base64_in_json_with_unicode_escapes_is_protected(proxy, upstream, client, jpeg):
    """`/`, `+` and `=` written as \\u002F, \\u002B, \\u003D (.NET's and other JSON encoders'
    default): the same JSON string, so the same image."""
    value = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    escaped = value.replace("/", "\\u002F").replace("+", "\\u002B").replace("=", "\\u003D")
    body = ('{"title":"art","image":"' + escaped + '"}').encode()
    assert json.loads(body)["image"] == value
    t = token()
    status, _, _ = await send(
        proxy, client, "POST", f"{DA}/_napi/new/thing?t={t}", body, content_type="application/json"
    )
    assert status == 200
    (got,) = upstream.matching(t)
    sent = base64.b64decode(json.loads(got.body)["image"].split(",", 1)[1])
    assert_protected(jpeg, sent)
    assert pixels_differ(jpeg, sent)


@pytest.mark.parametrize(
    ("codec", "content_type"),
    [
        ("utf-16", "application/json; charset=utf-16"),  # a byte-order mark, as .NET writes
        ("utf-16-le", "application/json"),  # no mark, no charset: told by its zero bytes
        ("utf-32-be", "application/json; charset=utf-32be"),
    ],
)
async def test_base64_in_utf16_and_utf32_json_is_protected(
    proxy, upstream, client, jpeg, codec, content_type
) -> None:
    """Each base64 character travels with zero bytes beside it, so no raw search sees it."""
    doc = {"title": "夜の絵", "image": base64.b64encode(jpeg).decode()}
    t = token()
    status, _, _ = await send(
        proxy,
        client,
        "POST",
        f"{DA}/_napi/new/thing?t={t}",
        json.dumps(doc, ensure_ascii=False).encode(codec),
        content_type=content_type,
    )
    assert status == 200
    (got,) = upstream.matching(t)
    sent = json.loads(got.body.decode(codec))
    assert sent["title"] == doc["title"]
    assert_protected(jpeg, base64.b64decode(sent["image"]))
    assert pixels_differ(jpeg, base64.b64decode(sent["image"]))


async def test_ascii_text_that_looks_wide_is_still_searched(proxy, upstream, client, jpeg):
    """A byte-order mark glued on, a wrong charset, a UTF-16 start: the ASCII base64 after it
    is found, and text carrying images both ways is refused."""
    ascii_json = json.dumps({"image": base64.b64encode(jpeg).decode()}).encode()
    ascii_json += b" " * (len(ascii_json) % 2)  # an even length, as UTF-16 text has
    wide_json = json.dumps({"image": base64.b64encode(jpeg).decode()}).encode("utf-16-le")
    for body, content_type in (
        (b"\xff\xfe" + ascii_json, "application/json"),
        (ascii_json, "application/json; charset=utf-16"),
        ("{}".encode("utf-16-le") * 400 + ascii_json, "application/json"),
    ):
        t = token()
        status, _, _ = await send(
            proxy, client, "POST", f"{DA}/_napi/new/thing?t={t}", body, content_type=content_type
        )
        assert status == 200
        (got,) = upstream.matching(t)
        sent = base64.b64decode(json.loads(got.body[got.body.index(b'{"image"') :])["image"])
        assert_protected(jpeg, sent)
    t = token()
    status, headers, _ = await send(
        proxy,
        client,
        "POST",
        f"{DA}/_napi/new/thing?t={t}",
        wide_json + ascii_json,
        content_type="application/json",
    )
    assert headers.get("X-Sfumato-Error") == "unsupported-upload" and status >= 400
    assert upstream.matching(t) == []


NOTATIONS = {
    # PostgREST (Supabase) takes a `bytea` column as `\\x` and hex digits.
    "bytea hex": (lambda b: "\\x" + b.hex(), lambda v: bytes.fromhex(v.removeprefix("\\x"))),
    # A data URL without `;base64` carries its bytes percent-encoded (RFC 2397).
    "percent data URL": (
        lambda b: "data:image/png," + quote_from_bytes(b, safe=""),
        lambda v: unquote_to_bytes(v.removeprefix("data:image/png,")),
    ),
    "encodeURIComponent": (lambda b: quote_from_bytes(b, safe="!*'()"), unquote_to_bytes),
    # JSON.stringify of a Node.js Buffer's bytes.
    "byte array": (list, bytes),
}


@pytest.mark.parametrize("notation", NOTATIONS)
async def test_images_in_other_text_notations_are_protected(
    proxy, upstream, client, png, notation
) -> None:
    encode, decode_value = NOTATIONS[notation]
    t = token()
    body = json.dumps({"title": "art", "file": encode(png)}).encode()
    status, _, _ = await send(
        proxy, client, "POST", f"{DA}/rest/v1/art?t={t}", body, content_type="application/json"
    )
    assert status == 200
    (got,) = upstream.matching(t)
    doc = json.loads(got.body)
    assert doc["title"] == "art"
    sent = decode_value(doc["file"])
    assert_protected(png, sent)
    assert pixels_differ(png, sent)
    assert type(doc["file"]) is type(encode(png))


async def _raw_https(proxy, host: str, request: bytes) -> bytes:
    """Send `request` byte for byte through the proxy's CONNECT tunnel; the answer's status
    line (HTTP/1.1 framing no client library writes, like a transfer coding before chunked)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    context = ssl.create_default_context(cafile=str(proxy.ca_file))
    await writer.start_tls(context, server_hostname=host)
    writer.write(request)
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 20)
    writer.close()
    return status


async def test_a_gzip_transfer_coding_is_decoded_protected_and_encoded_again(
    proxy, upstream, jpeg
) -> None:
    """`Transfer-Encoding: gzip, chunked`: mitmproxy undoes only the chunking, and a server that
    implements the gzip transfer coding would read the original."""
    t = token()
    payload = gzip.compress(
        multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", jpeg))
    )
    head = (
        f"POST /_puppy/dashared/deviation/submit/upload/deviation?t={t} HTTP/1.1\r\n"
        f"Host: www.deviantart.com\r\nContent-Type: {MULTIPART_CT}\r\n"
        "Transfer-Encoding: gzip, chunked\r\n\r\n"
    ).encode()
    chunked = f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n"
    status = await _raw_https(proxy, "www.deviantart.com", head + chunked)
    assert status.startswith(b"HTTP/1.1 200"), status
    (got,) = upstream.matching(t)
    assert got.headers["Transfer-Encoding"] == "gzip, chunked"
    sent = split_multipart(gzip.decompress(got.body))[0][1]
    assert_protected(jpeg, sent)
    assert pixels_differ(jpeg, sent)


# ------------------------------------------------------------------- case 6: size and load


async def test_a_huge_chunked_body_is_refused_while_it_is_read(proxy, upstream, client) -> None:
    """A 300 MB body of unknown length: refused once it passes the limit, not buffered whole;
    the browser gets the refusal while it is still sending."""
    proxy.configure(sfumato_body_limit=8 * 1024 * 1024)
    sent = 0
    answered = asyncio.Event()

    async def body():
        nonlocal sent
        chunk = b"\0" * (1024 * 1024)
        for _ in range(300):
            if answered.is_set():
                return
            sent += len(chunk)
            yield chunk
            await asyncio.sleep(0)

    t = token()
    context = ssl.create_default_context(cafile=str(proxy.ca_file))
    async with client.post(
        f"{DA_UPLOAD}?t={t}",
        data=body(),
        proxy=proxy.url,
        ssl=context,
        headers={"Content-Type": "application/octet-stream"},
    ) as resp:
        answered.set()
        assert resp.status == 413 and resp.headers["X-Sfumato-Error"] == "body-too-large"
        assert sent < 64 * 1024 * 1024  # answered long before the 300 MB were sent
    assert upstream.matching(t) == []
    assert proxy.sfumato.buffer.in_use == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_a_body_of_unknown_length_over_http2_is_refused_while_read(
    proxy, upstream, tmp_path
) -> None:
    proxy.configure(sfumato_body_limit=4 * 1024 * 1024)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1024) * (16 * 1024))  # 16 MB
    t = token()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    with big.open("rb") as stdin:
        curl = await asyncio.create_subprocess_exec(
            "curl",
            "-sS",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--proxy",
            proxy.url,
            "--cacert",
            str(proxy.ca_file),
            "-T",
            "-",
            f"{DA_UPLOAD}?t={t}",
            stdin=stdin,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(curl.communicate(), 60)
    assert out.decode().split() == ["413", "2"]
    assert upstream.matching(t) == []


async def test_uploads_beyond_the_byte_budget_get_503_with_retry_after(
    proxy, upstream, client, jpeg
) -> None:
    proxy.configure(sfumato_buffer_budget=2 * 1024 * 1024)
    proxy.sfumato.buffer.peak = 0
    release = asyncio.Event()

    async def slow_body():
        yield multipart_body(
            file_field("upload_file", "a.bin", "application/octet-stream", b"\1" * (1536 * 1024))
        )[:-10]
        await release.wait()  # holds its 1.5 MB of the budget meanwhile
        yield multipart_body(
            file_field("upload_file", "a.bin", "application/octet-stream", b"\1" * (1536 * 1024))
        )[-10:]

    context = ssl.create_default_context(cafile=str(proxy.ca_file))
    t1, t2 = token(), token()
    first = asyncio.create_task(
        client.post(
            f"{DA_UPLOAD}?t={t1}",
            data=slow_body(),
            proxy=proxy.url,
            ssl=context,
            headers={"Content-Type": MULTIPART_CT},
        )
    )
    for _ in range(100):
        if proxy.sfumato.buffer.in_use >= 1024 * 1024:
            break
        await asyncio.sleep(0.02)
    body = multipart_body(
        file_field("upload_file", "a.jpg", "image/jpeg", jpeg + b"\0" * (1024 * 1024))
    )
    async with aiohttp.ClientSession() as other:
        status, headers, reply = await send(
            proxy, other, "POST", f"{DA_UPLOAD}?t={t2}", body, content_type=MULTIPART_CT
        )
    assert (status, headers.get("X-Sfumato-Error")) == (503, "busy"), reply
    assert headers["Retry-After"].isdigit()
    assert upstream.matching(t2) == []
    release.set()
    resp = await first
    assert resp.status == 200
    resp.release()
    assert proxy.sfumato.buffer.peak <= 2 * 1024 * 1024


async def test_an_image_over_the_pixel_budget_is_refused(proxy, upstream, client) -> None:
    proxy.configure(sfumato_pixel_budget=1)
    image = image_bytes(1200, 1000, "JPEG", seed=8)  # 1.2 MP
    t = token()
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", image))
    status, headers, _ = await send(
        proxy, client, "POST", f"{DA_UPLOAD}?t={t}", body, content_type=MULTIPART_CT
    )
    assert (status, headers.get("X-Sfumato-Error")) == (413, "image-too-large")
    assert upstream.matching(t) == []


# ------------------------------------------------------------ case 7: a refusal is one log line


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_a_timeout_is_logged_as_one_line_without_traceback(
    upstream, pki, slow_model, slow_image, tmp_path
) -> None:
    port = free_port()
    log_path = tmp_path / "mitmdump.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("mitmdump")),
            "--listen-host",
            "127.0.0.1",
            "-p",
            str(port),
            "-s",
            str(REPO / "proxy" / "addon.py"),
            "-s",
            str(REPO / "tests/proxy/redirect_script.py"),
            "--set",
            "sfumato_sites=deviantart",
            "--set",
            f"sfumato_model={slow_model}",
            "--set",
            "sfumato_timeout=1",
            "--set",
            f"confdir={tmp_path}",
            "--set",
            "connection_strategy=lazy",
            "--set",
            f"ssl_verify_upstream_trusted_ca={pki[0]}",
            "--set",
            f"test_upstream_port={upstream.port}",
            "--set",
            "flow_detail=0",
            cwd=tmp_path,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            for _ in range(300):
                if (tmp_path / "mitmproxy-ca-cert.pem").exists():
                    try:
                        _, writer = await asyncio.open_connection("127.0.0.1", port)
                        writer.close()
                        break
                    except OSError:
                        pass
                await asyncio.sleep(0.05)
            (tmp_path / "art.jpg").write_bytes(slow_image)
            (tmp_path / "small.jpg").write_bytes(image_bytes(64, 48, "JPEG", seed=3))
            env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}

            async def upload(name: str, t: str) -> bytes:
                curl = await asyncio.create_subprocess_exec(
                    "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                    "--proxy", f"http://127.0.0.1:{port}",
                    "--cacert", str(tmp_path / "mitmproxy-ca-cert.pem"),
                    "-F", f"upload_file=@{name};type=image/jpeg", f"{DA_UPLOAD}?t={t}",
                    cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, _ = await asyncio.wait_for(curl.communicate(), 60)
                return out

            t = token()
            answers = [await upload("art.jpg", t)]
            assert answers == [b"504"]
            # The worker is free again only once the abandoned job really ended (with its late
            # error): until then, small uploads time out too.
            while answers[-1] != b"200" and len(answers) < 60:
                answers.append(await upload("small.jpg", token()))
            assert answers[-1] == b"200"
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 15)
    log = log_path.read_text(errors="replace")
    refusals = [line for line in log.splitlines() if "refused an upload" in line]
    assert len(refusals) == answers.count(b"504"), log
    assert all("(timeout)" in line for line in refusals), log
    assert "Traceback" not in log and "Unhandled error" not in log, log
    assert upstream.matching(t) == []
