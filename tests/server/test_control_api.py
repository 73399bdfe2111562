"""The /v1 control API through aiohttp's test client: auth, pairing, defences, every endpoint."""

from __future__ import annotations

import asyncio
import io
import sqlite3

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from perturb import inspect_marker
from proxy import site_profiles
from proxy.certificate_authority import ca_cert_path, ca_fingerprint
from proxy.cli import command_name
from proxy.control_api import ControlContext
from proxy.live_settings import ActivityRecorder
from proxy.outcome import Outcome
from proxy.pairing import hash_secret, issue_code
from proxy.settings_store import SettingsStore
from tests.server.conftest import Clock, pair, png_bytes

PROTECTED_ROUTES = [
    ("GET", "/v1/status"),
    ("GET", "/v1/sites"),
    ("PUT", "/v1/sites/deviantart"),
    ("POST", "/v1/sites"),
    ("DELETE", "/v1/sites/mysite"),
    ("GET", "/v1/settings"),
    ("PUT", "/v1/settings"),
    ("GET", "/v1/activity"),
    ("GET", "/v1/clients"),
    ("DELETE", "/v1/clients/1"),
    ("POST", "/v1/protect"),
]


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), PROTECTED_ROUTES)
async def test_every_private_route_needs_a_token(client: TestClient, method: str, path: str):
    for headers in ({}, {"Authorization": "Bearer sfm_wrong"}, {"Authorization": "Basic eDp5"}):
        response = await client.request(method, path, headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.json()
        assert body["error"] == "unauthorized" and "sfumato pair" in body["hint"]


async def test_ca_is_public_and_is_the_data_dir_certificate(client: TestClient, ctx):
    response = await client.get("/v1/ca.pem")
    assert response.status == 200
    assert await response.read() == ca_cert_path(ctx.data_dir).read_bytes()


async def test_missing_ca_is_503_and_status_says_none(client: TestClient, ctx, auth):
    for path in ctx.data_dir.glob("mitmproxy-ca*"):
        path.unlink()
    response = await client.get("/v1/ca.pem")
    assert response.status == 503
    assert "sfumato serve" in (await response.json())["message"]
    status = await (await client.get("/v1/status", headers=auth)).json()
    assert status["ca"]["fingerprint"] is None and status["ca"]["trusted"] is None


async def test_revoked_token_stops_working(client: TestClient, store: SettingsStore):
    token = await pair(client, store, "laptop")
    headers = {"Authorization": f"Bearer {token}"}
    clients = await (await client.get("/v1/clients", headers=headers)).json()
    me = clients["you"]
    assert [c["name"] for c in clients["clients"]] == ["laptop"]
    assert (await client.delete(f"/v1/clients/{me}", headers=headers)).status == 204
    assert (await client.get("/v1/status", headers=headers)).status == 401
    assert (await client.delete("/v1/clients/999", headers={"Authorization": "x"})).status == 401


async def test_unknown_client_revocation_is_404(client: TestClient, auth):
    assert (await client.delete("/v1/clients/999", headers=auth)).status == 404
    assert (await client.delete("/v1/clients/abc", headers=auth)).status == 404


async def test_errors_name_commands_as_this_installation_runs_them(client: TestClient, ctx, auth):
    """The store's and the CA's messages quote `sfumato ...`; the API names the command the way
    this machine's shell runs it (after `make run`: the script's path), as the CLI does."""
    sfumato = command_name()
    unknown_site = await client.put("/v1/sites/nosuchsite", json={"enabled": True}, headers=auth)
    assert f"`{sfumato} sites list` shows the ids" in (await unknown_site.json())["message"]
    for path in ctx.data_dir.glob("mitmproxy-ca*"):
        path.unlink()
    no_ca = await (await client.get("/v1/ca.pem")).json()
    assert f"`{sfumato} serve`" in no_ca["message"]
    if sfumato != "sfumato":  # not on PATH here: the bare name would not run
        assert "`sfumato " not in str(await unknown_site.json()) + str(no_ca)


# -- pairing -----------------------------------------------------------------------------------


async def test_pairing_code_is_single_use_and_token_stored_hashed(
    client: TestClient, store: SettingsStore, data_dir
):
    code, _ = issue_code(store)
    first = await client.post("/v1/pair", json={"code": code.lower(), "client": "Firefox"})
    assert first.status == 201
    token = (await first.json())["token"]
    assert (await client.get("/v1/status", headers={"Authorization": f"Bearer {token}"})).ok
    again = await client.post("/v1/pair", json={"code": code, "client": "Firefox"})
    assert again.status == 403
    dump = "\n".join(store.conn.iterdump())
    assert token not in dump and code.replace("-", "") not in dump
    assert hash_secret(token) in dump


async def test_expired_code_is_refused(client: TestClient, store: SettingsStore):
    code, _ = issue_code(store, ttl=-1)
    response = await client.post("/v1/pair", json={"code": code, "client": "x"})
    assert response.status == 403
    assert (await response.json())["error"] == "bad_code"


async def test_wrong_codes_are_throttled(client: TestClient, store: SettingsStore, clock: Clock):
    for attempt in range(5):
        response = await client.post(
            "/v1/pair", json={"code": f"AAAA-AAA{attempt + 2}", "client": "x"}
        )
        assert response.status == 403
    code, _ = issue_code(store)
    blocked = await client.post("/v1/pair", json={"code": code, "client": "x"})
    assert blocked.status == 429  # even the right code waits: no oracle while throttled
    assert 1 <= int(blocked.headers["Retry-After"]) <= 61
    clock.now += 61
    assert (await client.post("/v1/pair", json={"code": code, "client": "x"})).status == 201


@pytest.mark.parametrize(
    "body",
    [{"code": "ABCD-EFGH"}, {"code": "ABCD-EFGH", "client": ""}, {"code": "x", "client": 5}],
)
async def test_pair_needs_a_client_name(client: TestClient, body):
    response = await client.post("/v1/pair", json=body)
    assert response.status == 400


async def test_pair_rejects_bad_json_and_unknown_fields(client: TestClient):
    assert (await client.post("/v1/pair", data=b"{nope")).status == 400
    assert (await client.post("/v1/pair", json=[1, 2])).status == 400
    response = await client.post("/v1/pair", json={"code": "x", "client": "y", "admin": True})
    assert response.status == 400 and "admin" in (await response.json())["message"]


# -- Host and Origin defences ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.nip.io", ""])
async def test_foreign_host_header_is_refused(client: TestClient, auth, host):
    response = await client.get("/v1/status", headers={**auth, "Host": host})
    assert response.status == 403
    assert (await response.json())["error"] == "host_not_allowed"


@pytest.mark.parametrize("host", ["localhost", "localhost:8765", "127.0.0.1:1", "[::1]:8765"])
async def test_loopback_host_headers_are_served(client: TestClient, auth, host):
    assert (await client.get("/v1/status", headers={**auth, "Host": host})).status == 200


async def test_configured_name_is_served(client: TestClient, ctx: ControlContext, auth):
    ctx.allowed_hosts = ctx.allowed_hosts | {"homeserver.lan"}
    assert (await client.get("/v1/status", headers={**auth, "Host": "homeserver.lan"})).ok


async def test_wildcard_proxy_address_is_reported_as_the_name_the_client_used(
    client: TestClient, ctx: ControlContext, auth
):
    ctx.allowed_hosts = ctx.allowed_hosts | {"homeserver.lan"}
    ctx.proxy_status = lambda: {"address": "0.0.0.0:8080", "state": "running"}
    response = await client.get("/v1/status", headers={**auth, "Host": "homeserver.lan:8765"})
    assert (await response.json())["proxy"]["address"] == "homeserver.lan:8080"
    response = await client.get("/v1/status", headers={**auth, "Host": "[::1]:8765"})
    assert (await response.json())["proxy"]["address"] == "[::1]:8080"


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:8765"])
async def test_web_origins_get_no_cors_and_are_refused(client: TestClient, auth, origin):
    preflight = await client.options(
        "/v1/sites/x",
        headers={"Origin": origin, "Access-Control-Request-Method": "PUT"},
    )
    actual = await client.get("/v1/status", headers={**auth, "Origin": origin})
    pem = await client.get("/v1/ca.pem", headers={"Origin": origin})
    for response in (preflight, actual, pem):
        assert response.status == 403
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


@pytest.mark.parametrize(
    "origin", ["chrome-extension://abcdefghijklmnopabcdefghijklmnop", "moz-extension://1234-abcd"]
)
async def test_extension_origins_get_cors(client: TestClient, auth, origin):
    preflight = await client.options(
        "/v1/sites/x",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    actual = await client.get("/v1/status", headers={**auth, "Origin": origin})
    assert actual.status == 200
    assert actual.headers["Access-Control-Allow-Origin"] == origin
    denied = await client.get("/v1/status", headers={"Origin": origin})
    assert denied.status == 401  # CORS headers on errors too, so the extension can read them
    assert denied.headers["Access-Control-Allow-Origin"] == origin


# -- limits ------------------------------------------------------------------------------------


async def test_oversized_json_is_413(client: TestClient, auth):
    big = b'{"name": "' + b"a" * 70_000 + b'"}'
    response = await client.post("/v1/sites", data=big, headers=auth)
    assert response.status == 413


async def test_protect_body_limit_declared_and_streamed(client: TestClient, auth):
    assert (await client.put("/v1/settings", json={"body_limit": 2048}, headers=auth)).ok
    declared = await client.post("/v1/protect", data=b"\0" * 4096, headers=auth)
    assert declared.status == 413

    async def chunks():
        for _ in range(8):
            yield b"\0" * 512

    streamed = await client.post("/v1/protect", data=chunks(), headers=auth)
    assert streamed.status == 413
    assert (await streamed.json())["error"] == "too_large"


# -- status ------------------------------------------------------------------------------------


async def test_status_reports_model_proxy_ca_and_counts(
    client: TestClient, auth, ctx: ControlContext, store: SettingsStore
):
    recorder = ActivityRecorder(store, lambda: "tiny-test")
    recorder(
        Outcome(
            site="pixiv", shape="multipart", host="www.pixiv.net", path="/", outcome="protected"
        )
    )
    recorder(
        Outcome(
            site="pixiv",
            shape="multipart",
            host="www.pixiv.net",
            path="/",
            outcome="refused",
            reason="corrupt",
        )
    )
    await client.put("/v1/sites/pixiv", json={"enabled": True}, headers=auth)
    status = await (await client.get("/v1/status", headers=auth)).json()
    assert status["model"]["id"] == "tiny-test"
    assert status["proxy"] == {"address": "127.0.0.1:8080", "state": "running"}
    assert status["ca"]["fingerprint"] == ca_fingerprint(ctx.data_dir)
    assert status["ca"]["trusted"] is False  # a fresh CA is in no system store
    assert status["counts"] == {
        "protected": 1,
        "refused": 1,
        "passed": 0,
        "sites_enabled": 1,
        "clients": 1,
    }
    assert status["version"]


# -- sites -------------------------------------------------------------------------------------


async def test_sites_lists_every_builtin_profile_disabled(client: TestClient, auth):
    body = await (await client.get("/v1/sites", headers=auth)).json()
    assert [s["id"] for s in body["sites"]] == list(site_profiles.BUILTIN_IDS)
    assert not any(s["enabled"] for s in body["sites"])
    bluesky = next(s for s in body["sites"] if s["id"] == "bluesky")
    assert "bsky.app" in bluesky["hosts"] and bluesky["upload_hosts"]
    assert body["defaults"]["strength"] == "default"


async def test_put_site_enables_and_applies(client: TestClient, auth, applied):
    response = await client.put(
        "/v1/sites/deviantart", json={"enabled": True, "strength": "high"}, headers=auth
    )
    assert response.status == 200
    site = await response.json()
    assert site["enabled"] is True and site["strength"] == "high"
    assert applied
    reset = await client.put("/v1/sites/deviantart", json={"strength": None}, headers=auth)
    assert (await reset.json())["strength"] is None
    assert (await reset.json())["enabled"] is True


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/sites/nosuchsite", {"enabled": True}, 404),
        ("/v1/sites/x", {"enabled": "yes"}, 400),
        ("/v1/sites/x", {"strength": "max"}, 400),
        ("/v1/sites/x", {"strength": 0}, 400),
        ("/v1/sites/x", {"strength": 99}, 400),
        ("/v1/sites/x", {"enabled": True, "color": "red"}, 400),
        ("/v1/sites/x", {}, 400),
    ],
)
async def test_put_site_errors(client: TestClient, auth, applied, path, body, status):
    response = await client.put(path, json=body, headers=auth)
    assert response.status == status
    assert (await response.json())["message"]
    assert not applied


async def test_custom_site_lifecycle(client: TestClient, auth, applied):
    created = await client.post(
        "/v1/sites",
        json={"id": "mysite", "name": "My Site", "hosts": ["Art.Example.com", "*.cdn.example"]},
        headers=auth,
    )
    assert created.status == 201
    site = await created.json()
    assert site["hosts"] == ["art.example.com", "*.cdn.example"] and site["builtin"] is False
    assert site["enabled"] is True
    listed = await (await client.get("/v1/sites", headers=auth)).json()
    assert listed["sites"][-1]["id"] == "mysite"
    dup = await client.post(
        "/v1/sites", json={"id": "mysite", "name": "x", "hosts": ["a.example"]}, headers=auth
    )
    assert dup.status == 409
    assert (await client.delete("/v1/sites/mysite", headers=auth)).status == 204
    assert (await client.delete("/v1/sites/mysite", headers=auth)).status == 404
    assert len(applied) == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"id": "x", "name": "X", "hosts": ["x.example"]}, 409),  # built-in id
        ({"id": "Bad Id", "name": "n", "hosts": ["a.example"]}, 400),
        ({"id": "ok", "name": "n", "hosts": ["https://a.example/path"]}, 400),
        ({"id": "ok", "name": "n", "hosts": []}, 400),
        ({"id": "ok", "name": "", "hosts": ["a.example"]}, 400),
        ({"id": "ok", "name": "n", "hosts": ["a.example"], "enabled": "yes"}, 400),
    ],
)
async def test_custom_site_errors(client: TestClient, auth, body, status):
    assert (await client.post("/v1/sites", json=body, headers=auth)).status == status


async def test_builtin_site_cannot_be_deleted(client: TestClient, auth):
    response = await client.delete("/v1/sites/pixiv", headers=auth)
    assert response.status == 409


# -- settings ----------------------------------------------------------------------------------


async def test_settings_roundtrip_and_validation(client: TestClient, auth, applied):
    assert (await (await client.get("/v1/settings", headers=auth)).json())["fail_mode"] == "closed"
    response = await client.put("/v1/settings", json={"strength": 0.8}, headers=auth)
    assert (await response.json())["strength"] == "0.8"
    for bad in ({"fail_mode": "open"}, {"body_limit": 10}, {"body_limit": "big"}, {"x": 1}):
        assert (await client.put("/v1/settings", json=bad, headers=auth)).status == 400
    assert len(applied) == 1


# -- activity ----------------------------------------------------------------------------------


async def test_activity_pages_newest_first(client: TestClient, auth, store: SettingsStore):
    recorder = ActivityRecorder(store, lambda: "tiny-test")
    for i in range(5):
        recorder(
            Outcome(
                site="pixiv" if i % 2 else "x",
                shape="multipart",
                host="h",
                path="/p",
                outcome="protected",
                bytes_in=100 + i,
                timings={"infer": 0.01},
            )
        )
    page = await (await client.get("/v1/activity?limit=2", headers=auth)).json()
    assert [e["size"] for e in page["events"]] == [104, 103]
    assert page["events"][0]["model_id"] == "tiny-test"
    assert page["events"][0]["timings"] == {"infer": 0.01}
    rest = await (
        await client.get(f"/v1/activity?limit=10&before={page['next_before']}", headers=auth)
    ).json()
    assert [e["size"] for e in rest["events"]] == [102, 101, 100]
    assert rest["next_before"] is None
    pixiv = await (await client.get("/v1/activity?site=pixiv", headers=auth)).json()
    assert [e["size"] for e in pixiv["events"]] == [103, 101]
    for bad in ("limit=0", "limit=abc", "limit=100000", "before=-1"):
        assert (await client.get(f"/v1/activity?{bad}", headers=auth)).status == 400


# -- protect -----------------------------------------------------------------------------------


async def test_protect_returns_protected_image_with_metrics(client: TestClient, auth):
    original = png_bytes()
    response = await client.post("/v1/protect?strength=high", data=original, headers=auth)
    assert response.status == 200, await response.text()
    assert response.content_type == "image/png"
    out = await response.read()
    assert out != original
    assert Image.open(io.BytesIO(out)).size == Image.open(io.BytesIO(original)).size
    assert inspect_marker(out) is not None
    assert response.headers["X-Sfumato-Model"] == "tiny-test"
    assert response.headers["X-Sfumato-Strength"] in ("high", "1.6")
    assert 10 < float(response.headers["X-Sfumato-PSNR"]) < 80
    assert "infer=" in response.headers["X-Sfumato-Timings"]
    assert "infer;dur=" in response.headers["Server-Timing"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 400, "EmptyInput"),
        (b"this is not an image at all", 415, "NotAnImage"),
        (png_bytes()[:80], 422, "CorruptImage"),
    ],
)
async def test_protect_engine_errors_are_json_with_hint(
    client: TestClient, auth, body, status, code
):
    response = await client.post("/v1/protect", data=body, headers=auth)
    assert response.status == status
    err = await response.json()
    assert err["error"] == code and err["message"] and err["hint"]


async def test_protect_rejects_bad_strength(client: TestClient, auth):
    response = await client.post("/v1/protect?strength=max", data=png_bytes(), headers=auth)
    assert response.status == 400


async def test_protect_without_model_is_503(
    client: TestClient, auth, ctx: ControlContext, tmp_path
):
    ctx.model = lambda: str(tmp_path / "missing.onnx")
    response = await client.post("/v1/protect", data=png_bytes(), headers=auth)
    assert response.status == 503
    assert (await response.json())["error"] == "ModelUnavailable"


async def test_protect_beyond_workers_and_queue_is_503_busy(
    client: TestClient, auth, ctx: ControlContext, tmp_path
):
    from tests.proxy.conftest import build_slow_model

    slow = build_slow_model(tmp_path / "slow")
    ctx.model = lambda: str(slow)
    ctx.protect_workers, ctx.protect_queue = 1, 0
    first = asyncio.ensure_future(
        client.post("/v1/protect", data=png_bytes(160, 160), headers=auth)
    )
    while ctx._protect_pending == 0:  # the first preview holds the only slot
        await asyncio.sleep(0.01)
    busy = await client.post("/v1/protect", data=png_bytes(), headers=auth)
    assert busy.status == 503 and busy.headers["Retry-After"]
    assert (await busy.json())["error"] == "busy"
    assert (await first).status == 200


# -- errors are JSON everywhere ------------------------------------------------------------------


async def test_unknown_route_and_method_are_json(client: TestClient, auth):
    missing = await client.get("/v1/nope", headers=auth)
    assert missing.status == 404 and (await missing.json())["error"]
    wrong = await client.patch("/v1/sites", headers=auth)
    assert wrong.status == 405 and (await wrong.json())["error"]


# -- persistence ---------------------------------------------------------------------------------


async def test_state_survives_a_restart(client: TestClient, store: SettingsStore, ctx, data_dir):
    from aiohttp.test_utils import TestServer

    from proxy.control_api import create_app
    from proxy.data_dir import database_path

    token = await pair(client, store)
    headers = {"Authorization": f"Bearer {token}"}
    await client.put("/v1/sites/tumblr", json={"enabled": True, "strength": "low"}, headers=headers)
    await client.post(
        "/v1/sites", json={"id": "mine", "name": "Mine", "hosts": ["m.example"]}, headers=headers
    )
    await client.put("/v1/settings", json={"strength": "high"}, headers=headers)
    store.close()

    reopened = SettingsStore.open(database_path(data_dir))
    try:
        ctx2 = ControlContext(store=reopened, data_dir=data_dir, builtin_sites=ctx.builtin_sites)
        async with TestClient(TestServer(create_app(ctx2))) as c2:
            sites = await (await c2.get("/v1/sites", headers=headers)).json()
        by_id = {s["id"]: s for s in sites["sites"]}
        assert by_id["tumblr"]["enabled"] and by_id["tumblr"]["strength"] == "low"
        assert by_id["mine"]["hosts"] == ["m.example"]
        assert sites["defaults"]["strength"] == "high"
    finally:
        reopened.close()
        store.conn = sqlite3.connect(":memory:")  # the fixture closes it again
