"""`sfumato serve` as a process: cold start, SIGTERM-to-exit, control API latency, and the cost
of the preview endpoint (`POST /v1/protect`) over calling `perturb.protect` in process.

Starts the real `sfumato serve` on free loopback ports with a temporary data dir (fresh CA and
database, so "cold start" includes creating them), runs the measurements, stops it with SIGTERM.
Prints a table and writes bench/results/serve.json.

    .venv/bin/python bench/serve.py                # shipped model (perturb.models.DEFAULT_MODEL)
    .venv/bin/python bench/serve.py --model PATH   # any model
    .venv/bin/python bench/serve.py --tiny         # the test model (plumbing only)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

REQUESTS = 200
PREVIEW_RUNS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def image(megapixels: float, fmt: str) -> bytes:
    side = int((megapixels * 1e6) ** 0.5)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, side, dtype=np.float32)[None, :, None]
    pixels = np.clip(ramp + rng.normal(0, 20, (side, side, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_ready(proc: subprocess.Popen, api: str, data_dir: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(1200):
            if proc.poll() is not None:
                raise SystemExit(f"serve exited with status {proc.returncode}")
            if (data_dir / "server.json").exists():
                try:
                    async with http.get(f"{api}/v1/ca.pem") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
            await asyncio.sleep(0.02)
    raise SystemExit("serve did not become ready in 24 s")


async def measure(model: str) -> dict:
    import perturb

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        api = f"http://127.0.0.1:{free_port()}"
        args = [
            str(Path(sys.executable).parent / "sfumato"), "serve", "--data-dir", str(data_dir),
            "--proxy-port", str(free_port()), "--api-port", api.rsplit(":", 1)[1],
            "--model", model,
        ]  # fmt: skip
        started = time.perf_counter()
        log = (Path(tmp) / "serve.log").open("w")  # a pipe nobody reads would fill and block
        proc = subprocess.Popen(args, stdout=log, stderr=log)
        try:
            await wait_ready(proc, api, data_dir)
            results["cold_start_s"] = time.perf_counter() - started

            code = json.loads(
                subprocess.run(
                    [args[0], "pair", "--data-dir", str(data_dir), "--json"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout  # fmt: skip
            )["code"]
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{api}/v1/pair", json={"code": code, "client": "bench"}) as r:
                    auth = {"Authorization": f"Bearer {(await r.json())['token']}"}
                for path in ("/v1/status", "/v1/sites", "/v1/activity?limit=50"):
                    times = []
                    for _ in range(REQUESTS):
                        t = time.perf_counter()
                        async with http.get(api + path, headers=auth) as r:
                            await r.read()
                            assert r.status == 200, r.status
                        times.append((time.perf_counter() - t) * 1000)
                    results[f"GET {path}"] = {
                        "p50_ms": statistics.median(times),
                        "p95_ms": pct(times, 0.95),
                    }
                t_put = []
                for i in range(50):
                    t = time.perf_counter()
                    async with http.put(
                        f"{api}/v1/sites/pixiv", json={"enabled": i % 2 == 0}, headers=auth
                    ) as r:
                        assert r.status == 200
                    t_put.append((time.perf_counter() - t) * 1000)
                results["PUT /v1/sites/{id} (store + live apply)"] = {
                    "p50_ms": statistics.median(t_put),
                    "p95_ms": pct(t_put, 0.95),
                }
                for mp, fmt in ((1, "JPEG"), (1, "PNG"), (4, "JPEG")):
                    data = image(mp, fmt)
                    perturb.protect(data, model=model)  # warm the in-process session
                    direct, served = [], []
                    for _ in range(PREVIEW_RUNS):
                        t = time.perf_counter()
                        perturb.protect(data, model=model)
                        direct.append(time.perf_counter() - t)
                        t = time.perf_counter()
                        async with http.post(f"{api}/v1/protect", data=data, headers=auth) as r:
                            await r.read()
                            assert r.status == 200, await r.text()
                        served.append(time.perf_counter() - t)
                    d, s = statistics.median(direct), statistics.median(served)
                    results[f"POST /v1/protect {mp} MP {fmt}"] = {
                        "in_process_s": d,
                        "api_s": s,
                        "overhead_ms": (s - d) * 1000,
                        "bytes": len(data),
                    }
            t = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            results["sigterm_to_exit_s"] = time.perf_counter() - t
            results["exit_status"] = proc.returncode
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", help="model id or .onnx path")
    group.add_argument("--tiny", action="store_true", help="the tiny test model (plumbing only)")
    args = parser.parse_args()
    tmp_model = None
    if args.tiny:
        from tests.support.tiny_model import build_tiny_model

        tmp_model = tempfile.TemporaryDirectory()
        model = str(build_tiny_model(Path(tmp_model.name)))
    else:
        from perturb.models import resolve_model_path

        model = args.model or str(resolve_model_path(None))
    results = asyncio.run(measure(model))
    meta = {
        "model": Path(model).stem if model.endswith(".onnx") else model,
        "tiny_test_model": bool(args.tiny),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "requests_per_endpoint": REQUESTS,
        "preview_runs": PREVIEW_RUNS,
    }
    print(f"sfumato serve — model {meta['model']}, {meta['cpus']} CPUs")
    print(f"  cold start (new CA + database) to ready: {results['cold_start_s']:.2f} s")
    stop, status = results["sigterm_to_exit_s"], results["exit_status"]
    print(f"  SIGTERM to exit: {stop:.2f} s (status {status})")
    print(f"  {'request':<44} {'p50 ms':>8} {'p95 ms':>8}")
    for key, value in results.items():
        if key.startswith(("GET", "PUT")):
            print(f"  {key:<44} {value['p50_ms']:>8.1f} {value['p95_ms']:>8.1f}")
    print(f"  {'preview':<30} {'in process s':>12} {'via API s':>10} {'overhead ms':>12}")
    for key, value in results.items():
        if key.startswith("POST"):
            name = key.removeprefix("POST /v1/protect ")
            print(
                f"  {name:<30} {value['in_process_s']:>12.3f} {value['api_s']:>10.3f}"
                f" {value['overhead_ms']:>12.1f}"
            )
    out = ROOT / "bench" / "results" / "serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    if tmp_model is not None:
        tmp_model.cleanup()


if __name__ == "__main__":
    main()
