"""The control API (`/v1`, JSON) the browser extension and scripts use to drive the proxy.

Defences, in middleware order:
1. Host allowlist: only loopback names and configured names are served, so a web page cannot reach
   the API through DNS rebinding (its requests would carry the attacker's host name).
2. Origins: requests carrying a web `Origin` are refused and never get `Access-Control-Allow-*`;
   only `chrome-extension://` and `moz-extension://` origins get CORS headers (preflight included).
3. Bearer tokens on everything but `ca.pem` and `pair`; tokens are stored hashed and compared in
   constant time (proxy.pairing).
4. Size limits: 64 KiB for JSON bodies, the configured body limit for `POST /v1/protect` (413).

Every error is JSON `{"error", "message", "hint"}`. Logs name the route, status and client id, never
bodies, tokens, cookies or query strings.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.certificate_authority import CertificateError, ca_certificate_pem, ca_fingerprint
from proxy.cli import command, runnable
from proxy.pairing import MAX_CLIENT_NAME, PairingThrottle, find_client, redeem_code
from proxy.settings_store import (
    BuiltinSites,
    Conflict,
    NotFound,
    SettingsError,
    SettingsStore,
    validate_strength,
)

log = logging.getLogger("sfumato.api")

JSON_LIMIT = 64 * 1024
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
EXTENSION_ORIGIN = re.compile(r"^(chrome-extension|moz-extension)://[A-Za-z0-9._-]{1,128}$")
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Expose-Headers": (
        "X-Sfumato-PSNR, X-Sfumato-Model, X-Sfumato-Strength, X-Sfumato-Timings, Server-Timing, "
        "Retry-After"
    ),
    "Access-Control-Max-Age": "600",
}
PUBLIC_ROUTES = frozenset({("GET", "/v1/ca.pem"), ("POST", "/v1/pair")})
TOUCH_INTERVAL = 60.0  # seconds between last_seen writes per client
TRUST_RECHECK = 60.0  # seconds between scans of the system trust store for /v1/status

# Engine error class name -> HTTP status (looked up by name: perturb.errors is another module).
ENGINE_ERROR_STATUS = {
    "EmptyInput": 400,
    "NotAnImage": 415,
    "UnsupportedImage": 415,
    "CorruptImage": 422,
    "ImageTooLarge": 413,
    "ProtectTimeout": 503,
    "ModelUnavailable": 503,
}


@dataclass
class ControlContext:
    """What the API needs from the running server; tests build one without a proxy."""

    store: SettingsStore
    data_dir: Path
    builtin_sites: BuiltinSites
    apply_settings: Callable[[], None] = lambda: None
    proxy_status: Callable[[], dict[str, Any]] = lambda: {"state": "not running"}
    model_info: Callable[[], dict[str, Any]] = lambda: {}
    model: Callable[[], str | None] = lambda: None  # engine model spec; None: engine default
    allowed_hosts: frozenset[str] = LOOPBACK_NAMES
    throttle: PairingThrottle = field(default_factory=PairingThrottle)
    protect_workers: int = 1
    protect_queue: int = 4  # requests waiting beyond the workers get 503
    protect_time_limit: float = 60.0
    _last_touch: dict[int, float] = field(default_factory=dict)
    _protect_slots: asyncio.Semaphore | None = None
    _protect_pending: int = 0
    _trust_checked: tuple[float, bool | None] | None = None


class ApiError(Exception):
    """An error response: status, a short code, a message and what to do about it."""

    def __init__(self, status: int, code: str, message: str, hint: str = "", **headers: str):
        # a command quoted by the settings store, the CA or the engine (`sfumato sites list`)
        # is named as this installation runs it, like every other printed instruction
        message, hint = runnable(message), runnable(hint)
        super().__init__(message)
        self.status, self.code, self.message, self.hint = status, code, message, hint
        self.headers = headers


CONTEXT: web.AppKey[ControlContext] = web.AppKey("context", ControlContext)
CLIENT_ID: web.RequestKey[int] = web.RequestKey("client_id", int)


def host_name(header: str | None) -> str | None:
    """The host part of a Host header value, lowercased, without port or brackets (None if bad)."""
    if not header or len(header) > 300:
        return None
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not re.fullmatch(r":\d{1,5}", value[end + 1 :])):
            return None
        inner = value[1:end]
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            return None
    host, sep, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if sep and not re.fullmatch(r"\d{1,5}", port):
        return None
    host = host.rstrip(".")
    if not host or not re.fullmatch(r"[a-z0-9.-]+", host):
        return None
    return host


def allowed_host_names(*extra: str | None) -> frozenset[str]:
    """Loopback names plus the configured address(es), except wildcard binds (0.0.0.0, ::)."""
    names = set(LOOPBACK_NAMES)
    for item in extra:
        if not item:
            continue
        name = host_name(f"[{item}]" if ":" in item and not item.startswith("[") else item)
        if name and name not in ("0.0.0.0", "::"):
            names.add(name)
    return frozenset(names)


def is_extension_origin(origin: str) -> bool:
    return bool(EXTENSION_ORIGIN.match(origin))


def _error_response(err: ApiError, origin: str | None) -> web.Response:
    body = {"error": err.code, "message": err.message, "hint": err.hint}
    response = web.json_response(body, status=err.status, headers=err.headers)
    if origin and is_extension_origin(origin):
        response.headers.update(_cors(origin))
    return response


def _cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin", **CORS_HEADERS}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def defences(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host allowlist, Origin policy, auth, JSON errors and a log line per request."""
    ctx = request.app[CONTEXT]
    started = time.perf_counter()
    origin = request.headers.get("Origin")
    client_id: int | None = None
    try:
        if host_name(request.headers.get("Host")) not in ctx.allowed_hosts:
            raise ApiError(
                403,
                "host_not_allowed",
                "this API only answers requests addressed to its own names",
                "use http://127.0.0.1:<api-port>, or start serve with --api-name NAME",
            )
        if origin is not None and not is_extension_origin(origin):
            raise ApiError(
                403,
                "origin_not_allowed",
                "web pages may not use the Sfumato API",
                "only the Sfumato browser extension and local programs can use it",
            )
        if request.method == "OPTIONS":
            if origin is None or "Access-Control-Request-Method" not in request.headers:
                raise ApiError(400, "bad_preflight", "OPTIONS is only answered as a CORS preflight")
            return web.Response(status=204, headers=_cors(origin))
        if (request.method, request.path) not in PUBLIC_ROUTES:
            client_id = _authenticate(request, ctx)
            request[CLIENT_ID] = client_id
        response = await handler(request)
    except ApiError as err:
        response = _error_response(err, origin)
    except web.HTTPException as exc:  # aiohttp's own 404/405/413
        response = _error_response(
            ApiError(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason), origin
        )
    except Exception:
        log.exception("api handler failed", extra={"path": request.path})
        response = _error_response(
            ApiError(500, "internal", "internal error", "see the server log"), origin
        )
    else:
        if origin is not None:
            response.headers.update(_cors(origin))
    # Reads that succeed are what the extension polls: debug, so they do not flood the journal.
    quiet = request.method == "GET" and response.status < 400
    log.log(
        logging.DEBUG if quiet else logging.INFO,
        "api request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "client_id": client_id,
            "ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return response


def _authenticate(request: web.Request, ctx: ControlContext) -> int:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    client_id = find_client(ctx.store, token.strip()) if scheme.lower() == "bearer" else None
    if client_id is None:
        raise ApiError(
            401,
            "unauthorized",
            "a valid token is required",
            f"pair this client: run `{command('pair')}` and send the code to POST /v1/pair",
            **{"WWW-Authenticate": 'Bearer realm="sfumato"'},
        )
    now = time.time()
    if now - ctx._last_touch.get(client_id, 0.0) > TOUCH_INTERVAL:
        ctx._last_touch[client_id] = now
        ctx.store.touch_client(client_id, now)
    return client_id


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it exceeds `limit` (declared or streamed)."""
    too_large = ApiError(
        413,
        "too_large",
        f"the request body is larger than {limit} bytes",
        "send a smaller file, or raise the body limit (PUT /v1/settings)",
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    raw = await read_limited(request, JSON_LIMIT)
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise ApiError(
            400,
            "unknown_field",
            f"unknown field(s): {', '.join(sorted(unknown))}",
            f"allowed: {', '.join(sorted(allowed))}",
        )
    return body


def _settings_error(exc: Exception) -> ApiError:
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", str(exc))
    return ApiError(400, "invalid", str(exc))


def _changed(ctx: ControlContext) -> None:
    try:
        ctx.apply_settings()
    except Exception as exc:  # the change is stored; say so rather than pretend it failed
        log.exception("applying settings to the proxy failed")
        raise ApiError(
            500,
            "not_applied",
            f"saved, but the running proxy rejected it: {exc}",
            "check the server log; the setting takes effect on the next start",
        ) from exc


# -- handlers --------------------------------------------------------------------------------


async def get_ca(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        pem = ca_certificate_pem(ctx.data_dir)
    except CertificateError as exc:
        raise ApiError(503, "no_ca", str(exc)) from exc
    return web.Response(
        body=pem,
        content_type="application/x-pem-file",
        headers={"Content-Disposition": 'attachment; filename="sfumato-ca.pem"'},
    )


async def post_pair(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    wait = ctx.throttle.retry_after()
    if wait > 0:
        raise ApiError(
            429,
            "too_many_attempts",
            "too many wrong pairing codes",
            f"wait {int(wait) + 1} s, then run `{command('pair')}` for a fresh code",
            **{"Retry-After": str(int(wait) + 1)},
        )
    body = await read_json_object(request, {"code", "client"})
    name = body.get("client", "")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_CLIENT_NAME:
        raise ApiError(400, "invalid", f"client must be a name of 1-{MAX_CLIENT_NAME} characters")
    name = "".join(ch for ch in name.strip() if ch.isprintable())
    token = redeem_code(ctx.store, body.get("code"), name)
    if token is None:
        ctx.throttle.failed()
        raise ApiError(
            403,
            "bad_code",
            "that pairing code is wrong, expired or already used",
            f"run `{command('pair')}` on the server and type the new code within 5 minutes",
        )
    client_id = find_client(ctx.store, token)
    log.info("client paired", extra={"client_id": client_id})
    return web.json_response({"token": token, "client_id": client_id}, status=201)


async def get_status(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        fingerprint: str | None = ca_fingerprint(ctx.data_dir)
    except CertificateError:
        fingerprint = None
    now = time.monotonic()
    if ctx._trust_checked is None or now - ctx._trust_checked[0] > TRUST_RECHECK:
        ctx._trust_checked = (now, await asyncio.to_thread(_system_trusts_ca, ctx.data_dir))
    sites = ctx.store.sites(ctx.builtin_sites)
    proxy = dict(ctx.proxy_status())
    host, sep, port = str(proxy.get("address", "")).rpartition(":")
    if sep and host.strip("[]") in ("0.0.0.0", "::"):
        # Bound to every interface: the client reaches the proxy by the name it used for the API.
        asked = host_name(request.headers.get("Host")) or "127.0.0.1"
        proxy["address"] = f"[{asked}]:{port}" if ":" in asked else f"{asked}:{port}"
    return web.json_response(
        {
            "version": metadata.version("sfumato"),
            "model": ctx.model_info(),
            "proxy": proxy,
            "ca": {
                "fingerprint": fingerprint,
                "algorithm": "sha256",
                "trusted": ctx._trust_checked[1],  # by this server machine's system store
                "url": "/v1/ca.pem",
            },
            "counts": {
                **ctx.store.activity_counts(),
                "sites_enabled": sum(s.enabled for s in sites),
                "clients": len(ctx.store.clients()),
            },
            "defaults": ctx.store.defaults().__dict__,
        }
    )


async def get_sites(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return web.json_response(
        {
            "sites": [s.to_json() for s in ctx.store.sites(ctx.builtin_sites)],
            "defaults": ctx.store.defaults().__dict__,
        }
    )


async def put_site(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    body = await read_json_object(request, {"enabled", "strength"})
    if not body:
        raise ApiError(400, "invalid", "send enabled and/or strength")
    strength = body.get("strength")
    try:
        site = ctx.store.set_site(
            request.match_info["id"],
            ctx.builtin_sites,
            enabled=body.get("enabled"),
            strength=strength,
            clear_strength="strength" in body and strength is None,
        )
    except (SettingsError, NotFound, Conflict) as exc:
        raise _settings_error(exc) from exc
    _changed(ctx)
    return web.json_response(site.to_json())


async def post_site(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    body = await read_json_object(request, {"id", "name", "hosts", "enabled"})
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ApiError(400, "invalid", "enabled must be true or false")
    try:
        site = ctx.store.add_custom_site(
            body.get("id"), body.get("name"), body.get("hosts"), ctx.builtin_sites, enabled=enabled
        )
    except (SettingsError, NotFound, Conflict) as exc:
        raise _settings_error(exc) from exc
    _changed(ctx)
    return web.json_response(site.to_json(), status=201)


async def delete_site(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        ctx.store.delete_custom_site(request.match_info["id"], ctx.builtin_sites)
    except (SettingsError, NotFound, Conflict) as exc:
        raise _settings_error(exc) from exc
    _changed(ctx)
    return web.Response(status=204)


async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTEXT].store.defaults().__dict__)


async def put_settings(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    body = await read_json_object(request, {"strength", "fail_mode", "body_limit"})
    try:
        defaults = ctx.store.update_defaults(**body)
    except SettingsError as exc:
        raise _settings_error(exc) from exc
    _changed(ctx)
    return web.json_response(defaults.__dict__)


def _int_param(
    request: web.Request, name: str, default: int | None, lo: int, hi: int
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid", f"{name} must be a whole number") from None
    if not lo <= value <= hi:
        raise ApiError(400, "invalid", f"{name} must be between {lo} and {hi}")
    return value


async def get_activity(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    limit = _int_param(request, "limit", 50, 1, 500) or 50
    before = _int_param(request, "before", None, 1, 2**62)
    site = request.query.get("site") or None
    events = ctx.store.activity(limit=limit, before=before, site=site)
    return web.json_response(
        {
            "events": [e.to_json() for e in events],
            "next_before": events[-1].id if len(events) == limit else None,
        }
    )


async def get_clients(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return web.json_response(
        {"clients": [c.to_json() for c in ctx.store.clients()], "you": request[CLIENT_ID]}
    )


async def delete_client(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    try:
        ctx.store.revoke_client(int(request.match_info["id"]))
    except (ValueError, NotFound) as exc:
        raise ApiError(404, "not_found", f"no paired client {request.match_info['id']}") from exc
    return web.Response(status=204)


def _system_trusts_ca(data_dir: Path) -> bool | None:
    from proxy.doctor import system_trusts

    try:
        return system_trusts(ca_certificate_pem(data_dir))
    except CertificateError:
        return None


def engine_strength(value: str) -> str | float:
    """The settings' text form to what perturb.protect takes: a preset name or a float."""
    return value if value.isalpha() else float(value)


async def post_protect(request: web.Request) -> web.Response:
    """The extension's preview: the same engine call the proxy makes, off the event loop."""
    import perturb  # deferred: the engine loads numpy/onnxruntime, which `--help` should not pay

    ctx = request.app[CONTEXT]
    defaults = ctx.store.defaults()
    try:
        strength = validate_strength(request.query.get("strength", defaults.strength))
    except SettingsError as exc:
        raise _settings_error(exc) from exc
    data = await read_limited(request, defaults.body_limit)
    if ctx._protect_slots is None:
        ctx._protect_slots = asyncio.Semaphore(ctx.protect_workers)
    if ctx._protect_pending >= ctx.protect_workers + ctx.protect_queue:
        raise ApiError(
            503,
            "busy",
            "the engine is busy with other previews",
            "retry in a moment",
            **{"Retry-After": "2"},
        )
    ctx._protect_pending += 1
    try:
        async with ctx._protect_slots:
            result = await asyncio.to_thread(
                perturb.protect,
                data,
                strength=engine_strength(strength),
                model=ctx.model(),
                time_limit=ctx.protect_time_limit,
            )
    except perturb.ProtectError as exc:
        status = ENGINE_ERROR_STATUS.get(type(exc).__name__, 422)
        raise ApiError(
            status, type(exc).__name__, exc.message, getattr(exc, "hint", "") or ""
        ) from exc
    finally:
        ctx._protect_pending -= 1
    report = result.report
    timings = {k: round(v * 1000, 1) for k, v in (report.timings or {}).items()}
    headers = {
        "X-Sfumato-Model": str(report.model_id),
        "X-Sfumato-Strength": str(report.strength),
        "X-Sfumato-PSNR": "inf" if report.psnr is None else f"{report.psnr:.2f}",
        "X-Sfumato-Timings": ", ".join(f"{k}={v}" for k, v in timings.items()),
        "Server-Timing": ", ".join(f"{k};dur={v}" for k, v in timings.items()),
    }
    return web.Response(body=result.data, content_type=result.mime, headers=headers)


def create_app(ctx: ControlContext) -> web.Application:
    """The `/v1` application; the server and the tests both start it with this."""
    # Bodies are read through read_limited with per-route limits, so aiohttp's global cap is
    # only a backstop above the largest allowed body limit.
    app = web.Application(middlewares=[defences], client_max_size=1024**3 + 1)
    app[CONTEXT] = ctx
    app.router.add_get("/v1/ca.pem", get_ca)
    app.router.add_post("/v1/pair", post_pair)
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/v1/sites", get_sites)
    app.router.add_post("/v1/sites", post_site)
    app.router.add_put("/v1/sites/{id}", put_site)
    app.router.add_delete("/v1/sites/{id}", delete_site)
    app.router.add_get("/v1/settings", get_settings)
    app.router.add_put("/v1/settings", put_settings)
    app.router.add_get("/v1/activity", get_activity)
    app.router.add_get("/v1/clients", get_clients)
    app.router.add_delete("/v1/clients/{id}", delete_client)
    app.router.add_post("/v1/protect", post_protect)
    return app
