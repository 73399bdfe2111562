"""`sfumato serve`: the embedded mitmproxy (with the Sfumato addon) and the control API, one loop.

Startup refuses, with a message saying what to do, rather than run half-configured: no model, a
port taken, a proxy listening beyond loopback without `proxyauth`, a `--set` of an option the
settings store owns. Then: the data dir (0700), database (0600, migrated) and CA (0600) exist;
mitmproxy runs with its default addons plus Sfumato, `-s` scripts and `--set` options exactly as
`mitmdump` would take them; the API serves `/v1`; stored settings are applied to the addon and
re-applied whenever the database changes (the API, or `sfumato sites` from another process).

Shutdown on SIGTERM/SIGINT: stop accepting on both ports, let in-flight proxy flows and API
requests finish for up to `grace` seconds, then stop mitmproxy and close the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.certificate_authority import ca_cert_path, ensure_ca
from proxy.cli import command
from proxy.control_api import ControlContext, allowed_host_names, create_app
from proxy.data_dir import database_path, ensure_private_dir, make_private, private_umask
from proxy.doctor import running_server
from proxy.guidance import next_steps
from proxy.listen_address import connect_host, is_loopback, port_free
from proxy.live_settings import STORE_OPTIONS, ActivityRecorder, addon_options, builtin_sites
from proxy.pairing import PairingThrottle
from proxy.settings_store import SettingsStore, StoreUnavailable

log = logging.getLogger("sfumato.serve")

# mitmproxy options serve sets from its own flags; `--set` of these would bypass its checks.
FLAG_OPTIONS = {
    "listen_host": "--proxy-host",
    "listen_port": "--proxy-port",
    "confdir": "--data-dir",
}
RUNTIME_FILE = "server.json"  # where a running server says where it listens (for doctor)
WATCH_INTERVAL = 1.0  # seconds between checks for settings written by other processes


class ServeError(Exception):
    """serve cannot start; the message says why and what to do."""


@dataclass
class ServeConfig:
    data_dir: Path
    proxy_host: str = "127.0.0.1"
    proxy_port: int = 8080
    api_host: str | None = None  # default: the proxy's host
    api_port: int = 8765
    api_names: list[str] = field(default_factory=list)  # extra Host names the API answers to
    scripts: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)  # mitmproxy KEY=VALUE options
    grace: float = 5.0

    @property
    def api_bind(self) -> str:
        return self.api_host if self.api_host is not None else self.proxy_host


def parse_set(items: list[str]) -> dict[str, str]:
    """`--set KEY=VALUE` items as a dict (the last one wins), as mitmproxy reads them."""
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ServeError(f"--set {item!r}: expected KEY=VALUE, e.g. --set proxyauth=@htpasswd")
        parsed[key.strip()] = value
    return parsed


def check_config(config: ServeConfig) -> dict[str, str]:
    """Refuse unsafe or conflicting configurations before anything starts."""
    sets = parse_set(config.sets)
    owned = sorted(set(sets) & set(STORE_OPTIONS))
    if owned:
        raise ServeError(
            f"--set {', '.join(owned)}: these are stored settings; change them with "
            f"`{command('sites')} ...` or the API (PUT /v1/sites/ID, PUT /v1/settings): they "
            "apply at once"
        )
    flagged = sorted(set(sets) & set(FLAG_OPTIONS))
    if flagged:
        raise ServeError(
            "use " + ", ".join(f"{FLAG_OPTIONS[k]} instead of --set {k}" for k in flagged)
        )
    require_proxyauth([config.proxy_host], sets.get("proxyauth", ""))
    if config.proxy_port == config.api_port:
        raise ServeError("--proxy-port and --api-port must differ")
    for what, host, port in (
        ("proxy", config.proxy_host, config.proxy_port),
        ("API", config.api_bind, config.api_port),
    ):
        if not port_free(host, port):
            raise ServeError(
                f"cannot listen on {host}:{port} for the {what}: the port is in use (is Sfumato "
                f"already running? `{command('doctor', data_dir=config.data_dir)}` checks) or "
                f"{host} is not an address of this machine; change --{what.lower()}-port or "
                f"--{what.lower()}-host"
            )
    return sets


def require_proxyauth(listen_hosts: list[str], proxyauth: str) -> None:
    """Refuse a proxy reachable from other machines unless it asks for credentials."""
    exposed = [h for h in listen_hosts if not is_loopback(h)]
    if exposed and not proxyauth:
        raise ServeError(
            f"refusing to listen on {exposed[0] or '0.0.0.0'} without proxy authentication: "
            "anyone who can reach it could use your proxy. Add --set proxyauth=USER:PASS or "
            "--set proxyauth=@/path/to/htpasswd (see docs/self-hosting.md)"
        )


def mode_listen_hosts(modes: list[str], default_host: str) -> list[str]:
    """Where each mitmproxy mode (`--set mode=...`) will listen."""
    from mitmproxy.proxy.mode_specs import ProxyMode

    return [ProxyMode.parse(spec).listen_host(default_host) for spec in modes]


def load_model_or_fail(spec: str | None) -> Any:
    """The protection model, loaded now so a missing model stops serve at once."""
    from perturb.errors import ProtectError
    from perturb.models import load_model

    try:
        return load_model(spec or None)
    except ProtectError as exc:
        raise ServeError(
            f"model missing or unusable: {exc.message}. {exc.hint}. Sfumato never runs without "
            "its protection model"
        ) from exc


class ServeHooks:
    """A small addon: knows when the proxy is up and which flows are still in flight."""

    def __init__(self) -> None:
        self.state = "starting"
        self.inflight: set[str] = set()
        self.started = asyncio.Event()

    def running(self) -> None:
        self.state = "running"
        self.started.set()

    def requestheaders(self, flow: Any) -> None:
        self.inflight.add(flow.id)

    def response(self, flow: Any) -> None:
        self.inflight.discard(flow.id)

    def error(self, flow: Any) -> None:
        self.inflight.discard(flow.id)


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    with private_umask():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    make_private(path)


async def serve(
    config: ServeConfig,
    *,
    print_fn: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set). Returns the exit status."""
    from mitmproxy import exceptions as mitm_exceptions
    from mitmproxy import options
    from mitmproxy.tools.dump import DumpMaster

    from proxy.addon import Sfumato

    sets = check_config(config)
    other = running_server(config.data_dir)
    if other and other.get("pid") != os.getpid():
        raise ServeError(
            f"another Sfumato server (pid {other['pid']}, API {other.get('api')}) already uses "
            f"{config.data_dir}; stop it first, or use another --data-dir"
        )
    model_spec = sets.get("sfumato_model") or None
    model = load_model_or_fail(model_spec)

    data_dir = ensure_private_dir(config.data_dir)
    new_database = not database_path(data_dir).exists()
    try:
        store = SettingsStore.open(database_path(data_dir))
    except StoreUnavailable as exc:
        raise ServeError(str(exc)) from exc
    first_start = ensure_ca(data_dir) or new_database
    builtin = builtin_sites()

    opts = options.Options(
        confdir=str(data_dir), listen_host=config.proxy_host, listen_port=config.proxy_port
    )
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    hooks = ServeHooks()
    sfumato = Sfumato()
    master.addons.add(sfumato, hooks)
    try:
        # As mitmdump does: options first (deferred until scripts declare theirs), then scripts.
        opts.set(*config.sets, defer=True)
        if config.scripts:
            opts.update(scripts=[str(Path(s).expanduser()) for s in config.scripts])
        opts.update(**addon_options(store, builtin))
    except mitm_exceptions.OptionsError as exc:
        store.close()
        raise ServeError(f"invalid proxy option: {exc}") from exc
    # mitmproxy loads scripts from a task; their options are declared once it has run.
    deadline = time.monotonic() + 5
    while opts.deferred and config.scripts and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if opts.deferred:  # options nobody declared: a typo, or a script that failed to load
        store.close()
        raise ServeError(f"unknown option(s): {', '.join(sorted(opts.deferred))}")
    try:  # modes may name their own listen address (`--set mode=regular@0.0.0.0:8080`)
        require_proxyauth(mode_listen_hosts(list(opts.mode), opts.listen_host), opts.proxyauth)
    except ServeError:
        store.close()
        raise

    seen_version = store.data_version()

    def apply_settings() -> None:
        nonlocal seen_version
        opts.update(**addon_options(store, builtin))
        seen_version = store.data_version()

    sfumato.outcome_listeners.append(ActivityRecorder(store, lambda: model.id))
    proxy_address = f"{config.proxy_host}:{config.proxy_port}"

    def proxy_status() -> dict[str, Any]:
        return {
            "address": proxy_address,
            "state": hooks.state,
            "proxyauth": bool(opts.proxyauth),
            "in_flight": len(hooks.inflight),
        }

    def model_info() -> dict[str, Any]:
        return {
            "id": model.id,
            "version": model.version,
            "metrics": model.card.get("metrics", {}),
            "presets": model.presets,
        }

    ctx = ControlContext(
        store=store,
        data_dir=data_dir,
        builtin_sites=builtin,
        apply_settings=apply_settings,
        proxy_status=proxy_status,
        model_info=model_info,
        model=lambda: model_spec,
        allowed_hosts=allowed_host_names(config.api_bind, *config.api_names),
        throttle=PairingThrottle(),
        protect_workers=max(1, int(getattr(opts, "sfumato_workers", 1))),
        protect_time_limit=float(getattr(opts, "sfumato_timeout", 20)) * 3,
    )
    runner = web.AppRunner(create_app(ctx), access_log=None, shutdown_timeout=config.grace)
    await runner.setup()
    site = web.TCPSite(runner, config.api_bind, config.api_port)
    try:
        await site.start()
    except OSError as exc:  # taken between check_config and now, or not an address of ours
        await runner.cleanup()
        store.close()
        where = f"{config.api_bind}:{config.api_port}"
        raise ServeError(f"the API cannot listen on {where}: {exc}") from exc
    api_url = f"http://{connect_host(config.api_bind)}:{config.api_port}"

    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    installed: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)

    master_task = asyncio.ensure_future(master.run())
    runtime_file = data_dir / RUNTIME_FILE
    try:
        started = asyncio.ensure_future(hooks.started.wait())
        await asyncio.wait({master_task, started}, return_when=asyncio.FIRST_COMPLETED)
        if master_task.done():
            started.cancel()
            raise ServeError("the proxy stopped during startup (see the log above)")
        write_private_json(
            runtime_file,
            {
                "pid": os.getpid(),
                "proxy": proxy_address,
                "api": api_url,
                "data_dir": str(data_dir),
                "started": time.time(),
            },
        )
        log.info(
            "serving",
            extra={"proxy": proxy_address, "api": api_url, "model": model.id, "pid": os.getpid()},
        )
        if first_start:
            print_fn(
                next_steps(
                    ca_cert_path(data_dir), proxy=proxy_address, api=api_url, data_dir=data_dir
                )
            )
        else:
            print_fn(f"Sfumato: proxy on {proxy_address}, control API on {api_url}")

        while not stop.is_set() and not master_task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_INTERVAL)
            if store.data_version() != seen_version:
                try:
                    apply_settings()
                    log.info("settings reloaded")
                except Exception:
                    log.exception("stored settings could not be applied")
                    seen_version = store.data_version()
        log.info("shutting down", extra={"in_flight": len(hooks.inflight)})
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await _shut_down(master, master_task, hooks, site, runner, config.grace)
        store.close()
        with contextlib.suppress(FileNotFoundError):
            runtime_file.unlink()
    log.info("stopped")
    return 0


async def _shut_down(
    master: Any,
    master_task: asyncio.Future[None],
    hooks: ServeHooks,
    site: web.TCPSite,
    runner: web.AppRunner,
    grace: float,
) -> None:
    """Stop accepting, let in-flight work finish (bounded by `grace`), then stop everything."""
    deadline = time.monotonic() + grace
    hooks.state = "stopping"
    if not master_task.done():
        with contextlib.suppress(Exception):
            master.options.update(server=False)  # closes the listening socket, keeps connections
    await site.stop()
    while hooks.inflight and time.monotonic() < deadline and not master_task.done():
        await asyncio.sleep(0.05)
    if hooks.inflight:
        log.warning("in-flight requests abandoned", extra={"count": len(hooks.inflight)})
    master.shutdown()
    try:
        await asyncio.wait_for(master_task, max(0.5, deadline - time.monotonic()))
    except (TimeoutError, asyncio.CancelledError):
        log.warning("proxy did not stop in time")
    except SystemExit:  # mitmproxy's errorcheck exits on startup errors
        pass
    await runner.cleanup()
    hooks.state = "stopped"
