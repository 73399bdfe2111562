"""The addon with mitmproxy's test flows: options, candidate detection, every body shape,
fail-closed refusals and outcomes (real engine, tiny test models)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import time
import urllib.parse
import zlib
from pathlib import Path

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow

import perturb
from proxy.addon import MATCH_NOTHING, Sfumato
from proxy.outcome import Outcome
from tests.proxy.conftest import image_bytes
from tests.proxy.helpers import (
    MULTIPART_CT,
    data_url,
    decode,
    file_field,
    form_field,
    multipart_body,
    split_multipart,
)

DA_UPLOAD = "https://www.deviantart.com/_puppy/dashared/deviation/submit/upload/deviation"


def make_flow(method: str, url: str, body: bytes = b"", **headers: str) -> http.HTTPFlow:
    request = http.Request.make(method, url)
    for name, value in headers.items():
        request.headers[name.replace("_", "-")] = value
    request.raw_content = body  # as on the wire (make() would encode per Content-Encoding)
    request.headers["content-length"] = str(len(body))
    return tflow.tflow(req=request)


@pytest.fixture
def sfumato(tiny_model: Path):
    addon = Sfumato()
    outcomes: list[Outcome] = []
    addon.outcome_listeners.append(outcomes.append)
    with taddons.context(addon) as tctx:
        tctx.configure(
            addon,
            sfumato_sites="deviantart,pixiv,tumblr,instagram,bluesky,x,cara,artstation",
            sfumato_model=str(tiny_model),
            sfumato_workers=2,
        )
        addon.outcomes = outcomes  # type: ignore[attr-defined]
        addon.tctx = tctx  # type: ignore[attr-defined]
        yield addon
    addon.done()


async def run(addon: Sfumato, flow: http.HTTPFlow) -> http.HTTPFlow:
    addon.requestheaders(flow)
    await addon.request(flow)
    return flow


def assert_protected(original: bytes, new: bytes) -> None:
    assert new != original
    assert perturb.inspect_marker(new) is not None
    assert decode(new).shape == decode(original).shape


# ---------------------------------------------------------------------------- options


def test_options_are_validated(tiny_model: Path) -> None:
    addon = Sfumato()
    with taddons.context(addon) as tctx:
        for bad in (
            {"sfumato_sites": "deviantart,myspace"},
            {"sfumato_strength": "extreme"},
            {"sfumato_site_strengths": "x:high"},
            {"sfumato_custom_sites": "[{]"},
            {"sfumato_body_limit": 0},
            {"sfumato_timeout": 0},
            {"sfumato_workers": 0},
            {"sfumato_model": "/no/such/model.onnx"},
            {"sfumato_model": "no-such-model-id"},
        ):
            with pytest.raises(exceptions.OptionsError):
                tctx.configure(addon, **bad)
        tctx.configure(addon, sfumato_strength="0.5", sfumato_site_strengths="x=high")
        assert addon.strength == 0.5 and addon.site_strengths == {"x": "high"}


def test_allow_hosts_follow_enabled_sites_live() -> None:
    addon = Sfumato()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sfumato_sites="")
        assert tctx.options.allow_hosts == [MATCH_NOTHING]
        tctx.configure(addon, sfumato_sites="pixiv")
        assert any("pixiv" in p for p in tctx.options.allow_hosts)
        assert not any("deviantart" in p for p in tctx.options.allow_hosts)
        tctx.configure(
            addon,
            sfumato_custom_sites='[{"id": "mine", "name": "Mine", "hosts": ["mine.example"]}]',
            sfumato_sites="pixiv,mine",
        )
        assert any("mine" in p for p in tctx.options.allow_hosts)
        # the user's own allow_hosts win, and stay when sites change
        tctx.configure(addon, allow_hosts=["^only\\.example:443$"])
        tctx.configure(addon, sfumato_sites="x")
        assert tctx.options.allow_hosts == ["^only\\.example:443$"]


def test_requests_to_other_sites_stream_and_are_not_touched(sfumato: Sfumato) -> None:
    for flow in (
        make_flow("POST", "https://example.org/upload", b"x"),
        make_flow("PUT", "https://bucket.s3.amazonaws.com/k", b"x"),  # not from a site's page
    ):
        sfumato.requestheaders(flow)
        assert flow.request.stream is True
        assert flow.response is None
    assert sfumato.outcomes == []


async def test_requests_of_an_enabled_site_without_images_pass_byte_for_byte(sfumato) -> None:
    """Every request of an enabled site is read and searched; without an image it passes
    unchanged, and only listed upload endpoints report it."""
    bodies = [
        ("GET", DA_UPLOAD, b"", ""),
        ("POST", "https://www.deviantart.com/other", b'{"like": 1}', "application/json"),
        (
            "PATCH",
            "https://www.deviantart.com/x",
            b"a=1&b=%FF",
            "application/x-www-form-urlencoded",
        ),
        ("PUT", "https://www.deviantart.com/x", bytes(range(256)) * 8, "application/octet-stream"),
    ]
    for method, url, body, content_type in bodies:
        flow = await run(sfumato, make_flow(method, url, body, content_type=content_type))
        assert not flow.request.stream and flow.response is None
        assert flow.request.raw_content == body
    assert sfumato.outcomes == []


def test_candidates_are_buffered_even_if_streaming_was_requested(sfumato) -> None:
    """mitmproxy's stream_large_bodies runs first and may have set stream = True."""
    flow = make_flow("POST", DA_UPLOAD, b"x" * 100, content_type=MULTIPART_CT)
    flow.request.stream = True
    sfumato.requestheaders(flow)
    assert not flow.request.stream


# ---------------------------------------------------------------------------- shapes


async def test_deviantart_multipart_image_protected_other_parts_exact(sfumato, jpeg) -> None:
    csrf = b"tok\r\n\r\nen--with CRLFs"
    body = multipart_body(
        form_field("csrf_token", csrf),
        file_field("upload_file", "art.jpg", "image/jpeg", jpeg),
        form_field("title", "Déjà vu".encode()),
    )
    flow = await run(sfumato, make_flow("POST", DA_UPLOAD, body, content_type=MULTIPART_CT))
    assert flow.response is None
    parts = split_multipart(flow.request.raw_content)
    original = split_multipart(body)
    assert parts[0] == original[0] and parts[2] == original[2]
    assert parts[1][0] == original[1][0]  # per-part headers kept
    assert_protected(jpeg, parts[1][1])
    assert flow.request.headers["content-length"] == str(len(flow.request.raw_content))
    (outcome,) = sfumato.outcomes
    assert (outcome.site, outcome.shape, outcome.outcome, outcome.images) == (
        "deviantart",
        "multipart",
        "protected",
        1,
    )
    assert outcome.bytes_in == len(jpeg) and outcome.bytes_out == len(parts[1][1])
    assert outcome.timings.get("infer", 0) > 0


async def test_pixiv_several_images_all_protected(sfumato, jpeg, png) -> None:
    body = multipart_body(
        file_field("files[]", "a.jpg", "image/jpeg", jpeg),
        file_field("files[]", "b.png", "application/octet-stream", png),  # found by magic
        form_field("title", b"x"),
    )
    flow = await run(
        sfumato,
        make_flow(
            "POST",
            "https://www.pixiv.net/ajax/work/create/illustration",
            body,
            content_type=MULTIPART_CT,
        ),
    )
    parts = split_multipart(flow.request.raw_content)
    assert_protected(jpeg, parts[0][1])
    assert_protected(png, parts[1][1])
    assert parts[2] == split_multipart(body)[2]
    assert sfumato.outcomes[0].images == 2


async def test_already_protected_image_passes_unchanged(sfumato, jpeg, tiny_model) -> None:
    protected = perturb.protect(jpeg, model=str(tiny_model)).data
    body = multipart_body(file_field("file", "a.jpg", "image/jpeg", protected))
    flow = await run(
        sfumato,
        make_flow(
            "POST", "https://www.tumblr.com/api/v2/media/image", body, content_type=MULTIPART_CT
        ),
    )
    assert flow.request.raw_content == body
    assert sfumato.outcomes[0].outcome == "passed"
    assert "already" in sfumato.outcomes[0].reason


async def test_upload_without_image_passes(sfumato) -> None:
    body = multipart_body(form_field("file", b"just text"))
    flow = await run(
        sfumato,
        make_flow(
            "POST", "https://www.tumblr.com/api/v2/media/image", body, content_type=MULTIPART_CT
        ),
    )
    assert flow.request.raw_content == body and flow.response is None
    assert sfumato.outcomes[0].outcome == "passed"


async def test_instagram_raw_body_and_declared_headers(sfumato) -> None:
    image = image_bytes(300, 200, "JPEG", seed=5)
    params = json.dumps(
        {"media_type": 1, "upload_id": "17", "upload_media_height": 200, "upload_media_width": 300}
    )
    flow = await run(
        sfumato,
        make_flow(
            "POST",
            "https://i.instagram.com/rupload_igphoto/fb_uploader_17",
            image,
            x_entity_length=str(len(image)),
            x_instagram_rupload_params=params,
            x_entity_type="image/jpeg",
            offset="0",
        ),
    )
    new = flow.request.raw_content
    assert_protected(image, new)
    assert flow.request.headers["x-entity-length"] == str(len(new))
    assert json.loads(flow.request.headers["x-instagram-rupload-params"]) == json.loads(params)
    assert flow.request.headers["offset"] == "0"


async def test_bluesky_jpeg_keeps_its_size(sfumato, jpeg) -> None:
    """The app sized the JPEG for the blob limit: the protected one is exactly as long."""
    flow = await run(
        sfumato,
        make_flow(
            "POST",
            "https://morel.us-east.host.bsky.network/xrpc/com.atproto.repo.uploadBlob",
            jpeg,
            content_type="image/jpeg",
        ),
    )
    assert len(flow.request.raw_content) == len(jpeg)
    assert_protected(jpeg, flow.request.raw_content)


async def test_bluesky_pds_upload_blob(sfumato, png) -> None:
    flow = await run(
        sfumato,
        make_flow(
            "POST",
            "https://pds.example.org/xrpc/com.atproto.repo.uploadBlob",
            png,
            content_type="image/png",
            origin="https://bsky.app",
        ),
    )
    assert_protected(png, flow.request.raw_content)
    assert sfumato.outcomes[0].site == "bluesky"


async def test_cara_presigned_s3_put_recomputes_unsigned_md5(sfumato, jpeg) -> None:
    url = (
        "https://cara-up.s3.us-east-1.amazonaws.com/u/art.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=abc"
    )
    md5 = base64.b64encode(hashlib.md5(jpeg).digest()).decode()
    flow = await run(
        sfumato,
        make_flow(
            "PUT", url, jpeg, content_type="image/jpeg", content_md5=md5, origin="https://cara.app"
        ),
    )
    new = flow.request.raw_content
    assert_protected(jpeg, new)
    assert (
        flow.request.headers["content-md5"] == base64.b64encode(hashlib.md5(new).digest()).decode()
    )


async def test_cara_s3_post_policy_form(sfumato, jpeg) -> None:
    """Presigned POST: the policy and its signature cover the form fields, not the file."""
    body = multipart_body(
        form_field("key", b"uploads/art.jpg"),
        form_field("Policy", b"eyJleHBpcmF0aW9uIjoi"),
        form_field("X-Amz-Signature", b"abcdef0123"),
        file_field("file", "art.jpg", "image/jpeg", jpeg),
    )
    flow = await run(
        sfumato,
        make_flow(
            "POST",
            "https://cara-up.s3.amazonaws.com/",
            body,
            content_type=MULTIPART_CT,
            origin="https://cara.app",
        ),
    )
    parts, original = split_multipart(flow.request.raw_content), split_multipart(body)
    assert parts[:3] == original[:3]
    assert_protected(jpeg, parts[3][1])
    assert sfumato.outcomes[0].shape == "multipart" and sfumato.outcomes[0].outcome == "protected"


async def test_s3_bookkeeping_requests_pass_untouched(sfumato) -> None:
    xml = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
    flow = await run(
        sfumato,
        make_flow(
            "POST",
            "https://b.s3.amazonaws.com/k.mp4?uploadId=abc",
            xml,
            content_type="application/xml",
            origin="https://cara.app",
        ),
    )
    assert flow.response is None and flow.request.raw_content == xml
    assert sfumato.outcomes == []


async def test_s3_signed_content_length_keeps_exact_length(sfumato, jpeg) -> None:
    url = (
        "https://b.s3.amazonaws.com/k.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-SignedHeaders=content-length%3Bhost&X-Amz-Signature=abc"
    )
    flow = await run(sfumato, make_flow("PUT", url, jpeg, origin="https://cara.app"))
    assert len(flow.request.raw_content) == len(jpeg)
    assert_protected(jpeg, flow.request.raw_content)


async def test_s3_streaming_unsigned_trailer_rewritten(sfumato, png) -> None:
    crc = base64.b64encode(zlib.crc32(png).to_bytes(4, "big")).decode()
    chunks = b"".join(
        b"%x\r\n" % len(png[i : i + 4000]) + png[i : i + 4000] + b"\r\n"
        for i in range(0, len(png), 4000)
    )
    body = chunks + b"0\r\nx-amz-checksum-crc32:" + crc.encode() + b"\r\n\r\n"
    auth = (
        "AWS4-HMAC-SHA256 Credential=A/2026/us-east-1/s3/aws4_request, "
        "SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-trailer, "
        "Signature=00"
    )
    flow = await run(
        sfumato,
        make_flow(
            "PUT",
            "https://b.s3.us-west-2.amazonaws.com/k.png",
            body,
            authorization=auth,
            content_encoding="aws-chunked",
            x_amz_content_sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            x_amz_trailer="x-amz-checksum-crc32",
            x_amz_decoded_content_length=str(len(png)),
            origin="https://cara.app",
        ),
    )
    raw = flow.request.raw_content
    payload = b""
    pos = 0
    while True:
        end = raw.index(b"\r\n", pos)
        size = int(raw[pos:end], 16)
        if size == 0:
            break
        payload += raw[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    assert sfumato.outcomes and sfumato.outcomes[0].outcome == "protected", sfumato.outcomes
    assert_protected(png, payload)
    trailer = raw[end + 2 :].decode()
    assert (
        trailer
        == "x-amz-checksum-crc32:"
        + base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
        + "\r\n\r\n"
    )
    assert flow.request.headers["x-amz-decoded-content-length"] == str(len(payload))


async def test_x_chunked_upload_keeps_declared_length_and_fixes_md5(sfumato) -> None:
    image = image_bytes(400, 300, "JPEG", seed=9)
    base = "https://upload.x.com/i/media/upload.json"
    init = await run(
        sfumato,
        make_flow(
            "POST",
            f"{base}?command=INIT&total_bytes={len(image)}"
            "&media_type=image%2Fjpeg&media_category=tweet_image",
        ),
    )
    assert init.response is None
    init.response = http.Response.make(200, b'{"media_id":1,"media_id_string":"1800"}')
    sfumato.response(init)
    half = len(image) // 2
    first = await run(
        sfumato,
        make_flow(
            "POST",
            f"{base}?command=APPEND&media_id=1800&segment_index=0",
            multipart_body(file_field("media", "blob", "application/octet-stream", image[:half])),
            content_type=MULTIPART_CT,
            origin="https://x.com",
        ),
    )
    assert first.response is not None and first.response.status_code == 204  # held
    assert first.response.headers["access-control-allow-origin"] == "https://x.com"
    assert first.response.headers["access-control-allow-credentials"] == "true"
    second = await run(
        sfumato,
        make_flow(
            "POST",
            f"{base}?command=APPEND&media_id=1800&segment_index=1",
            multipart_body(file_field("media", "blob", "application/octet-stream", image[half:])),
            content_type=MULTIPART_CT,
        ),
    )
    assert second.response is None
    assert "segment_index=0" in second.request.path
    (part,) = split_multipart(second.request.raw_content)
    sent = part[1]
    assert len(sent) == len(image)  # the INIT's total_bytes still holds
    assert_protected(image, sent)
    final = await run(
        sfumato,
        make_flow(
            "POST",
            f"{base}?command=FINALIZE&media_id=1800&original_md5={hashlib.md5(image).hexdigest()}",
        ),
    )
    assert f"original_md5={hashlib.md5(sent).hexdigest()}" in final.request.path
    assert [o.outcome for o in sfumato.outcomes] == ["protected"]


async def test_x_video_upload_is_not_touched(sfumato) -> None:
    base = "https://upload.x.com/i/media/upload.json"
    init = await run(
        sfumato, make_flow("POST", f"{base}?command=INIT&total_bytes=10&media_type=video%2Fmp4")
    )
    init.response = http.Response.make(200, b'{"media_id_string":"5"}')
    sfumato.response(init)
    body = multipart_body(file_field("media", "blob", "application/octet-stream", b"\0" * 10))
    flow = await run(
        sfumato,
        make_flow(
            "POST",
            f"{base}?command=APPEND&media_id=5&segment_index=0",
            body,
            content_type=MULTIPART_CT,
        ),
    )
    assert flow.response is None and flow.request.raw_content == body


async def test_custom_site_json_data_url(tiny_model, png) -> None:
    addon = Sfumato()
    outcomes: list[Outcome] = []
    addon.outcome_listeners.append(outcomes.append)
    with taddons.context(addon) as tctx:
        tctx.configure(
            addon,
            sfumato_custom_sites='[{"id": "folio", "name": "Folio", "hosts": ["folio.example"]}]',
            sfumato_sites="folio",
            sfumato_model=str(tiny_model),
        )
        body = json.dumps({"title": "t", "image": data_url("image/png", png)}).encode()
        flow = await run(
            addon,
            make_flow(
                "POST", "https://folio.example/api/post", body, content_type="application/json"
            ),
        )
        doc = json.loads(flow.request.content)
        assert doc["title"] == "t"
        assert_protected(png, base64.b64decode(doc["image"].split(",", 1)[1]))
        assert outcomes[0].site == "folio" and outcomes[0].shape == "data_url"
        # JSON without images on the same site: forwarded, nothing reported
        plain = await run(
            addon,
            make_flow(
                "POST",
                "https://folio.example/api/like",
                b'{"a":1}',
                content_type="application/json",
            ),
        )
        assert plain.request.content == b'{"a":1}' and len(outcomes) == 1
    addon.done()


async def test_x_base64_media_data_form_upload(sfumato) -> None:
    image = image_bytes(200, 150, "PNG", seed=21)
    base = "https://upload.x.com/1.1/media/upload.json"
    form = "application/x-www-form-urlencoded"
    init = await run(
        sfumato,
        make_flow(
            "POST",
            base,
            f"command=INIT&total_bytes={len(image)}&media_type=image%2Fpng".encode(),
            content_type=form,
        ),
    )
    declared = int(dict(urllib.parse.parse_qsl(init.request.content.decode()))["total_bytes"])
    assert declared > len(image)  # room for the protected (larger) PNG, declared up front
    init.response = http.Response.make(200, b'{"media_id_string":"77"}')
    sfumato.response(init)
    encoded = base64.b64encode(image).decode().replace("+", "%2B").replace("/", "%2F")
    append = await run(
        sfumato,
        make_flow(
            "POST",
            base,
            f"command=APPEND&media_id=77&segment_index=0&media_data={encoded}".replace(
                "=", "=", 1
            ).encode(),
            content_type=form,
        ),
    )
    assert append.response is None
    fields = dict(urllib.parse.parse_qsl(append.request.content.decode()))
    sent = base64.b64decode(fields["media_data"])
    assert len(sent) == declared and fields["segment_index"] == "0"
    assert_protected(image, sent)


async def test_x_already_protected_png_is_padded_not_protected_again(sfumato, tiny_model) -> None:
    image = perturb.protect(image_bytes(120, 90, "PNG", seed=22), model=str(tiny_model)).data
    base = "https://upload.x.com/i/media/upload.json"
    init = await run(
        sfumato,
        make_flow("POST", f"{base}?command=INIT&total_bytes={len(image)}&media_type=image%2Fpng"),
    )
    declared = int(dict(urllib.parse.parse_qsl(init.request.path.split("?")[1]))["total_bytes"])
    init.response = http.Response.make(200, b'{"media_id_string":"88"}')
    sfumato.response(init)
    body = multipart_body(file_field("media", "blob", "application/octet-stream", image))
    flow = await run(
        sfumato,
        make_flow(
            "POST",
            f"{base}?command=APPEND&media_id=88&segment_index=0",
            body,
            content_type=MULTIPART_CT,
        ),
    )
    sent = split_multipart(flow.request.raw_content)[0][1]
    assert len(sent) == declared and sent.startswith(image[:-12])
    assert (decode(sent) == decode(image)).all()
    assert sfumato.outcomes[-1].outcome == "passed"


async def test_gzip_encoded_upload_is_decoded_protected_and_reencoded(sfumato, jpeg) -> None:
    body = multipart_body(file_field("file", "a.jpg", "image/jpeg", jpeg), form_field("x", b"1"))
    flow = await run(
        sfumato,
        make_flow(
            "POST",
            "https://www.tumblr.com/api/v2/media/image",
            gzip.compress(body),
            content_type=MULTIPART_CT,
            content_encoding="gzip",
        ),
    )
    assert flow.response is None
    assert flow.request.headers["content-encoding"] == "gzip"
    parts = split_multipart(gzip.decompress(flow.request.raw_content))
    assert_protected(jpeg, parts[0][1])
    assert parts[1] == split_multipart(body)[1]


# ---------------------------------------------------------------------------- fail closed


def _refusal(flow: http.HTTPFlow, code: str) -> dict:
    assert flow.response is not None, "the upload must not be forwarded"
    assert flow.response.headers["X-Sfumato-Error"] == code
    return json.loads(flow.response.content)


async def test_corrupt_image_is_refused(sfumato) -> None:
    body = multipart_body(
        file_field("upload_file", "a.jpg", "image/jpeg", b"\xff\xd8\xff\xe0 not really a jpeg")
    )
    flow = await run(
        sfumato,
        make_flow(
            "POST", DA_UPLOAD, body, content_type=MULTIPART_CT, origin="https://www.deviantart.com"
        ),
    )
    doc = _refusal(flow, "corrupt-image")
    assert flow.response.status_code == 422
    assert "DeviantArt" in doc["message"] and doc["hint"]
    assert flow.response.headers["access-control-allow-origin"] == "https://www.deviantart.com"
    assert sfumato.outcomes[0].outcome == "refused"
    assert sfumato.outcomes[0].code == "corrupt-image"


async def test_refusal_as_text_for_browsers_asking_html(sfumato) -> None:
    body = multipart_body(file_field("upload_file", "a.png", "image/png", b"garbage"))
    flow = await run(
        sfumato,
        make_flow(
            "POST",
            DA_UPLOAD,
            body,
            content_type=MULTIPART_CT,
            accept="text/html,application/xhtml+xml",
        ),
    )
    assert flow.response.headers["content-type"].startswith("text/plain")
    assert b"Sfumato did not send this upload to DeviantArt" in flow.response.content
    assert b"What to do:" in flow.response.content


async def test_unsupported_format_is_refused(sfumato) -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100
    body = multipart_body(file_field("upload_file", "a.heic", "application/octet-stream", heic))
    flow = await run(sfumato, make_flow("POST", DA_UPLOAD, body, content_type=MULTIPART_CT))
    _refusal(flow, "unsupported-image")


async def test_failing_model_is_refused(sfumato, failing_model, jpeg) -> None:
    sfumato.tctx.configure(sfumato, sfumato_model=str(failing_model))
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", jpeg))
    flow = await run(sfumato, make_flow("POST", DA_UPLOAD, body, content_type=MULTIPART_CT))
    _refusal(flow, "model-error")


async def test_timeout_is_refused(sfumato, slow_model, slow_image) -> None:
    sfumato.tctx.configure(sfumato, sfumato_model=str(slow_model), sfumato_timeout=1)
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", slow_image))
    flow = await run(sfumato, make_flow("POST", DA_UPLOAD, body, content_type=MULTIPART_CT))
    doc = _refusal(flow, "timeout")
    assert "1 s" in doc["message"]
    await _pool_idle(sfumato)


async def _pool_idle(addon: Sfumato) -> None:
    for _ in range(300):  # the abandoned job stops at the engine's next tile
        if addon.pool is None or addon.pool.running == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never finished")


async def test_overloaded_pool_refuses_when_the_wait_exceeds_the_timeout(sfumato, jpeg) -> None:
    """Backpressure: waiting for a worker counts against the upload's deadline."""
    sfumato.tctx.configure(sfumato, sfumato_workers=1, sfumato_timeout=1)
    occupant = asyncio.create_task(sfumato.pool.run(time.sleep, 3, timeout=10))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", jpeg))
    flow = await run(sfumato, make_flow("POST", DA_UPLOAD, body, content_type=MULTIPART_CT))
    _refusal(flow, "timeout")
    assert 0.9 < time.monotonic() - started < 2.5  # refused at its deadline, not after the wait
    await occupant


async def test_signed_payload_is_refused(sfumato, jpeg) -> None:
    auth = (
        "AWS4-HMAC-SHA256 Credential=A/2026/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=00"
    )
    flow = await run(
        sfumato,
        make_flow(
            "PUT",
            "https://b.s3.amazonaws.com/k.jpg",
            jpeg,
            authorization=auth,
            x_amz_content_sha256=hashlib.sha256(jpeg).hexdigest(),
            origin="https://cara.app",
        ),
    )
    doc = _refusal(flow, "signed-payload")
    assert "sfumato protect" in doc["hint"]
    assert flow.response.status_code == 403


async def test_s3_multipart_part_with_image_is_refused(sfumato, jpeg) -> None:
    flow = await run(
        sfumato,
        make_flow(
            "PUT",
            "https://b.s3.amazonaws.com/k.jpg?partNumber=1&uploadId=x",
            jpeg,
            origin="https://cara.app",
        ),
    )
    _refusal(flow, "unsupported-upload")


async def test_oversize_upload_refused_before_the_body(sfumato) -> None:
    sfumato.tctx.configure(sfumato, sfumato_body_limit=1000)
    flow = make_flow("POST", DA_UPLOAD, b"x" * 2000, content_type=MULTIPART_CT)
    sfumato.requestheaders(flow)
    _refusal(flow, "body-too-large")
    assert flow.response.status_code == 413


async def test_malformed_multipart_is_refused(sfumato, jpeg) -> None:
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", jpeg))[:-20]
    flow = await run(sfumato, make_flow("POST", DA_UPLOAD, body, content_type=MULTIPART_CT))
    _refusal(flow, "bad-request")


async def test_broken_listener_does_not_break_uploads(sfumato, jpeg) -> None:
    def broken(outcome: Outcome) -> None:
        raise RuntimeError("listener bug")

    sfumato.outcome_listeners.insert(0, broken)
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", jpeg))
    flow = await run(sfumato, make_flow("POST", DA_UPLOAD, body, content_type=MULTIPART_CT))
    assert flow.response is None and len(sfumato.outcomes) == 1


async def test_a_bug_while_rewriting_fails_closed(sfumato, jpeg, monkeypatch) -> None:
    def buggy(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr("proxy.addon.rewrite_upload", buggy)
    body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", jpeg))
    flow = await run(sfumato, make_flow("POST", DA_UPLOAD, body, content_type=MULTIPART_CT))
    _refusal(flow, "engine-error")
    assert flow.response.status_code == 500


def test_large_responses_stream_except_x_init(sfumato) -> None:
    big = b"x" * (2 * 1024 * 1024)
    flow = make_flow("GET", "https://www.deviantart.com/download")
    flow.response = http.Response.make(200, big)
    sfumato.responseheaders(flow)
    assert flow.response.stream is True
    small = make_flow("GET", "https://www.deviantart.com/")
    small.response = http.Response.make(200, b"x")
    sfumato.responseheaders(small)
    assert not small.response.stream
    init = make_flow("POST", "https://upload.x.com/i/media/upload.json?command=INIT")
    init.metadata["sfumato_x_init"] = object()
    init.response = http.Response.make(200, big)
    sfumato.responseheaders(init)
    assert not init.response.stream
