"""`sfumato protect`: protect image files and folders in batch (the CLI face of perturb.protect).

Folders are walked recursively and their relative paths are kept under OUTDIR. Existing files and
the inputs themselves are never overwritten unless --overwrite; outputs are written atomically.
A progress bar is drawn on a terminal only; --json prints one machine-readable document.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".gif"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "protect",
        help="protect image files or folders (writes protected copies)",
        description="Write protected copies of JPEG, PNG, WebP and GIF files into OUTDIR. "
        "Folders are searched recursively and their layout is kept.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument(
        "--strength",
        default="default",
        help="low, default, high, or a number ≥ 0 (default: default)",
    )
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="images protected in parallel")
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (even the inputs)"
    )
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    p.add_argument("--model", help="model id or path to an .onnx (default: the shipped model)")
    p.add_argument(
        "--no-ai-reservation",
        dest="ai_reservation",
        action="store_false",
        help='do not write the IPTC "no AI/ML training" reservation',
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="pixel limit (default 100 MP)",
    )
    p.add_argument("--time-limit", type=float, default=None, metavar="S", help="seconds per image")
    p.add_argument(
        "--seed",
        type=_seed,
        default=None,
        metavar="N",
        help="UNSAFE, for reproducible tests and benchmarks only: draw the model's secret key "
        "from seed N (every file uses it), so the output is reproducible and anyone who knows "
        "or guesses N can remove the protection by running the product again. Default: a fresh "
        "secret per image from the operating system",
    )
    p.set_defaults(func=run)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the seed must be 0 or more")
    return value


@dataclass
class Result:
    """One file's outcome, as printed and as in the JSON report."""

    input: str
    output: str
    ok: bool
    format: str | None = None
    seconds: float = 0.0
    psnr: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    error: str | None = None
    error_type: str | None = None
    notes: tuple[str, ...] = ()


def collect(paths: list[str], outdir: Path) -> tuple[list[tuple[Path, Path]], list[Result]]:
    """(input, output) pairs; folders recursively (image suffixes), relative paths kept."""
    pairs: list[tuple[Path, Path]] = []
    problems: list[Result] = []
    out_resolved = outdir.resolve()
    for text in paths:
        path = Path(text)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                rel = file.relative_to(path)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if out_resolved in file.resolve().parents:
                    continue  # never re-protect our own outputs when OUTDIR is inside a folder
                pairs.append((file, outdir / rel))
        elif path.is_file():
            pairs.append((path, outdir / path.name))
        else:
            problems.append(
                Result(
                    str(path),
                    "",
                    False,
                    error=f"{path}: no such file or folder",
                    error_type="FileNotFoundError",
                )
            )
    return pairs, problems


def run(args: argparse.Namespace) -> int:
    from perturb import ProtectError, load_model

    outdir = Path(args.output)
    if args.jobs < 1:
        print("sfumato protect: --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model)
        strength = model.resolve_strength(args.strength)
    except ProtectError as exc:
        print(f"sfumato protect: {exc}", file=sys.stderr)
        return 2
    pairs, results = collect(args.paths, outdir)
    seen: dict[Path, Path] = {}
    jobs: list[tuple[Path, Path]] = []
    for src, dst in pairs:
        key = dst.resolve()
        if key in seen:
            results.append(_failure(src, dst, f"{seen[key]} is written to the same output"))
            continue
        seen[key] = src
        if not args.overwrite and key == src.resolve():
            results.append(_failure(src, dst, "refusing to overwrite the input (use --overwrite)"))
        elif not args.overwrite and dst.exists():
            results.append(_failure(src, dst, f"{dst} exists (use --overwrite to replace it)"))
        else:
            jobs.append((src, dst))

    progress = Progress(len(jobs), sys.stderr) if sys.stderr.isatty() and not args.json else None

    def work(pair: tuple[Path, Path]) -> Result:
        result = protect_file(pair[0], pair[1], model, strength, args)
        if progress:
            progress.step(result)
        elif not args.json:
            print(_line(result), flush=True)
        return result

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results.extend(pool.map(work, jobs))
    if progress:
        progress.close()
    elapsed = time.perf_counter() - started
    results.sort(key=lambda r: r.input)
    summary = summarise(results, elapsed, model.id, strength)
    if args.json:
        doc = {
            "model": model.id,
            "strength": strength,
            "summary": summary,
            "files": [_json_result(r) for r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(render_summary(results, summary))
    return 0 if all(r.ok for r in results) else 1


def _failure(src: Path, dst: Path, message: str, error_type: str = "Refused") -> Result:
    return Result(str(src), str(dst), False, error=message, error_type=error_type)


def protect_file(src: Path, dst: Path, model, strength: float, args: argparse.Namespace) -> Result:
    """Protect one file; every failure becomes a Result (the batch goes on)."""
    from perturb import DEFAULT_MAX_PIXELS, ProtectError, protect

    started = time.perf_counter()
    try:
        data = src.read_bytes()
    except OSError as exc:
        return _failure(src, dst, f"cannot read: {exc.strerror or exc}", type(exc).__name__)
    try:
        result = protect(
            data,
            strength=strength,
            model=model,
            max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
            time_limit=args.time_limit,
            ai_reservation=args.ai_reservation,
            seed=args.seed,
        )
    except ProtectError as exc:
        return Result(
            str(src),
            str(dst),
            False,
            bytes_in=len(data),
            seconds=time.perf_counter() - started,
            error=str(exc),
            error_type=type(exc).__name__,
        )
    try:
        write_atomically(dst, result.data)
    except OSError as exc:
        return _failure(src, dst, f"cannot write {dst}: {exc.strerror or exc}", type(exc).__name__)
    return Result(
        str(src),
        str(dst),
        True,
        format=result.format,
        seconds=time.perf_counter() - started,
        psnr=result.report.psnr,
        bytes_in=len(data),
        bytes_out=len(result.data),
        notes=result.report.notes,
    )


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sfumato-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _psnr_text(psnr: float | None) -> str:
    if psnr is None:
        return "-"
    return "∞" if math.isinf(psnr) else f"{psnr:.1f} dB"


def _line(r: Result) -> str:
    if r.ok:
        return f"ok    {r.input} -> {r.output} ({r.seconds:.2f} s, PSNR {_psnr_text(r.psnr)})"
    return f"FAIL  {r.input}: {r.error}"


def summarise(results: list[Result], elapsed: float, model_id: str, strength: float) -> dict:
    done = [r for r in results if r.ok]
    finite = [r.psnr for r in done if r.psnr is not None and math.isfinite(r.psnr)]
    return {
        "files": len(results),
        "protected": len(done),
        "failed": len(results) - len(done),
        "seconds": round(elapsed, 3),
        "seconds_per_image": round(sum(r.seconds for r in done) / len(done), 3) if done else None,
        "mean_psnr": round(sum(finite) / len(finite), 2) if finite else None,
        "model": model_id,
        "strength": strength,
    }


def render_summary(results: list[Result], s: dict) -> str:
    rows = [
        ("files", str(s["files"])),
        ("protected", str(s["protected"])),
        ("failed", str(s["failed"])),
        (
            "time per image",
            "-" if s["seconds_per_image"] is None else f"{s['seconds_per_image']:.2f} s",
        ),
        ("mean PSNR", "-" if s["mean_psnr"] is None else f"{s['mean_psnr']:.1f} dB"),
        ("model", f"{s['model']} (strength {s['strength']:g})"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["", "summary"] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
    failures = [r for r in results if not r.ok]
    if failures:
        lines += ["", "failures"] + [f"  {r.input}: {r.error}" for r in failures]
    return "\n".join(lines)


def _json_result(r: Result) -> dict:
    d = asdict(r)
    if r.psnr is not None and math.isinf(r.psnr):
        d["psnr"] = None  # JSON has no infinity: null means "no pixel changed"
    d["notes"] = list(r.notes)
    return d


class Progress:
    """A one-line progress bar on a terminal (stderr); results are printed above it."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.stream, self.done = total, stream, 0
        self.lock = threading.Lock()
        self.started = time.perf_counter()

    def step(self, result: Result) -> None:
        with self.lock:
            self.done += 1
            self.stream.write("\r\x1b[K" + _line(result) + "\n")
            self._draw()

    def _draw(self) -> None:
        width = 30
        filled = width * self.done // max(1, self.total)
        rate = (time.perf_counter() - self.started) / max(1, self.done)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"({rate:.2f} s/image)"
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()
