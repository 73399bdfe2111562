"""End to end with real parts: real clients (aiohttp and curl) upload through a real mitmproxy
with the Sfumato addon to an HTTPS server impersonating the sites; we check what the site
received. See e2e_support for the plumbing (test CA, local upload server, redirect addon)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import aiohttp
import pytest
from mitmproxy import exceptions

from tests.proxy.conftest import image_bytes
from tests.proxy.e2e_support import (
    DA_UPLOAD,
    TEST_CA_NAME,
    free_port,
    peer_certificate_issuer,
    send,
    token,
)
from tests.proxy.helpers import (
    MULTIPART_CT,
    assert_protected,
    file_field,
    form_field,
    multipart_body,
    split_multipart,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------- shapes


async def test_deviantart_multipart_from_aiohttp(proxy, upstream, client, jpeg) -> None:
    t = token()
    body = multipart_body(
        form_field("csrf_token", b"c\r\nsrf\x00\xff"),
        file_field("upload_file", "art.jpg", "image/jpeg", jpeg),
        form_field("title", "Títle".encode()),
    )
    status, _, reply = await send(
        proxy, client, "POST", f"{DA_UPLOAD}?t={t}", body, content_type=MULTIPART_CT
    )
    assert status == 200, reply
    (got,) = upstream.matching(t)
    assert got.host == "www.deviantart.com"
    parts, original = split_multipart(got.body), split_multipart(body)
    assert parts[0] == original[0] and parts[2] == original[2]
    assert parts[1][0] == original[1][0]
    assert_protected(jpeg, parts[1][1])
    assert int(got.headers["Content-Length"]) == len(got.body)
    assert json.loads(reply)["received"] == len(got.body)


@pytest.mark.parametrize("http_version", ["--http1.1", "--http2"])
async def test_deviantart_multipart_from_curl(
    proxy, upstream, tmp_path, jpeg, http_version
) -> None:
    """curl builds its own multipart body; over HTTP/2 too (browsers use it with these sites)."""
    t = token()
    (tmp_path / "art.jpg").write_bytes(jpeg)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        http_version,
        "-w",
        "\n%{http_version}",
        "--proxy",
        proxy.url,
        "--cacert",
        str(proxy.ca_file),
        "-F",
        "csrf_token=abc123",
        "-F",
        "upload_file=@art.jpg;type=image/jpeg",
        "-F",
        "title=My art",
        f"{DA_UPLOAD}?t={t}",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    reply, version = out.rsplit(b"\n", 1)
    assert json.loads(reply)["ok"] is True
    assert version == (b"2" if http_version == "--http2" else b"1.1")
    (got,) = upstream.matching(t)
    boundary = got.headers["Content-Type"].split("boundary=", 1)[1]
    parts = split_multipart(got.body, boundary)
    assert parts[0][1] == b"abc123" and parts[2][1] == b"My art"
    assert b'filename="art.jpg"' in parts[1][0]
    assert_protected(jpeg, parts[1][1])


async def test_pixiv_several_images(proxy, upstream, client, jpeg, png) -> None:
    t = token()
    body = multipart_body(
        file_field("files[]", "1.jpg", "image/jpeg", jpeg),
        file_field("files[]", "2.png", "image/png", png),
        form_field("title", b"x"),
    )
    status, _, _ = await send(
        proxy,
        client,
        "POST",
        f"https://www.pixiv.net/ajax/work/create/illustration?t={t}",
        body,
        content_type=MULTIPART_CT,
    )
    assert status == 200
    parts = split_multipart(upstream.matching(t)[0].body)
    assert_protected(jpeg, parts[0][1])
    assert_protected(png, parts[1][1])
    assert parts[2] == split_multipart(body)[2]


async def test_tumblr_multipart(proxy, upstream, client, png) -> None:
    t = token()
    body = multipart_body(file_field("file", "a.png", "image/png", png))
    status, _, _ = await send(
        proxy,
        client,
        "POST",
        f"https://www.tumblr.com/api/v2/media/image?t={t}",
        body,
        content_type=MULTIPART_CT,
    )
    assert status == 200
    assert_protected(png, split_multipart(upstream.matching(t)[0].body)[0][1])


@pytest.mark.parametrize("host", ["i.instagram.com", "www.threads.net"])
async def test_instagram_and_threads_raw_upload(proxy, upstream, client, host) -> None:
    t = token()
    image = image_bytes(360, 240, "JPEG", seed=11)
    params = json.dumps(
        {"upload_id": t, "media_type": 1, "upload_media_width": 360, "upload_media_height": 240}
    )
    status, _, _ = await send(
        proxy,
        client,
        "POST",
        f"https://{host}/rupload_igphoto/fb_uploader_{t}",
        image,
        x_entity_length=str(len(image)),
        x_instagram_rupload_params=params,
        content_type="application/octet-stream",
    )
    assert status == 200
    (got,) = upstream.matching(t)
    assert_protected(image, got.body)
    assert got.headers["X-Entity-Length"] == str(len(got.body))
    assert json.loads(got.headers["X-Instagram-Rupload-Params"]) == json.loads(params)


async def test_bluesky_upload_blob(proxy, upstream, client, png) -> None:
    t = token()
    status, _, _ = await send(
        proxy,
        client,
        "POST",
        f"https://morel.us-east.host.bsky.network/xrpc/com.atproto.repo.uploadBlob?t={t}",
        png,
        content_type="image/png",
        origin="https://bsky.app",
    )
    assert status == 200
    assert_protected(png, upstream.matching(t)[0].body)


async def test_x_init_append_finalize(proxy, upstream, client) -> None:
    image = image_bytes(400, 300, "JPEG", seed=12)
    base = "https://upload.x.com/i/media/upload.json"
    status, _, reply = await send(
        proxy,
        client,
        "POST",
        f"{base}?command=INIT&total_bytes={len(image)}&media_type=image%2Fjpeg",
        b"",
    )
    assert status == 200
    media_id = json.loads(reply)["media_id_string"]
    half = len(image) // 3
    for index, segment in enumerate((image[:half], image[half:])):
        status, _, _ = await send(
            proxy,
            client,
            "POST",
            f"{base}?command=APPEND&media_id={media_id}&segment_index={index}",
            multipart_body(file_field("media", "blob", "application/octet-stream", segment)),
            content_type=MULTIPART_CT,
        )
        assert status == 204
    status, _, _ = await send(
        proxy,
        client,
        "POST",
        f"{base}?command=FINALIZE&media_id={media_id}"
        f"&original_md5={hashlib.md5(image).hexdigest()}",
        b"",
    )
    assert status == 200
    appends = [r for r in upstream.matching(f"media_id={media_id}") if "APPEND" in r.path]
    assert len(appends) == 1 and "segment_index=0" in appends[0].path
    sent = split_multipart(appends[0].body)[0][1]
    assert len(sent) == len(image)  # INIT's total_bytes holds
    assert_protected(image, sent)
    (final,) = [r for r in upstream.matching(f"media_id={media_id}") if "FINALIZE" in r.path]
    assert f"original_md5={hashlib.md5(sent).hexdigest()}" in final.path


async def test_cara_presigned_s3_put(proxy, upstream, client, jpeg) -> None:
    t = token()
    url = (
        f"https://cara-test.s3.amazonaws.com/u/{t}.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=00"
    )
    md5 = base64.b64encode(hashlib.md5(jpeg).digest()).decode()
    status, _, _ = await send(
        proxy,
        client,
        "PUT",
        url,
        jpeg,
        content_type="image/jpeg",
        content_md5=md5,
        origin="https://cara.app",
    )
    assert status == 200
    (got,) = upstream.matching(t)
    assert_protected(jpeg, got.body)
    assert got.headers["Content-MD5"] == base64.b64encode(hashlib.md5(got.body).digest()).decode()


async def test_artstation_generic_rule(proxy, upstream, client, png) -> None:
    t = token()
    body = multipart_body(file_field("file", "a.png", "image/png", png), form_field("x", b"1"))
    status, _, _ = await send(
        proxy,
        client,
        "POST",
        f"https://www.artstation.com/api/v2/uploads?t={t}",
        body,
        content_type=MULTIPART_CT,
    )
    assert status == 200
    assert_protected(png, split_multipart(upstream.matching(t)[0].body)[0][1])
    t2 = token()
    status, _, _ = await send(
        proxy,
        client,
        "PUT",
        f"https://as-bucket.s3.amazonaws.com/{t2}.png",
        png,
        content_type="image/png",
        origin="https://www.artstation.com",
    )
    assert status == 200
    assert_protected(png, upstream.matching(t2)[0].body)


# ------------------------------------------------------------------ not enabled, not touched


async def test_site_not_enabled_is_tunnelled_untouched(proxy, upstream, client, pki, jpeg) -> None:
    proxy.configure(sfumato_sites="deviantart")
    body = multipart_body(file_field("file", "a.jpg", "image/jpeg", jpeg))
    for host in ("www.tumblr.com", "unprotected.example"):
        t = token()
        # the client trusts only the upstream's own CA: this succeeds only if not intercepted
        status, _, _ = await send(
            proxy,
            client,
            "POST",
            f"https://{host}/api/v2/media/image?t={t}",
            body,
            trust=pki[0],
            content_type=MULTIPART_CT,
        )
        assert status == 200
        assert upstream.matching(t)[0].body == body
        assert await peer_certificate_issuer(proxy.port, host, pki[0]) == TEST_CA_NAME
    assert (
        await peer_certificate_issuer(proxy.port, "www.deviantart.com", proxy.ca_file)
    ).startswith("mitmproxy")


async def test_other_requests_on_enabled_site_are_byte_exact(proxy, upstream, client) -> None:
    t = token()
    body = os.urandom(5000)
    status, _, _ = await send(
        proxy,
        client,
        "POST",
        f"https://www.deviantart.com/_puppy/other?t={t}",
        body,
        content_type="application/octet-stream",
    )
    assert status == 200 and upstream.matching(t)[0].body == body


async def test_other_traffic_flows_while_an_upload_is_protected(
    proxy, upstream, client, slow_model
) -> None:
    """CPU work runs in the worker pool: the event loop keeps serving other requests."""
    proxy.configure(sfumato_model=str(slow_model))
    image = image_bytes(1024, 1024, "JPEG", seed=14)
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", image))
    loop = asyncio.get_running_loop()
    started = loop.time()
    upload = asyncio.create_task(
        send(proxy, client, "POST", f"{DA_UPLOAD}?t={token()}", body, content_type=MULTIPART_CT)
    )
    finished: list[float] = []
    upload.add_done_callback(lambda _: finished.append(loop.time()))
    await asyncio.sleep(0.2)  # the upload is in the pool by now
    async with aiohttp.ClientSession() as other:
        get_started = loop.time()
        status, _, _ = await send(
            proxy, other, "GET", f"https://www.deviantart.com/?t={token()}", b""
        )
        get_done = loop.time()
    assert status == 200
    assert get_done - get_started < 1.0
    status, _, _ = await upload
    assert status == 200
    if finished[0] - started > 1.5:  # protection was long enough to have blocked the GET
        assert get_done < finished[0], "the GET must not wait for the upload's protection"


async def test_stream_large_bodies_is_rejected_while_sites_are_protected(
    proxy, upstream, client, jpeg
) -> None:
    """mitmproxy would switch a large upload to streaming after every hook (unprotected)."""
    with pytest.raises(exceptions.OptionsError, match="stream_large_bodies"):
        proxy.configure(stream_large_bodies="1k")
    assert not proxy.master.options.stream_large_bodies
    t = token()
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", jpeg))
    status, _, _ = await send(
        proxy, client, "POST", f"{DA_UPLOAD}?t={t}", body, content_type=MULTIPART_CT
    )
    assert status == 200
    assert_protected(jpeg, split_multipart(upstream.matching(t)[0].body)[0][1])


# ----------------------------------------------------------------------- fault injection


async def _refused(
    proxy, upstream, client, code: str, method: str, url: str, body: bytes, **headers: str
) -> dict:
    before = len(proxy.outcomes)
    status, resp_headers, reply = await send(proxy, client, method, url, body, **headers)
    assert resp_headers.get("X-Sfumato-Error") == code, (status, reply)
    token_ = url.split("t=")[-1] if "t=" in url else url
    assert upstream.matching(token_) == [], "the site must receive nothing"
    assert proxy.outcomes[before:][-1].outcome == "refused"
    return {"status": status, **json.loads(reply)}


async def test_corrupt_image_refused(proxy, upstream, client) -> None:
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", b"\xff\xd8\xffjunk"))
    doc = await _refused(
        proxy,
        upstream,
        client,
        "corrupt-image",
        "POST",
        f"{DA_UPLOAD}?t={token()}",
        body,
        content_type=MULTIPART_CT,
    )
    assert doc["status"] == 422 and doc["hint"]


async def test_failing_model_refused(proxy, upstream, client, failing_model, jpeg) -> None:
    proxy.configure(sfumato_model=str(failing_model))
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", jpeg))
    await _refused(
        proxy,
        upstream,
        client,
        "model-error",
        "POST",
        f"{DA_UPLOAD}?t={token()}",
        body,
        content_type=MULTIPART_CT,
    )


async def test_timeout_refused(proxy, upstream, client, slow_model, slow_image) -> None:
    proxy.configure(sfumato_model=str(slow_model), sfumato_timeout=1)
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", slow_image))
    doc = await _refused(
        proxy,
        upstream,
        client,
        "timeout",
        "POST",
        f"{DA_UPLOAD}?t={token()}",
        body,
        content_type=MULTIPART_CT,
    )
    assert doc["status"] == 504
    for _ in range(300):  # the abandoned job stops at the engine's next tile
        if proxy.sfumato.pool is None or proxy.sfumato.pool.running == 0:
            break
        await asyncio.sleep(0.05)


async def test_signed_payload_refused(proxy, upstream, client, jpeg) -> None:
    t = token()
    auth = (
        "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=00"
    )
    doc = await _refused(
        proxy,
        upstream,
        client,
        "signed-payload",
        "PUT",
        f"https://cara-test.s3.amazonaws.com/{t}.jpg?t={t}",
        jpeg,
        authorization=auth,
        x_amz_content_sha256=hashlib.sha256(jpeg).hexdigest(),
        origin="https://cara.app",
    )
    assert doc["status"] == 403 and "sfumato protect" in doc["hint"]


async def test_oversize_refused(proxy, upstream, client, jpeg) -> None:
    proxy.configure(sfumato_body_limit=1024)
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", jpeg))
    doc = await _refused(
        proxy,
        upstream,
        client,
        "body-too-large",
        "POST",
        f"{DA_UPLOAD}?t={token()}",
        body,
        content_type=MULTIPART_CT,
    )
    assert doc["status"] == 413


# --------------------------------------------------- the "done when", as users run it


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_mitmdump_script_protects_deviantart_upload_from_curl(
    upstream, pki, tiny_model, tmp_path, jpeg
) -> None:
    port = free_port()
    mitmdump = Path(sys.executable).with_name("mitmdump")
    proc = await asyncio.create_subprocess_exec(
        str(mitmdump),
        "-q",
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
        f"sfumato_model={tiny_model}",
        "--set",
        f"confdir={tmp_path}",
        "--set",
        "connection_strategy=lazy",
        "--set",
        f"ssl_verify_upstream_trusted_ca={pki[0]}",
        "--set",
        f"test_upstream_port={upstream.port}",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
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
            if proc.returncode is not None:
                raise AssertionError((await proc.stdout.read()).decode())
            await asyncio.sleep(0.05)
        t = token()
        (tmp_path / "art.jpg").write_bytes(jpeg)
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        curl = await asyncio.create_subprocess_exec(
            "curl",
            "-sS",
            "--proxy",
            f"http://127.0.0.1:{port}",
            "--cacert",
            str(tmp_path / "mitmproxy-ca-cert.pem"),
            "-F",
            "csrf_token=abc",
            "-F",
            "upload_file=@art.jpg;type=image/jpeg",
            f"{DA_UPLOAD}?t={t}",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(curl.communicate(), 30)
        assert curl.returncode == 0, err
        (got,) = upstream.matching(t)
        parts = split_multipart(got.body, got.headers["Content-Type"].split("boundary=")[1])
        assert parts[0][1] == b"abc"
        assert_protected(jpeg, parts[1][1])
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
