"""What the proxy costs: latency added to an upload (proxy vs direct, with the engine's own time
alongside) for 1, 4 and 12 MP, throughput and peak proxy memory with 4 and 16 concurrent
uploads, proxy memory over 200 uploads (it must not grow), and peak proxy memory under three
heavy loads -- 16 concurrent 4 MP uploads, 8 concurrent 60 MB uploads, one 100 MP image -- with
the peaks of the proxy's own budgets (upload bytes held, decoded pixels in flight) beside their
configured limits: the budgets must hold.

Real parts: `mitmdump -s proxy/addon.py` in its own process (its RSS is what we sample from
/proc), an HTTPS upload server impersonating DeviantArt (test CA), and aiohttp clients sending
DeviantArt-shaped multipart uploads. "Direct" sends the same request straight to the server.
Prints a table and writes bench/results/proxy.json.

    .venv/bin/python bench/proxy.py                # default model (tiny test model if none ships)
    .venv/bin/python bench/proxy.py --model PATH   # any model
    .venv/bin/python bench/proxy.py --quick        # fewer repetitions (smoke run)

    .venv/bin/python bench/proxy.py --loads-only    # just the heavy loads

Targets: added latency <= engine time + 50 ms (the engine time of the same upload, read from
the proxy's own Outcome through a small recorder script loaded into mitmdump); memory bounded
over 200 uploads; under the heavy loads, the budgets' peaks within their limits and the peak
RSS within the bound docs/serve.md states.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests.proxy.e2e_support import UploadServer, free_port, make_test_pki  # noqa: E402
from tests.proxy.helpers import MULTIPART_CT, file_field, form_field, multipart_body  # noqa: E402

# Loaded into mitmdump after proxy/addon.py: appends every Outcome to a JSON-lines file, so the
# benchmark can subtract the engine time of the very same upload (measured inside the proxy).
# It also answers `http://sfumato-bench.invalid/peaks` (through the proxy) with the budgets'
# peaks since the last such request, which starts a new measurement.
RECORDER_SCRIPT = """
import json
from mitmproxy import ctx, http

class OutcomeRecorder:
    def running(self):
        ctx.master.addons.get("sfumato").outcome_listeners.append(self.record)

    def record(self, outcome):
        with open({path!r}, "a") as out:
            out.write(json.dumps(outcome.to_dict()) + "\\n")

    def request(self, flow):
        if flow.request.pretty_host != "sfumato-bench.invalid":
            return
        sfumato = ctx.master.addons.get("sfumato")
        peaks = {{
            name: {{"peak": budget.peak, "limit": budget.limit, "in_use": budget.in_use}}
            for name, budget in (("buffer_bytes", sfumato.buffer), ("pixels", sfumato.pixels))
        }}
        sfumato.buffer.peak, sfumato.pixels.peak = sfumato.buffer.in_use, sfumato.pixels.in_use
        flow.response = http.Response.make(200, json.dumps(peaks))

addons = [OutcomeRecorder()]
"""
UPLOAD = "/_puppy/dashared/deviation/submit/upload/deviation"
HOST = "www.deviantart.com"
SIZES_MP = (1, 4, 12)
TARGET_OVERHEAD_S = 0.050
# Heavy loads run with a longer per-upload timeout: they measure memory, not the deadline.
LOAD_TIMEOUT_S = 120


def dims(megapixels: float) -> tuple[int, int]:
    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    return width, int(round(megapixels * 1e6 / width))


def make_jpeg(megapixels: float, seed: int = 0) -> bytes:
    """Artwork-like pixels (smooth colour fields plus grain), JPEG q90."""
    import numpy as np
    from PIL import Image

    width, height = dims(megapixels)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack(
        [
            128 + 90 * np.sin(x * fx + y * fy + c)
            for c, (fx, fy) in enumerate(((0.004, 0.007), (0.006, 0.003), (0.002, 0.005)))
        ],
        axis=-1,
    )
    pixels += rng.normal(0, 5, pixels.shape).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def make_noise_png(size_bytes: int) -> bytes:
    """A PNG of noise of about `size_bytes` (noise does not compress: ~3 bytes per pixel)."""
    import numpy as np
    from PIL import Image

    side = int((size_bytes / 3) ** 0.5)
    pixels = np.random.default_rng(60).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=1)
    return out.getvalue()


def upload_body(image: bytes) -> bytes:
    return multipart_body(
        form_field("csrf_token", b"0123456789abcdef"),
        file_field("upload_file", "art.jpg", "image/jpeg", image),
        form_field("title", b"benchmark"),
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Samples a process's RSS every 20 ms while active; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self.peak = rss_mb(self.pid)
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


class Bench:
    def __init__(
        self, model: str, workers: int | None, tmp: Path, extra: tuple[str, ...] = ()
    ) -> None:
        self.model = model
        self.workers = workers
        self.extra = extra
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = make_test_pki(tmp)
        self.server = UploadServer()
        self.proc: asyncio.subprocess.Process | None = None
        self.port = free_port()
        self.outcomes = tmp / "outcomes.jsonl"
        self._proxied_ssl: ssl.SSLContext | None = None
        self._direct_ssl: ssl.SSLContext | None = None

    async def start(self) -> None:
        await self.server.start(self.cert, self.key)
        recorder = self.tmp / "outcome_recorder.py"
        recorder.write_text(RECORDER_SCRIPT.format(path=str(self.outcomes)))
        args = [
            str(Path(sys.executable).with_name("mitmdump")),
            "-q",
            "--listen-host",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-s",
            str(ROOT / "proxy" / "addon.py"),
            "-s",
            str(recorder),
            "-s",
            str(ROOT / "tests" / "proxy" / "redirect_script.py"),
            "--set",
            "sfumato_sites=deviantart",
            "--set",
            f"sfumato_model={self.model}",
            "--set",
            f"confdir={self.tmp / 'conf'}",
            "--set",
            "connection_strategy=lazy",
            "--set",
            f"ssl_verify_upstream_trusted_ca={self.ca}",
            "--set",
            f"test_upstream_port={self.server.port}",
        ]
        if self.workers:
            args += ["--set", f"sfumato_workers={self.workers}"]
        for option in self.extra:
            args += ["--set", option]
        self.proc = await asyncio.create_subprocess_exec(*args, cwd=self.tmp)
        for _ in range(600):
            if (self.tmp / "conf" / "mitmproxy-ca-cert.pem").exists():
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    return
                except OSError:
                    pass
            await asyncio.sleep(0.05)
        raise RuntimeError("mitmdump did not start")

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await self.proc.wait()
        await self.server.stop()

    def last_outcome(self) -> dict:
        """The proxy's Outcome for the latest upload (engine timings inside the proxy)."""
        return json.loads(self.outcomes.read_text().splitlines()[-1])

    def proxied_ssl(self) -> ssl.SSLContext:
        # One context per run: aiohttp pools connections per context, as a browser would.
        if self._proxied_ssl is None:
            self._proxied_ssl = ssl.create_default_context(
                cafile=str(self.tmp / "conf" / "mitmproxy-ca-cert.pem")
            )
        return self._proxied_ssl

    def direct_ssl(self) -> ssl.SSLContext:
        if self._direct_ssl is None:
            self._direct_ssl = ssl.create_default_context(cafile=str(self.ca))
        return self._direct_ssl

    async def upload(self, session: aiohttp.ClientSession, body: bytes, via_proxy: bool) -> int:
        if via_proxy:
            resp = await session.post(
                f"https://{HOST}{UPLOAD}",
                data=body,
                headers={"Content-Type": MULTIPART_CT},
                proxy=f"http://127.0.0.1:{self.port}",
                ssl=self.proxied_ssl(),
            )
        else:
            resp = await session.post(
                f"https://127.0.0.1:{self.server.port}{UPLOAD}",
                data=body,
                headers={"Content-Type": MULTIPART_CT, "Host": HOST},
                ssl=self.direct_ssl(),
                server_hostname=HOST,
            )
        await resp.read()
        resp.release()
        return resp.status

    async def budget_peaks(self) -> dict:
        """The proxy's budget peaks since the last call (which starts a new measurement)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                "http://sfumato-bench.invalid/peaks", proxy=f"http://127.0.0.1:{self.port}"
            ) as resp,
        ):
            return await resp.json(content_type=None)


def engine_seconds(image: bytes, model: str) -> float:
    import perturb

    started = time.perf_counter()
    perturb.protect(image, model=model)
    return time.perf_counter() - started


async def latency(bench: Bench, repeats: dict[int, int]) -> list[dict]:
    """Per size: engine, direct and proxied upload interleaved per repetition, so that load
    from other processes on the machine affects the three alike; medians reported."""
    rows = []
    for mp in SIZES_MP:
        image = make_jpeg(mp, seed=mp)
        body = upload_body(image)
        n = repeats[mp]
        engine_seconds(image, bench.model)  # warm the model session in this process
        engine, direct, proxied, in_proxy = [], [], [], []
        async with aiohttp.ClientSession() as plain, aiohttp.ClientSession() as via:
            await bench.upload(plain, body, via_proxy=False)  # warm the direct connection
            started = time.perf_counter()
            # warm the proxied connection (the first one also loads the model in the proxy and
            # mints the site's certificate): reported apart as the cold upload
            assert await bench.upload(via, body, via_proxy=True) == 200
            cold = time.perf_counter() - started
            for _ in range(n):
                engine.append(engine_seconds(image, bench.model))
                started = time.perf_counter()
                assert await bench.upload(plain, body, via_proxy=False) == 200
                direct.append(time.perf_counter() - started)
                started = time.perf_counter()
                status = await bench.upload(via, body, via_proxy=True)
                assert status == 200, f"proxied upload answered {status}"
                proxied.append(time.perf_counter() - started)
                outcome = bench.last_outcome()
                assert outcome["outcome"] == "protected", outcome
                in_proxy.append(float(outcome["timings"]["total"]))
        d, p, e, ep = (statistics.median(x) for x in (direct, proxied, engine, in_proxy))
        # Per upload: what the proxy added beyond the engine's own work on that upload.
        overheads = [pi - di - ei for pi, di, ei in zip(proxied, direct, in_proxy, strict=True)]
        overhead = statistics.median(overheads)
        rows.append(
            {
                "megapixels": mp,
                "jpeg_bytes": len(image),
                "repeats": n,
                "direct_s": d,
                "proxy_s": p,
                "added_s": p - d,
                "engine_in_proxy_s": ep,
                "proxy_overhead_s": overhead,
                "proxy_overhead_max_s": max(overheads),
                "meets_target": overhead <= TARGET_OVERHEAD_S,
                "engine_separate_process_s": e,
                "added_minus_separate_engine_s": p - d - e,
                "cold_proxy_s": cold,
                "samples": {
                    "direct_s": direct,
                    "proxy_s": proxied,
                    "engine_in_proxy_s": in_proxy,
                    "engine_separate_process_s": engine,
                },
            }
        )
        print(
            f"  {mp:>2} MP: direct {d:.3f} s, proxy {p:.3f} s, added {p - d:.3f} s, "
            f"engine in proxy {ep:.3f} s, overhead {overhead * 1000:+.0f} ms",
            flush=True,
        )
    return rows


async def concurrency(bench: Bench, concurrent: int, total: int) -> dict:
    body = upload_body(make_jpeg(1, seed=100))
    statuses: list[int] = []
    semaphore = asyncio.Semaphore(concurrent)

    async def one(session: aiohttp.ClientSession) -> None:
        async with semaphore:
            statuses.append(await bench.upload(session, body, via_proxy=True))

    assert bench.proc is not None
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrent)) as session:
        with RssSampler(bench.proc.pid) as sampler:
            started = time.perf_counter()
            await asyncio.gather(*(one(session) for _ in range(total)))
            wall = time.perf_counter() - started
    ok = statuses.count(200)
    row = {
        "concurrent": concurrent,
        "uploads": total,
        "megapixels": 1,
        "ok": ok,
        "refused": total - ok,
        "statuses": sorted(set(statuses)),
        "wall_s": wall,
        "uploads_per_s": ok / wall,
        "megapixels_per_s": ok / wall,
        "proxy_peak_rss_mb": sampler.peak,
    }
    print(
        f"  {concurrent:>2} concurrent: {ok}/{total} ok in {wall:.1f} s "
        f"({ok / wall:.2f} uploads/s), proxy peak RSS {sampler.peak:.0f} MB",
        flush=True,
    )
    return row


async def memory_over_uploads(bench: Bench, count: int) -> dict:
    assert bench.proc is not None
    body = upload_body(make_jpeg(1, seed=200))
    samples: list[tuple[int, float]] = [(0, rss_mb(bench.proc.pid))]
    async with aiohttp.ClientSession() as session:
        for i in range(1, count + 1):
            assert await bench.upload(session, body, via_proxy=True) == 200
            if i % 10 == 0:
                samples.append((i, rss_mb(bench.proc.pid)))
    after_warmup = [rss for i, rss in samples if i >= count // 4]
    growth = after_warmup[-1] - after_warmup[0]
    row = {
        "uploads": count,
        "megapixels": 1,
        "rss_samples_mb": samples,
        "rss_after_warmup_first_mb": after_warmup[0],
        "rss_last_mb": after_warmup[-1],
        "growth_after_warmup_mb": growth,
        "max_mb": max(r for _, r in samples),
    }
    print(
        f"  {count} uploads: RSS {samples[0][1]:.0f} -> {after_warmup[0]:.0f} (after "
        f"{count // 4}) -> {after_warmup[-1]:.0f} MB; growth after warm-up {growth:+.1f} MB",
        flush=True,
    )
    return row


async def heavy_load(bench: Bench, name: str, bodies: list[bytes]) -> dict:
    """All `bodies` uploaded at once; the proxy's peak RSS and budget peaks meanwhile."""
    assert bench.proc is not None
    await bench.budget_peaks()  # start a new measurement
    idle = rss_mb(bench.proc.pid)
    connector = aiohttp.TCPConnector(limit=len(bodies))
    timeout = aiohttp.ClientTimeout(total=LOAD_TIMEOUT_S * 4)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        with RssSampler(bench.proc.pid) as sampler:
            started = time.perf_counter()
            statuses = await asyncio.gather(
                *(bench.upload(session, body, via_proxy=True) for body in bodies)
            )
            wall = time.perf_counter() - started
    peaks = await bench.budget_peaks()
    held = {key: value["peak"] <= value["limit"] for key, value in peaks.items()}
    row = {
        "load": name,
        "uploads": len(bodies),
        "body_mb": round(len(bodies[0]) / 2**20, 1),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "wall_s": wall,
        "proxy_idle_rss_mb": idle,
        "proxy_peak_rss_mb": sampler.peak,
        "buffer_bytes_peak_mb": peaks["buffer_bytes"]["peak"] / 2**20,
        "buffer_bytes_limit_mb": peaks["buffer_bytes"]["limit"] / 2**20,
        "pixels_peak_mp": peaks["pixels"]["peak"] / 1e6,
        "pixels_limit_mp": peaks["pixels"]["limit"] / 1e6,
        "budgets_held": all(held.values()),
    }
    print(
        f"  {name}: {row['statuses']} in {wall:.1f} s, proxy RSS {idle:.0f} -> peak "
        f"{sampler.peak:.0f} MB; held {row['buffer_bytes_peak_mb']:.0f}/"
        f"{row['buffer_bytes_limit_mb']:.0f} MB of bytes, {row['pixels_peak_mp']:.0f}/"
        f"{row['pixels_limit_mp']:.0f} MP of pixels",
        flush=True,
    )
    return row


async def heavy_loads(model: str, workers: int | None, tmp: Path) -> list[dict]:
    """Each load on a fresh proxy (memory a process took stays with it), warmed by one upload."""
    loads = [
        ("16 x 4 MP JPEG", lambda: [upload_body(make_jpeg(4, seed=300 + i)) for i in range(16)]),
        ("8 x 60 MB PNG", lambda: [upload_body(make_noise_png(60 * 2**20))] * 8),
        ("1 x 100 MP JPEG", lambda: [upload_body(make_jpeg(100, seed=400))]),
    ]
    rows = []
    for index, (name, make_bodies) in enumerate(loads):
        extra = (f"sfumato_timeout={LOAD_TIMEOUT_S}",)
        bench = Bench(model, workers, tmp / f"load{index}", extra)
        await bench.start()
        try:
            async with aiohttp.ClientSession() as session:  # loads the model
                await bench.upload(session, upload_body(make_jpeg(0.25, seed=1)), via_proxy=True)
            rows.append(await heavy_load(bench, name, make_bodies()))
        finally:
            await bench.stop()
    return rows


def resolve_model(arg: str | None, tmp: Path) -> tuple[str, str]:
    """(model path or id, description)."""
    if arg:
        return arg, arg
    try:
        import perturb

        model = perturb.load_model(None)
        return str(getattr(model, "path", perturb.DEFAULT_MODEL)), f"default ({model.id})"
    except Exception as err:  # no shipped model yet: plumbing numbers with the test model
        from tests.support.tiny_model import build_tiny_model

        path = build_tiny_model(tmp / "model")
        return str(path), f"tiny-test (no default model available: {err.__class__.__name__})"


def table(results: dict) -> str:
    lines = [
        f"Sfumato proxy benchmark - model {results['model']}, workers "
        f"{results['workers']}, {results['cpus']} CPUs",
        "",
        "Medians of interleaved runs. overhead = proxied - direct - engine time of that same "
        "upload inside the proxy (target <= 50 ms). The engine timed in a separate process is "
        "shown for reference (the machine is shared, so it varies by several %).",
        "",
        "| MP | JPEG bytes | direct s | proxy s | added s | engine in proxy s | overhead "
        "| target | engine (separate process) s | cold first upload s |",
        "|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|",
    ]
    for r in results["latency"]:
        lines.append(
            f"| {r['megapixels']} | {r['jpeg_bytes']} | {r['direct_s']:.3f} | {r['proxy_s']:.3f}"
            f" | {r['added_s']:.3f} | {r['engine_in_proxy_s']:.3f}"
            f" | {r['proxy_overhead_s'] * 1000:+.0f} ms"
            f" (max {r['proxy_overhead_max_s'] * 1000:+.0f})"
            f" | {'ok' if r['meets_target'] else 'MISSED'}"
            f" | {r['engine_separate_process_s']:.3f} | {r['cold_proxy_s']:.3f} |"
        )
    lines += [
        "",
        "| concurrent | uploads | ok | wall s | uploads/s | proxy peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["concurrency"]:
        lines.append(
            f"| {r['concurrent']} | {r['uploads']} | {r['ok']} | {r['wall_s']:.1f} | "
            f"{r['uploads_per_s']:.2f} | {r['proxy_peak_rss_mb']:.0f} |"
        )
    m = results.get("memory")
    if m:
        lines += [
            "",
            f"Memory over {m['uploads']} uploads (1 MP): RSS after warm-up "
            f"{m['rss_after_warmup_first_mb']:.0f} MB -> {m['rss_last_mb']:.0f} MB "
            f"({m['growth_after_warmup_mb']:+.1f} MB), max {m['max_mb']:.0f} MB",
        ]
    if results.get("loads"):
        lines += [
            "",
            f"Heavy loads (sfumato_timeout={LOAD_TIMEOUT_S} s, default budgets). Bytes held = "
            "upload bytes the proxy held at once (sfumato_buffer_budget); pixels = decoded "
            "pixels in flight (sfumato_pixel_budget).",
            "",
            "| load | answers | wall s | proxy RSS idle MB | proxy RSS peak MB "
            "| bytes held peak / limit MB | pixels peak / limit MP | budgets held |",
            "|---|---|---:|---:|---:|---:|---:|:---:|",
        ]
        for r in results["loads"]:
            answers = ", ".join(f"{n}x {code}" for code, n in r["statuses"].items())
            lines.append(
                f"| {r['load']} | {answers} | {r['wall_s']:.1f} | {r['proxy_idle_rss_mb']:.0f} "
                f"| {r['proxy_peak_rss_mb']:.0f} | {r['buffer_bytes_peak_mb']:.0f} / "
                f"{r['buffer_bytes_limit_mb']:.0f} | {r['pixels_peak_mp']:.0f} / "
                f"{r['pixels_limit_mp']:.0f} | {'yes' if r['budgets_held'] else 'NO'} |"
            )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="sfumato-bench-") as tmpdir:
        tmp = Path(tmpdir)
        model, description = resolve_model(args.model, tmp)
        lat, conc, mem, loads = [], [], None, []
        if not args.loads_only:
            bench = Bench(model, args.workers, tmp / "main")
            await bench.start()
            try:
                repeats = {1: 3, 4: 2, 12: 1} if args.quick else {1: 9, 4: 7, 12: 5}
                print("latency (median):", flush=True)
                lat = await latency(bench, repeats)
                print("concurrency:", flush=True)
                conc = [
                    await concurrency(bench, 4, 8 if args.quick else 16),
                    await concurrency(bench, 16, 16 if args.quick else 32),
                ]
                print("memory:", flush=True)
                mem = await memory_over_uploads(bench, 40 if args.quick else 200)
            finally:
                await bench.stop()
        print("heavy loads:", flush=True)
        loads = await heavy_loads(model, args.workers, tmp)
    from proxy.addon import DEFAULT_WORKERS

    return {
        "model": description,
        "workers": args.workers or DEFAULT_WORKERS,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
        "target_overhead_s": TARGET_OVERHEAD_S,
        "latency": lat,
        "concurrency": conc,
        "memory": mem,
        "loads": loads,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model id or .onnx path (default: the shipped model)")
    parser.add_argument("--workers", type=int, help="sfumato_workers (default: the addon's)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--loads-only", action="store_true", help="only the heavy loads (memory and budgets)"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "proxy.json"))
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    text = table(results)
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(text + "\n")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
