"""`sfumato serve` as users run it: a subprocess on free ports, a temp data dir, a tiny model.

Pair with a code from `sfumato pair`, enable DeviantArt through the API, upload through the proxy
with curl (trusting the CA from the data dir; the site name reaches a local HTTPS server through a
test addon passed with -s) → the site receives a protected image and the activity log says so;
disable → the original bytes pass; a change from `sfumato sites` applies to the running server;
SIGTERM → clean exit; restart → state kept; every file 0600.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import bcrypt
import pytest

from perturb import inspect_marker
from tests.cli.printed_commands import problems
from tests.proxy.e2e_support import UploadServer, free_port, make_test_pki
from tests.server.conftest import png_bytes

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl"),
]

HERE = Path(__file__).resolve().parent
UPLOAD_URL = "https://www.deviantart.com/_puppy/dashared/deviation/submit/upload/deviation"


def sfumato_command() -> list[str]:
    script = Path(sys.executable).parent / "sfumato"
    return [str(script)] if script.exists() else [sys.executable, "-m", "proxy.cli"]


class Server:
    """One `sfumato serve` subprocess and the facts a test needs about it."""

    def __init__(
        self,
        data_dir: Path,
        model: Path,
        upstream_ca: Path,
        upstream_port: int,
        *extra: str,
    ):
        self.data_dir = data_dir
        self.proxy_port = free_port()
        self.api_port = free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.env = {**os.environ, "SFUMATO_MODEL": str(model)}
        self.args = [
            *sfumato_command(),
            "serve",
            "--data-dir", str(data_dir),
            "--proxy-port", str(self.proxy_port),
            "--api-port", str(self.api_port),
            "-s", str(HERE / "redirect_to_local.py"),
            "--set", f"test_upstream_port={upstream_port}",
            "--set", "connection_strategy=lazy",
            "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}",
            "--grace", "3",
            *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[str] | None = None
        # Files, not pipes: a pipe nobody reads fills up and blocks the server's logging.
        self.logs = data_dir.parent / f"serve-{self.api_port}"

    def output(self) -> tuple[str, str]:
        return (
            self.logs.with_suffix(".out").read_text(),
            self.logs.with_suffix(".err").read_text(),
        )

    async def start(self) -> None:
        with (
            self.logs.with_suffix(".out").open("w") as out,
            self.logs.with_suffix(".err").open("w") as err,
        ):
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=err)
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    out, err = self.output()
                    raise AssertionError(f"serve exited {self.proc.returncode}: {out}\n{err}")
                if (self.data_dir / "server.json").exists():
                    try:
                        async with session.get(f"{self.api}/v1/ca.pem") as response:
                            if response.status == 200:
                                return
                    except aiohttp.ClientError:
                        pass
                await asyncio.sleep(0.1)
        raise AssertionError("serve did not come up within 60 s")

    def terminate(self) -> tuple[int, float, str, str]:
        """SIGTERM; returns (exit status, seconds to exit, stdout, stderr)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        seconds = time.monotonic() - started
        return self.proc.returncode, seconds, *self.output()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*sfumato_command(), *args], env=env, capture_output=True, text=True, timeout=60
    )


async def curl_upload(server: Server, bundle: Path, image: Path, *extra: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "30", *extra,
        "--proxy", f"http://127.0.0.1:{server.proxy_port}",
        "--cacert", str(bundle),
        "-F", f"file=@{image};type=image/png",
        "-F", "title=Sunset study",
        "-o", "/dev/null", "-w", "%{http_code}",
        UPLOAD_URL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return int(out.decode() or 0), err.decode()


def file_part(body: bytes, content_type: str) -> tuple[bytes, bytes]:
    """(file bytes, title bytes) from the multipart body the site received."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    parts = {}
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, content = chunk[2:].partition(b"\r\n\r\n")
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0]
        parts[name] = content[:-2]  # the CRLF before the next boundary
    return parts[b"file"], parts[b"title"]


async def test_serve_end_to_end(tmp_path: Path, tiny_model: Path):
    upstream_ca, cert, key = make_test_pki(tmp_path)
    site = UploadServer()
    await site.start(cert, key)
    data_dir = tmp_path / "data"
    image = tmp_path / "art.png"
    original = png_bytes(64, 48, seed=7)
    image.write_bytes(original)
    server = Server(data_dir, tiny_model, upstream_ca, site.port)
    try:
        await server.start()
        # a fresh data dir: the first start explains the next steps
        # (stdout is read at exit below)

        # curl trusts the Sfumato CA from the data dir (for intercepted sites) and the test
        # upstream CA (for sites tunnelled straight through while protection is off)
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(
            (data_dir / "mitmproxy-ca-cert.pem").read_bytes() + upstream_ca.read_bytes()
        )

        # pair: the code comes from the CLI while the server runs
        pair = run_cli("pair", "--data-dir", str(data_dir), "--json", env=server.env)
        assert pair.returncode == 0, pair.stderr
        code = json.loads(pair.stdout)["code"]
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{server.api}/v1/pair", json={"code": code, "client": "e2e"}
            ) as response:
                assert response.status == 201
                token = (await response.json())["token"]
            auth = {"Authorization": f"Bearer {token}"}

            async with http.put(
                f"{server.api}/v1/sites/deviantart", json={"enabled": True}, headers=auth
            ) as response:
                assert response.status == 200

            # enabled: the site receives a protected image, other parts byte-exact
            status, _ = await curl_upload(server, bundle, image)
            assert status == 200
            [received] = site.matching("/deviation/submit")
            sent_image, title = file_part(received.body, received.headers["Content-Type"])
            assert title == b"Sunset study"
            assert sent_image != original and inspect_marker(sent_image) is not None
            async with http.get(f"{server.api}/v1/activity", headers=auth) as response:
                events = (await response.json())["events"]
            assert events[0]["outcome"] == "protected" and events[0]["site"] == "deviantart"
            assert events[0]["size"] > 0 and events[0]["model_id"] == "tiny-test"

            # disabled through the API: the original bytes pass, nothing is logged
            async with http.put(
                f"{server.api}/v1/sites/deviantart", json={"enabled": False}, headers=auth
            ) as response:
                assert response.status == 200
            status, _ = await curl_upload(server, bundle, image)
            assert status == 200
            sent_image, _ = file_part(
                site.received[-1].body, site.received[-1].headers["Content-Type"]
            )
            assert sent_image == original
            async with http.get(f"{server.api}/v1/activity", headers=auth) as response:
                assert len((await response.json())["events"]) == 1

            # enabled from the CLI while serve runs: applied within the watch interval
            enable = run_cli(
                "sites", "--data-dir", str(data_dir), "enable", "deviantart", env=server.env
            )
            assert enable.returncode == 0, enable.stdout
            await asyncio.sleep(2.0)
            status, _ = await curl_upload(server, bundle, image)
            assert status == 200
            sent_image, _ = file_part(
                site.received[-1].body, site.received[-1].headers["Content-Type"]
            )
            assert inspect_marker(sent_image) is not None

            # a second server on the same data dir is refused, the first keeps running
            proxy_port = free_port()
            api_port = next(p for p in iter(free_port, None) if p != proxy_port)
            second = run_cli(
                "serve", "--data-dir", str(data_dir),
                "--proxy-port", str(proxy_port), "--api-port", str(api_port),
                env=server.env,
            )  # fmt: skip
            assert second.returncode == 2 and "already uses" in second.stderr

            # doctor sees the running server and forwards through its proxy
            doctor = run_cli("doctor", "--data-dir", str(data_dir), "--json", env=server.env)
            checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
            for name in ("data directory", "database", "model", "CA certificate", "proxy"):
                assert checks[name]["ok"], checks[name]
            assert checks["proxy port"]["ok"]
            assert "used by Sfumato" in checks["proxy port"]["detail"]
            assert not checks["system trust"]["ok"] and checks["system trust"]["fix"]
            assert doctor.returncode == 1  # the untrusted CA is a problem

        code_, seconds, out, err = server.terminate()
        assert code_ == 0, err
        assert seconds < 5
        assert "Next steps" in out and "sfumato pair --data-dir" in out
        assert problems(out) == []  # every command in the guide runs as printed
        assert token not in err and "Sunset" not in err  # no tokens or bodies in the logs
        assert not (data_dir / "server.json").exists()
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        for path in data_dir.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

        # restart: same token, same sites, same activity; no first-start guide
        server2 = Server(data_dir, tiny_model, upstream_ca, site.port)
        try:
            await server2.start()
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{server2.api}/v1/sites", headers=auth) as response:
                    assert response.status == 200
                    sites = {s["id"]: s for s in (await response.json())["sites"]}
                assert sites["deviantart"]["enabled"] is True
                async with http.get(f"{server2.api}/v1/status", headers=auth) as response:
                    counts = (await response.json())["counts"]
                assert counts["protected"] == 2
            code2, _, out2, _ = server2.terminate()
            assert code2 == 0 and "Next steps" not in out2
        finally:
            server2.kill()
    finally:
        server.kill()
        await site.stop()


async def test_serve_refuses_to_start_without_a_model(tmp_path: Path):
    env = {**os.environ, "SFUMATO_MODEL": str(tmp_path / "nowhere.onnx")}
    result = run_cli(
        "serve", "--data-dir", str(tmp_path / "d"),
        "--proxy-port", str(free_port()), "--api-port", str(free_port()),
        env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "model missing" in result.stderr and "nowhere.onnx" in result.stderr


async def test_serve_refuses_open_proxy_without_auth(tmp_path: Path, tiny_model: Path):
    env = {**os.environ, "SFUMATO_MODEL": str(tiny_model)}
    result = run_cli(
        "serve", "--data-dir", str(tmp_path / "d"), "--proxy-host", "0.0.0.0",
        "--proxy-port", str(free_port()), "--api-port", str(free_port()),
        env=env,
    )  # fmt: skip
    assert result.returncode == 2 and "proxyauth" in result.stderr
    assert not (tmp_path / "d").exists()  # refused before creating anything


async def enable_deviantart(server: Server) -> dict[str, str]:
    pair = run_cli("pair", "--data-dir", str(server.data_dir), "--json", env=server.env)
    code = json.loads(pair.stdout)["code"]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.api}/v1/pair", json={"code": code, "client": "t"}) as r:
            auth = {"Authorization": f"Bearer {(await r.json())['token']}"}
        async with http.put(
            f"{server.api}/v1/sites/deviantart", json={"enabled": True}, headers=auth
        ) as r:
            assert r.status == 200
    return auth


def write_bundle(server: Server, upstream_ca: Path, path: Path) -> Path:
    path.write_bytes(
        (server.data_dir / "mitmproxy-ca-cert.pem").read_bytes() + upstream_ca.read_bytes()
    )
    return path


async def test_sigterm_lets_an_upload_in_flight_finish(tmp_path: Path):
    from tests.proxy.conftest import build_slow_model

    slow = build_slow_model(tmp_path / "slow")  # ~1-2 s per small image on 2 busy cores
    upstream_ca, cert, key = make_test_pki(tmp_path)
    site = UploadServer()
    await site.start(cert, key)
    image = tmp_path / "art.png"
    image.write_bytes(png_bytes(192, 192, seed=3))
    server = Server(tmp_path / "data", slow, upstream_ca, site.port, "--grace", "20")
    try:
        await server.start()
        auth = await enable_deviantart(server)
        bundle = write_bundle(server, upstream_ca, tmp_path / "bundle.pem")
        upload = asyncio.ensure_future(curl_upload(server, bundle, image))
        async with aiohttp.ClientSession() as http:
            for _ in range(400):
                async with http.get(f"{server.api}/v1/status", headers=auth) as r:
                    if (await r.json())["proxy"]["in_flight"]:
                        break
                await asyncio.sleep(0.025)
            else:
                raise AssertionError("the upload never showed as in flight")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        status, err = await upload
        assert status == 200, err
        [received] = site.matching("/deviation/submit")
        sent, _ = file_part(received.body, received.headers["Content-Type"])
        assert inspect_marker(sent) is not None  # protected, not cut off
        await asyncio.to_thread(server.proc.wait, timeout=30)
        _, err = server.output()
        assert server.proc.returncode == 0, err
        assert "in-flight requests abandoned" not in err
    finally:
        server.kill()
        await site.stop()


async def test_proxy_beyond_loopback_requires_proxy_auth(tmp_path: Path, tiny_model: Path):
    upstream_ca, cert, key = make_test_pki(tmp_path)
    site = UploadServer()
    await site.start(cert, key)
    image = tmp_path / "art.png"
    image.write_bytes(png_bytes(32, 32))
    htpasswd = tmp_path / "htpasswd"  # as docs/self-hosting.md makes it
    htpasswd.write_text(f"alice:{bcrypt.hashpw(b's3cret-pass', bcrypt.gensalt(4)).decode()}\n")
    server = Server(
        tmp_path / "data", tiny_model, upstream_ca, site.port,
        "--proxy-host", "0.0.0.0", "--api-host", "127.0.0.1",
        "--set", f"proxyauth=@{htpasswd}",
    )  # fmt: skip
    try:
        await server.start()
        bundle = write_bundle(server, upstream_ca, tmp_path / "bundle.pem")
        denied = await asyncio.create_subprocess_exec(
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_connect}",
            "--proxy", f"http://127.0.0.1:{server.proxy_port}", "--cacert", str(bundle),
            UPLOAD_URL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await denied.communicate()
        assert out.decode() == "407"
        status, err = await curl_upload(server, bundle, image, "--proxy-user", "alice:s3cret-pass")
        assert status == 200, err
        assert len(site.received) == 1
        code, _, _, err = server.terminate()
        assert code == 0 and "s3cret" not in err
    finally:
        server.kill()
        await site.stop()
