"""`sfumato doctor`'s checks: each finds one thing that would stop protection, and says the fix.

Checks look, they never change anything (no database or CA is created by looking). A running
server is found through `server.json` in the data dir, which `sfumato serve` writes on start and
removes on exit.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import ssl
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from proxy.certificate_authority import CertificateError, ca_cert_path, ca_certificate_pem
from proxy.cli import command, make_run_or, runnable
from proxy.data_dir import database_path
from proxy.listen_address import connect_host, port_free

_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----"
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Addresses:
    proxy_host: str = "127.0.0.1"
    proxy_port: int = 8080
    api_port: int = 8765
    api_host: str = "127.0.0.1"
    running_pid: int | None = None


def running_server(data_dir: Path) -> dict[str, Any] | None:
    """The runtime record of a live `sfumato serve` on this data dir, if any."""
    try:
        info = json.loads((data_dir / "server.json").read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) else None


def _split(address: str, default_port: int) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port) if port.isdigit() else default_port


def addresses(
    data_dir: Path,
    proxy_host: str | None = None,
    proxy_port: int | None = None,
    api_port: int | None = None,
) -> Addresses:
    """Where to look: flags first, else the running server's record, else the defaults."""
    base = Addresses()
    info = running_server(data_dir)
    if info:
        p_host, p_port = _split(str(info.get("proxy", "")), base.proxy_port)
        a_host, a_port = _split(str(info.get("api", "")).removeprefix("http://"), base.api_port)
        base = Addresses(p_host, p_port, a_port, a_host, int(info["pid"]))
    return Addresses(
        proxy_host or base.proxy_host,
        proxy_port or base.proxy_port,
        api_port or base.api_port,
        base.api_host,
        base.running_pid,
    )


def check_data_dir(data_dir: Path) -> Check:
    if not data_dir.is_dir():
        return Check(
            "data directory",
            False,
            f"{data_dir} does not exist yet",
            f"start Sfumato once to create it: `{command('serve', data_dir=data_dir)}`",
        )
    loose = []
    for path in [data_dir, *data_dir.iterdir()]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            loose.append(f"{path.name or path} ({mode:o})")
    if loose:
        return Check(
            "data directory",
            False,
            f"readable by other users: {', '.join(loose)}",
            f"chmod 700 {data_dir} && chmod 600 {data_dir}/*",
        )
    return Check("data directory", True, f"{data_dir} (private)")


def check_database(data_dir: Path) -> Check:
    import sqlite3

    from proxy.settings_store import SCHEMA_VERSION

    path = database_path(data_dir)
    if not path.exists():
        return Check(
            "database",
            False,
            f"{path} does not exist yet",
            f"start Sfumato once to create it: `{command('serve', data_dir=data_dir)}`",
        )
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("SELECT 1 FROM sqlite_master").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check(
            "database",
            False,
            f"{path} cannot be read: {exc}",
            "restore it from a backup of the data directory, or move it away to start afresh",
        )
    if version > SCHEMA_VERSION:
        return Check(
            "database",
            False,
            f"schema version {version} is newer than this Sfumato ({SCHEMA_VERSION})",
            "upgrade Sfumato",
        )
    return Check("database", True, f"{path.name}, schema version {version}")


def check_model(spec: str | None) -> Check:
    from perturb.errors import ProtectError
    from perturb.models import load_model

    try:
        model = load_model(spec or None)
    except ProtectError as exc:
        return Check("model", False, exc.message, exc.hint)
    return Check("model", True, f"{model.id} {model.version} loads ({model.path.name})")


def check_ca(data_dir: Path) -> tuple[Check, bytes | None]:
    try:
        pem = ca_certificate_pem(data_dir)
    except CertificateError as exc:
        path = ca_cert_path(data_dir)
        if path.exists():  # damaged: the message says what to do
            detail, _, fix = str(exc).partition("; ")
            return Check("CA certificate", False, detail, runnable(fix)), None
        fix = f"start Sfumato once to create it: `{command('serve', data_dir=data_dir)}`"
        return Check("CA certificate", False, f"{path} does not exist yet", fix), None
    return Check("CA certificate", True, str(ca_cert_path(data_dir))), pem


def _der(pem: bytes) -> list[bytes]:
    out = []
    for match in _PEM_BLOCK.finditer(pem):
        try:
            out.append(base64.b64decode(b"".join(match.group(1).split())))
        except ValueError:
            continue
    return out


def trust_store_files() -> list[Path]:
    """The system's CA bundle files and directories as OpenSSL (and so Python, curl) use them."""
    paths = ssl.get_default_verify_paths()
    found: list[Path] = []
    for file in (paths.cafile, paths.openssl_cafile):
        if file and Path(file).is_file() and Path(file) not in found:
            found.append(Path(file))
    for directory in (paths.capath, paths.openssl_capath):
        if directory and Path(directory).is_dir():
            for entry in sorted(Path(directory).iterdir()):
                if entry.is_file() and entry not in found:
                    found.append(entry)
    return found


def system_trusts(ca_pem: bytes, stores: list[Path] | None = None) -> bool | None:
    """Whether the CA is in the system trust store (None: no store found to look in)."""
    ours = _der(ca_pem)[0]
    stores = trust_store_files() if stores is None else stores
    if not stores:
        return None
    for path in stores:
        try:
            if ours in _der(path.read_bytes()):
                return True
        except OSError:
            continue
    return False


def check_trust(ca_pem: bytes | None, ca_file: Path, data_dir: Path | None = None) -> Check:
    if ca_pem is None:
        return Check(
            "system trust", False, "no CA to check yet", "create the CA first (see above)"
        )
    trusted = system_trusts(ca_pem)
    browsers = "Firefox and Chromium on Linux keep their own stores: import it there too"
    guide = f"`{command('doctor', '--guide', data_dir=data_dir)}`"
    if trusted is None:
        return Check(
            "system trust",
            False,
            "no system trust store found to check",
            f"trust {ca_file} as {guide} shows; {browsers}",
        )
    if not trusted:
        return Check(
            "system trust",
            False,
            "the system does not trust Sfumato's CA yet (HTTPS through the proxy will fail)",
            f"sudo cp {ca_file} /usr/local/share/ca-certificates/sfumato.crt && "
            f"sudo update-ca-certificates (Linux; other systems: {guide}); "
            f"{browsers}",
        )
    return Check("system trust", True, f"trusted by the system store; {browsers}")


def check_ports(where: Addresses, data_dir: Path | None = None) -> list[Check]:
    checks = []
    for what, host, port, flag in (
        ("proxy port", where.proxy_host, where.proxy_port, "--proxy-port"),
        ("API port", where.api_host, where.api_port, "--api-port"),
    ):
        if where.running_pid is not None:
            pid = where.running_pid
            checks.append(Check(what, True, f"{host}:{port} is used by Sfumato (pid {pid})"))
        elif port_free(host, port):
            checks.append(Check(what, True, f"{host}:{port} is free"))
        else:
            checks.append(
                Check(
                    what,
                    False,
                    f"{host}:{port} is taken by another program",
                    "stop that program, or start Sfumato on another port: "
                    f"`{command('serve', flag, 'PORT', data_dir=data_dir)}`",
                )
            )
    return checks


def check_proxy(
    where: Addresses, ca_pem: bytes | None, timeout: float = 3.0, data_dir: Path | None = None
) -> Check:
    """Fetch the API's CA through the proxy: proves the proxy accepts and forwards requests."""
    if where.running_pid is None:
        return Check(
            "proxy",
            False,
            "Sfumato is not running",
            f"start it: `{command('serve', data_dir=data_dir)}`{make_run_or(data_dir)}",
        )
    host = connect_host(where.proxy_host)
    url = f"http://{connect_host(where.api_host)}:{where.api_port}/v1/ca.pem"
    conn = http.client.HTTPConnection(host, where.proxy_port, timeout=timeout)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        return Check(
            "proxy",
            False,
            f"cannot reach the proxy at {host}:{where.proxy_port}: {exc}",
            "check Sfumato's log (the terminal or journal it runs in); restart it",
        )
    finally:
        conn.close()
    if response.status == 407:
        return Check("proxy", True, f"{host}:{where.proxy_port} answers (proxy auth required)")
    if response.status == 200 and ca_pem is not None and _der(body) == _der(ca_pem):
        return Check("proxy", True, f"{host}:{where.proxy_port} forwards requests")
    return Check(
        "proxy",
        False,
        f"{host}:{where.proxy_port} answered {response.status} instead of forwarding",
        "is another proxy on that port? start Sfumato on another one: "
        f"`{command('serve', '--proxy-port', 'PORT', data_dir=data_dir)}`",
    )


def run_checks(data_dir: Path, model: str | None, where: Addresses) -> list[Check]:
    ca_check, pem = check_ca(data_dir)
    return [
        check_data_dir(data_dir),
        check_database(data_dir),
        check_model(model),
        ca_check,
        check_trust(pem, ca_cert_path(data_dir), data_dir),
        *check_ports(where, data_dir),
        check_proxy(where, pem, data_dir=data_dir),
    ]
