"""Real parts for the end-to-end tests: a test CA, an HTTPS upload server impersonating the
sites (aiohttp), and an in-process mitmproxy (DumpMaster) on a free loopback port with the
Sfumato addon and a test-only addon that sends every upstream connection to the local server.

Nothing leaves loopback: the client asks the proxy for `www.deviantart.com`, the proxy connects
(lazily) to 127.0.0.1:<server port> with SNI `www.deviantart.com`, and the server presents a
certificate for the site names signed by the test CA that the proxy trusts.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mitmproxy import options
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from mitmproxy.tools.dump import DumpMaster

from proxy.addon import Sfumato

SITE_NAMES = [
    "deviantart.com",
    "*.deviantart.com",
    "*.pixiv.net",
    "*.tumblr.com",
    "*.instagram.com",
    "*.threads.net",
    "*.us-east.host.bsky.network",
    "pds.example.org",
    "*.x.com",
    "*.s3.amazonaws.com",
    "*.s3.us-east-1.amazonaws.com",
    "*.artstation.com",
    "unprotected.example",
]
TEST_CA_NAME = "Sfumato Test Upstream CA"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_test_pki(directory: Path) -> tuple[Path, Path, Path]:
    """(CA cert, server cert, server key) PEM files; the server cert covers SITE_NAMES."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(TEST_CA_NAME))
        .issuer_name(_name(TEST_CA_NAME))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in SITE_NAMES]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("sfumato-test-upstream"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "test-ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Received:
    method: str
    host: str
    path: str
    headers: Mapping[str, str]  # case-insensitive, as HTTP
    body: bytes


@dataclass
class UploadServer:
    """Records every request; answers like the sites would (X INIT gets a media id)."""

    received: list[Received] = field(default_factory=list)
    next_media_id: int = 1000
    port: int = 0
    runner: web.AppRunner | None = None

    def matching(self, token: str) -> list[Received]:
        return [r for r in self.received if token in r.path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(
            Received(request.method, request.host, request.path_qs, request.headers.copy(), body)
        )
        if "command=INIT" in request.query_string:
            self.next_media_id += 1
            media_id = str(self.next_media_id)
            return web.json_response({"media_id": int(media_id), "media_id_string": media_id})
        if "command=APPEND" in request.query_string:
            return web.Response(status=204)
        return web.json_response({"ok": True, "received": len(body)})

    async def start(self, cert: Path, key: Path) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=context).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class RedirectToLocal:
    """Test-only addon: everything goes to the local server instead of the real sites.

    Decrypted requests are redirected in `requestheaders` (Host header kept), so mitmproxy
    reuses its upstream connections as it would for a real site; tunnelled connections (sites
    not enabled) are redirected when they connect, SNI kept.
    """

    def __init__(self, port: int) -> None:
        self.port = port

    def requestheaders(self, flow) -> None:
        if flow.response is not None:
            return
        host_header = flow.request.host_header
        flow.request.host = "127.0.0.1"
        flow.request.port = self.port
        if host_header:
            flow.request.host_header = host_header

    def server_connect(self, data: ServerConnectionHookData) -> None:
        if data.server.address and data.server.address[0] != "127.0.0.1":
            data.server.address = ("127.0.0.1", self.port)


@dataclass
class ProxyHarness:
    master: DumpMaster
    sfumato: Sfumato
    port: int
    ca_file: Path  # mitmproxy's CA: what clients trust
    task: asyncio.Task

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(self, **values) -> None:
        self.master.options.update(**values)

    async def stop(self) -> None:
        self.master.shutdown()
        await asyncio.wait_for(self.task, 10)


async def start_proxy(
    confdir: Path, upstream_ca: Path, upstream_port: int, **sfumato_options
) -> ProxyHarness:
    port = free_port()
    opts = options.Options(listen_host="127.0.0.1", listen_port=port, confdir=str(confdir))
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    # options declared by mitmproxy's own addons exist only once the master has loaded them
    opts.update(connection_strategy="lazy", ssl_verify_upstream_trusted_ca=str(upstream_ca))
    sfumato = Sfumato()
    master.addons.add(sfumato, RedirectToLocal(upstream_port))
    opts.update(**sfumato_options)
    task = asyncio.create_task(master.run())
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        break
    else:
        raise RuntimeError("mitmproxy did not start listening")
    return ProxyHarness(master, sfumato, port, confdir / "mitmproxy-ca-cert.pem", task)


async def peer_certificate_issuer(proxy_port: int, host: str, trust: Path) -> str:
    """CONNECT through the proxy, do TLS with `host`, return the issuer CN of what we got."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    await writer.drain()
    status = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in status.split(b"\r\n", 1)[0], status
    context = ssl.create_default_context(cafile=str(trust))
    await writer.start_tls(context, server_hostname=host)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    cert = x509.load_der_x509_certificate(der)
    return cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


ALL_SITES = "deviantart,pixiv,tumblr,instagram,bluesky,x,cara,artstation"
DA_UPLOAD = "https://www.deviantart.com/_puppy/dashared/deviation/submit/upload/deviation"


async def send(
    proxy: ProxyHarness,
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes,
    trust: Path | None = None,
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:
    """One request through the proxy; (status, headers, body) of the answer."""
    context = ssl.create_default_context(cafile=str(trust or proxy.ca_file))
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    async with session.request(
        method, url, data=body, headers=hdrs, proxy=proxy.url, ssl=context
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def token() -> str:
    """A unique marker to find one request among those the upload server received."""
    return uuid.uuid4().hex[:12]
