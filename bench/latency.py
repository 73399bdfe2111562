"""Latency and memory of `perturb.protect`: decode / infer / encode for 1, 4, 12 and 24 MP JPEG
and PNG, against a codec-only run (same process, same code path, strength 0: decode + metadata +
encode, no model) for the ratio; peak RSS per case, plus a 50 MP memory-only case.

`infer` is split into the time inside onnxruntime (`model`), waiting for a keyed model's secret
key fields (`key`: the first frame's field is drawn on a background thread while the frame
decodes, so this is what the draw still costs the call) and the engine's own work (`engine`:
converting tiles to the model's layout and back, blending, the PSNR). A second table times the
key draw alone at 4 MP for the model's own key and for other key shapes a model could declare.

Each case runs in its own child process so its peak RSS is its own. Prints a table and writes
bench/results/latency.json and bench/results/latency.md.

    .venv/bin/python bench/latency.py               # shipped model (perturb.models.DEFAULT_MODEL)
    .venv/bin/python bench/latency.py --model PATH  # any model
    .venv/bin/python bench/latency.py --tiny        # the (keyed) test model (plumbing only)
    .venv/bin/python bench/latency.py --against DIR # also run another checkout's engine, case by
                                                    # case in the same run (before / after)

Targets (issue 11, shipped model, 2 cores): 4 MP JPEG ≤ 0.35 s end to end, key drawing included,
and ≤ 3× codec-only.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES_MP = (1, 4, 12, 24)
MEMORY_ONLY_MP = 50
MEMORY_BUDGET_MB = 1536
TARGET_4MP_JPEG_S = 0.35
TARGET_RATIO = 3.0
# Key shapes (channels, scale) timed at 4 MP besides the model's own: what a keyed model could
# declare, so a model's designer sees the cost of the secret before training.
KEY_SHAPES = ((4, 4), (8, 4), (8, 8), (16, 8), (32, 16))
KEY_SIZE_MULTIPLE = 64  # padding used for the other key shapes (the model's own uses its card)


def dims(megapixels: float) -> tuple[int, int]:
    """4:3 dimensions of about `megapixels` MP."""
    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    return width, int(round(megapixels * 1e6 / width))


def make_image(megapixels: float, fmt: str) -> bytes:
    """Artwork-like pixels (gradients, shapes, grain), built in strips to stay light."""
    import numpy as np
    from PIL import Image

    width, height = dims(megapixels)
    rng = np.random.default_rng(megapixels.__hash__() & 0xFFFF)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    x = np.arange(width, dtype=np.float32)
    for y0 in range(0, height, 256):
        y = np.arange(y0, min(height, y0 + 256), dtype=np.float32)[:, None]
        strip = np.empty((len(y), width, 3), dtype=np.float32)
        for c, (fx, fy) in enumerate(((0.004, 0.007), (0.006, 0.003), (0.002, 0.005))):
            strip[..., c] = 128 + 90 * np.sin(x * fx + y * fy + c)
        strip += rng.normal(0, 5, strip.shape).astype(np.float32)
        pixels[y0 : y0 + len(y)] = np.clip(strip, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=90, subsampling=2)
    else:
        image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(path: str, model_path: str, repeats: int, memory_only: bool) -> dict:
    """One case, in a fresh process: timings of the full and codec-only runs, peak RSS."""
    from perturb import load_model, protect

    model = load_model(model_path)
    data = Path(path).read_bytes()
    warm = make_image(0.05, "PNG")
    protect(warm, model=model)  # session warm-up outside the measurement
    baseline = rss_mb()
    result: dict = {"bytes_in": len(data), "baseline_rss_mb": round(baseline, 1)}
    if memory_only:
        start = time.perf_counter()
        out = protect(data, model=model, max_pixels=200_000_000)
        result["full"] = {"total": time.perf_counter() - start, **out.report.timings}
        result["bytes_out"] = len(out.data)
    else:
        for key, strength in (("codec", 0.0), ("full", "default")):
            runs = []
            for _ in range(repeats):
                cpu = time.process_time()
                out = protect(data, model=model, strength=strength)
                runs.append({**out.report.timings, "cpu": time.process_time() - cpu})
            result[key] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            if key == "full":
                result["psnr"] = out.report.psnr
                result["bytes_out"] = len(out.data)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def run_case(
    path: Path, model_path: str, repeats: int, memory_only: bool = False, root: Path = ROOT
) -> dict:
    """One case in a child process running the engine of the checkout at `root`."""
    cmd = [sys.executable, str(root / "bench" / "latency.py"), "--child", str(path), "--model",
           model_path, "--repeats", str(repeats)] + (["--memory-only"] if memory_only else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def resolve_model(args: argparse.Namespace, tmp: Path) -> tuple[str, str]:
    """(path, description) of the model to benchmark."""
    from perturb import ModelUnavailable, load_model
    from perturb.models import DEFAULT_MODEL

    if args.tiny:
        from tests.support.tiny_model import build_tiny_model

        path = str(build_tiny_model(tmp))
        return path, "tiny-test (the plumbing test model, NOT the shipped model)"
    try:
        model = load_model(args.model)
    except ModelUnavailable as exc:
        sys.exit(f"latency: {exc}\n(no shipped model yet? pass --model PATH or --tiny)")
    shipped = args.model is None and DEFAULT_MODEL is not None
    kind = "shipped default model" if shipped else "model given with --model/SFUMATO_MODEL"
    return str(model.path), f"{model.id} {model.version} ({kind})"


def key_draw_times(model_path: str, repeats: int = 15) -> list[dict]:
    """Median time to draw one frame's key field at 4 MP: the model's own key, then KEY_SHAPES."""
    import secrets

    import numpy as np

    from perturb import load_model

    width, height = dims(4)
    model = load_model(model_path)
    shapes = []
    if model.key is not None:
        ph, pw = model.padded(height, width)
        shapes.append(("this model", model.key.channels, model.key.scale, ph, pw))
    m = KEY_SIZE_MULTIPLE
    ph, pw = -(-height // m) * m, -(-width // m) * m
    shapes += [("other shape", c, s, ph, pw) for c, s in KEY_SHAPES]
    rows = []
    for what, channels, scale, ph, pw in shapes:
        shape = (1, channels, ph // scale, pw // scale)
        runs = []
        for _ in range(repeats):
            rng = np.random.default_rng(secrets.randbits(128))
            start = time.perf_counter()
            rng.standard_normal(shape, dtype=np.float32)
            runs.append(time.perf_counter() - start)
        rows.append({"key": what, "channels": channels, "scale": scale, "shape": list(shape),
                     "values": int(np.prod(shape)), "seconds": statistics.median(runs)})
    return rows


def fmt_row(cells: list[str], widths: list[int]) -> str:
    return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model id or .onnx path (default: the shipped model)")
    parser.add_argument("--tiny", action="store_true", help="benchmark the tiny test model")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_MP)), help="MP, comma-separated")
    parser.add_argument("--formats", default="JPEG,PNG")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory-case", action="store_true", help="skip the 50 MP case")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="another checkout of the project: each case also runs with its "
                             "engine, alternating with this one, in the same run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(args.child, args.model, args.repeats, args.memory_only)))
        return 0

    from perturb.models import inference_threads

    this = "this checkout"
    against = args.against.resolve() if args.against else None
    if against and not (against / "bench" / "latency.py").is_file():
        sys.exit(f"latency: {against} is not a checkout of the project (no bench/latency.py)")
    codes = [(this, ROOT)] + ([(f"{against.name}/", against)] if against else [])
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        model_path, model_text = resolve_model(args, tmp)
        print(f"model: {model_text}")
        print(f"threads: {inference_threads()} intra-op, {os.cpu_count()} logical CPUs, "
              f"{platform.processor() or platform.machine()}")
        cases = []
        sizes = [float(s) for s in args.sizes.split(",") if s]
        for fmt in args.formats.split(","):
            for mp in sizes:
                path = tmp / f"{mp:g}mp.{fmt.lower()}"
                path.write_bytes(make_image(mp, fmt))
                repeats = args.repeats if mp <= 4 else max(1, args.repeats - 1)
                w, h = dims(mp)
                order = codes if len(cases) % 2 == 0 else codes[::-1]  # alternate who goes first
                for label, root in order:
                    result = run_case(path, model_path, repeats, root=root)
                    cases.append({"code": label, "format": fmt, "megapixels": mp, "width": w,
                                  "height": h, **result})
                print(f"  {fmt} {mp:g} MP done", file=sys.stderr)
                path.unlink()
        cases.sort(key=lambda c: (c["format"] != "JPEG", c["megapixels"], c["code"] != this))
        memory_case = None
        if not args.no_memory_case:
            path = tmp / f"{MEMORY_ONLY_MP}mp.jpeg"
            path.write_bytes(make_image(MEMORY_ONLY_MP, "JPEG"))
            w, h = dims(MEMORY_ONLY_MP)
            memory_case = {"format": "JPEG", "megapixels": MEMORY_ONLY_MP, "width": w,
                           "height": h, **run_case(path, model_path, 1, memory_only=True)}
        keys = key_draw_times(model_path)

    headers = (["code"] if against else []) + [
        "format", "MP", "decode s", "infer s", "of which model s", "key s", "engine s",
        "encode s", "total s", "CPU s", "codec-only s", "ratio", "PSNR dB", "peak RSS MB"]
    rows = []
    for c in cases:
        lead = [c["code"]] if against else []
        if "error" in c:
            rows.append(lead + [c["format"], f"{c['megapixels']:g}", "error: " + c["error"][:40]]
                        + [""] * 11)
            continue
        full, codec = c["full"], c["codec"]
        c["ratio"] = full["total"] / codec["total"] if codec["total"] else None
        model_s, key_s = full.get("model", float("nan")), full.get("key", 0.0)
        c["engine_s"] = full["infer"] - model_s - key_s  # the engine's own work inside infer
        rows.append(lead + [
            c["format"], f"{c['megapixels']:g}", f"{full['decode']:.3f}", f"{full['infer']:.3f}",
            f"{model_s:.3f}", f"{key_s:.3f}", f"{c['engine_s']:.3f}", f"{full['encode']:.3f}",
            f"{full['total']:.3f}", f"{full['cpu']:.3f}", f"{codec['total']:.3f}",
            f"{c['ratio']:.2f}×", f"{c['psnr']:.1f}", f"{c['peak_rss_mb']:.0f}",
        ])
    table = markdown_table(headers, rows)
    print("\n".join(table))
    key_table = markdown_table(
        ["key field", "channels", "scale", "shape", "values", "draw s (4 MP)"],
        [[k["key"], str(k["channels"]), str(k["scale"]), "×".join(map(str, k["shape"])),
          f"{k['values']:,}", f"{k['seconds']:.4f}"] for k in keys],
    )
    print("\n".join(key_table))

    verdicts = []
    target = next((c for c in cases if c["format"] == "JPEG" and c["megapixels"] == 4
                   and c["code"] == this and "error" not in c), None)
    if target:
        full = target["full"]
        total, ratio = full["total"], target["ratio"]
        verdicts.append(f"4 MP JPEG end to end: {total:.3f} s (target ≤ {TARGET_4MP_JPEG_S} s): "
                        f"{'PASS' if total <= TARGET_4MP_JPEG_S else 'FAIL'}")
        verdicts.append(f"4 MP JPEG vs codec-only: {ratio:.2f}× (target ≤ {TARGET_RATIO}×): "
                        f"{'PASS' if ratio <= TARGET_RATIO else 'FAIL'}")
        codecs = full["decode"] + full["encode"]
        verdicts.append(f"4 MP JPEG: the model itself {full.get('model', 0.0):.3f} s, drawing the "
                        f"key {full.get('key', 0.0):.4f} s, the engine's own work in infer "
                        f"{target['engine_s']:.3f} s, codecs {codecs:.3f} s")
        if against:
            before = next((c for c in cases if c["format"] == "JPEG" and c["megapixels"] == 4
                           and c["code"] != this and "error" not in c), None)
            if before:
                verdicts.append(
                    f"4 MP JPEG, {before['code']} → this checkout: total "
                    f"{before['full']['total']:.3f} → {total:.3f} s, engine's own work "
                    f"{before['engine_s']:.3f} → {target['engine_s']:.3f} s, CPU "
                    f"{before['full']['cpu']:.3f} → {full['cpu']:.3f} s")
    if memory_case:
        if "error" in memory_case:
            verdicts.append(f"{MEMORY_ONLY_MP} MP JPEG: error: {memory_case['error']}")
        else:
            peak = memory_case["peak_rss_mb"]
            verdicts.append(
                f"{MEMORY_ONLY_MP} MP JPEG ({memory_case['width']}×{memory_case['height']}): "
                f"peak RSS {peak:.0f} MB (budget {MEMORY_BUDGET_MB} MB): "
                f"{'PASS' if peak <= MEMORY_BUDGET_MB else 'FAIL'}, "
                f"{memory_case['full']['total']:.1f} s")
    print("\n".join(verdicts))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "model": model_text,
        "threads": inference_threads(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "note": "timings are medians, seconds (wall clock; CPU = process CPU time, all threads); "
                "'model' is the part of 'infer' spent inside onnxruntime, 'key' drawing key "
                "fields, 'engine' the rest of 'infer'; codec-only = protect(strength=0) in the "
                "same process (decode, metadata, encode; no model); peak RSS per case in its own "
                "process" + (f"; code: this checkout vs {against}" if against else ""),
        "load_average": os.getloadavg(),
        "cases": cases,
        "memory_case": memory_case,
        "key_draw": keys,
        "verdicts": verdicts,
    }
    (out / "latency.json").write_text(json.dumps(doc, indent=2) + "\n")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    md = [f"Model: {model_text}; {inference_threads()} inference threads, {os.cpu_count()} "
          f"logical CPUs; load average at the end {load}; {doc['date']}.", "",
          "Command: `.venv/bin/python bench/latency.py` " + " ".join(sys.argv[1:]), "",
          *table, "", *key_table, "", *[f"- {v}" for v in verdicts], ""]
    (out / "latency.md").write_text("\n".join(md))
    print(f"wrote {out / 'latency.json'} and {out / 'latency.md'}")
    return 0


def markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    table = [fmt_row(headers, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return table + [fmt_row(r, widths) for r in rows]


if __name__ == "__main__":
    sys.exit(main())
