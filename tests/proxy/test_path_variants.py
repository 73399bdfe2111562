"""Property: for every built-in profile, any spelling of an upload path that a common server
would route to the same endpoint, with any method that carries a body, is protected or refused
-- and still gets the endpoint's special handling (X's chunked protocol, Instagram's headers,
Bluesky's byte count). Through the addon with the real engine (a tiny test model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from proxy import site_profiles
from proxy.addon import Sfumato
from proxy.outcome import Outcome
from tests.proxy.conftest import image_bytes
from tests.proxy.helpers import MULTIPART_CT, decode, file_field, multipart_body, split_multipart

IMAGE = image_bytes(64, 48, "JPEG", seed=41)
EXAMPLES_PER_PROFILE = 25
PROFILES = {p.id: p for p in site_profiles.BUILTIN_PROFILES}
# Where each site's uploads go (a host of the profile), and the page they come from.
HOSTS = {
    "deviantart": ("www.deviantart.com", None),
    "pixiv": ("www.pixiv.net", None),
    "tumblr": ("www.tumblr.com", None),
    "instagram": ("i.instagram.com", None),
    "bluesky": ("morel.us-east.host.bsky.network", "https://bsky.app"),
    "x": ("upload.x.com", "https://x.com"),
    "cara": ("cara-up.s3.us-east-1.amazonaws.com", "https://cara.app"),
    "artstation": ("as-up.s3.amazonaws.com", "https://www.artstation.com"),
}
# Paths for sites that list no endpoint: any path is an upload.
FREE_PATHS = {"cara": "/u/1/art.jpg", "artstation": "/uploads/art.jpg"}


class Proxy:
    def __init__(self, addon: Sfumato, tctx: taddons.context) -> None:
        self.addon = addon
        self.tctx = tctx
        self.outcomes: list[Outcome] = []
        addon.outcome_listeners.append(self.outcomes.append)

    def run(self, flow: http.HTTPFlow) -> http.HTTPFlow:
        async def hooks() -> None:
            self.addon.requestheaders(flow)
            if flow.response is None:
                await self.addon.request(flow)

        self.tctx.master.event_loop.run_until_complete(hooks())
        return flow


@pytest.fixture(scope="module")
def addon(tmp_path_factory) -> Iterator[Proxy]:
    from tests.support.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    sfumato = Sfumato()
    with taddons.context(sfumato) as tctx:
        tctx.configure(
            sfumato, sfumato_sites=",".join(PROFILES), sfumato_model=str(model), sfumato_workers=1
        )
        yield Proxy(sfumato, tctx)
        sfumato.done()


@st.composite
def spelled(draw: st.DrawFn, path: str) -> str:
    """`path` as a client may spell it and a server still routes it to the same resource."""
    out = ""
    for segment in path.strip("/").split("/"):
        if segment == "*":
            segment = draw(st.from_regex(r"fb_uploader_[0-9a-z]{1,8}", fullmatch=True))
        chars = []
        for char in segment:
            style = draw(st.sampled_from(["plain", "plain", "upper", "escape", "double"]))
            if style == "upper":
                char = char.upper()
            elif style == "escape":
                char = quote(char, safe="") if char not in "-._~" else f"%{ord(char):02X}"
            elif style == "double":
                char = f"%25{ord(char):02X}"
            chars.append(char)
        segment = "".join(chars)
        if draw(st.booleans()):
            segment += ";" + draw(st.sampled_from(["x=1", "jsessionid=AB12", ""]))
        prefix = draw(st.sampled_from(["/", "/", "//", "/./", "/zz/../", "/%2e/"]))
        out += prefix + segment
    return out + draw(st.sampled_from(["", "", "/", "//", "/."]))


METHODS = st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "PROPPATCH"])


def make_flow(method: str, host: str, path: str, body: bytes, **headers: str) -> http.HTTPFlow:
    request = http.Request.make(method, f"https://{host}/")
    request.path = path
    for name, value in headers.items():
        if value is not None:
            request.headers[name.replace("_", "-")] = value
    request.raw_content = body
    request.headers["content-length"] = str(len(body))
    return tflow.tflow(req=request)


def assert_protected_or_refused(flow: http.HTTPFlow, sent: bytes | None) -> None:
    if flow.response is not None:
        assert "X-Sfumato-Error" in flow.response.headers, "the site's image must not pass"
        return
    assert sent is not None
    original, received = decode(IMAGE), decode(sent)
    assert received.shape == original.shape and np.any(received != original)


def upload_once(proxy: Proxy, site: str, method: str, path: str) -> None:
    host, origin = HOSTS[site]
    endpoint = site_profiles.endpoint_for(PROFILES[site], path)
    if site in ("deviantart", "pixiv", "tumblr"):
        body = multipart_body(file_field("upload_file", "a.jpg", "image/jpeg", IMAGE))
        flow = proxy.run(make_flow(method, host, path, body, content_type=MULTIPART_CT))
        sent = split_multipart(flow.request.raw_content)[0][1] if flow.response is None else None
        assert_protected_or_refused(flow, sent)
    elif site == "instagram":
        params = json.dumps({"upload_media_width": 64, "upload_media_height": 48})
        flow = proxy.run(
            make_flow(
                method,
                host,
                path,
                IMAGE,
                x_entity_length=str(len(IMAGE)),
                x_instagram_rupload_params=params,
                offset="0",
            )
        )
        assert_protected_or_refused(flow, flow.request.raw_content)
        if flow.response is None:  # the endpoint's fixes hold for every spelling
            assert flow.request.headers["x-entity-length"] == str(len(flow.request.raw_content))
    elif site == "bluesky":
        flow = proxy.run(
            make_flow(method, host, path, IMAGE, content_type="image/jpeg", origin=origin)
        )
        assert_protected_or_refused(flow, flow.request.raw_content)
        if flow.response is None:  # keep_size: the app sized the JPEG for the blob limit
            assert len(flow.request.raw_content) == len(IMAGE)
    elif site == "x":
        x_chunked_upload(proxy, method, host, path, origin)
    else:
        flow = proxy.run(
            make_flow(method, host, path, IMAGE, content_type="image/jpeg", origin=origin)
        )
        assert_protected_or_refused(flow, flow.request.raw_content)
    if site not in FREE_PATHS:
        assert endpoint is not None, f"{path!r} must route to {site}'s endpoint"


def x_chunked_upload(proxy: Proxy, method: str, host: str, path: str, origin: str) -> None:
    """INIT, one APPEND with the whole file, FINALIZE: the protocol holds on any spelling."""
    init = proxy.run(
        make_flow(
            method,
            host,
            f"{path}?command=INIT&total_bytes={len(IMAGE)}&media_type=image%2Fjpeg",
            b"",
            origin=origin,
        )
    )
    assert init.response is None
    media_id = str(1000 + len(proxy.outcomes))
    init.response = http.Response.make(200, json.dumps({"media_id_string": media_id}).encode())
    proxy.addon.response(init)
    body = multipart_body(file_field("media", "blob", "application/octet-stream", IMAGE))
    append = proxy.run(
        make_flow(
            method,
            host,
            f"{path}?command=APPEND&media_id={media_id}&segment_index=0",
            body,
            content_type=MULTIPART_CT,
            origin=origin,
        )
    )
    sent = split_multipart(append.request.raw_content)[0][1] if append.response is None else None
    assert_protected_or_refused(append, sent)
    if sent is not None:
        assert len(sent) == len(IMAGE)  # INIT's total_bytes holds


@pytest.mark.parametrize("site", sorted(PROFILES))
@settings(
    max_examples=EXAMPLES_PER_PROFILE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), method=METHODS)
def test_every_spelling_of_every_upload_endpoint_is_protected(addon, site, data, method) -> None:
    profile = PROFILES[site]
    paths = [e.path for e in profile.endpoints] or [FREE_PATHS[site]]
    path = data.draw(spelled(data.draw(st.sampled_from(paths))), label="path")
    upload_once(addon, site, method, path)
