"""`sfumato protect`: protect image files and folders in batch (the CLI face of perturb.protect).

Folders are walked recursively and their relative paths are kept under OUTDIR. Files that already
carry the Sfumato marker are skipped (protecting twice only makes them bigger), unless --force.
Existing files and the inputs themselves are never overwritten unless --overwrite; outputs are
written atomically, with the mode a plain write would give them. Each file gets one line, with its
error said once; a summary with the counts and the size change follows. A progress bar is drawn on
a terminal only; --json prints one machine-readable document instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".gif"}


@dataclass(frozen=True)
class SizeLimit:
    """A site's upload size limit we can cite, and what the site does above it."""

    site: str
    max_bytes: int
    above: str
    formats: tuple[str, ...] = ()  # empty: every format


# Protected files are usually bigger than their originals; these are the limits a protected file
# can grow past. Only limits with a source: SITES.md (Bluesky) and X's help centre (photos up to
# 5 MB; animated GIFs have a higher limit on the web, so they are not checked).
SIZE_LIMITS = (
    SizeLimit("Bluesky", 2_000_000, "its web app re-compresses bigger images before uploading"),
    SizeLimit("X", 5_000_000, "it refuses bigger photos", ("JPEG", "PNG", "WEBP")),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "protect",
        help="protect image files or folders (writes protected copies)",
        description="Write protected copies of JPEG, PNG, WebP and GIF files into OUTDIR. "
        "Folders are searched recursively and their layout is kept. Files Sfumato already "
        "protected are skipped.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument(
        "--strength",
        default="default",
        help="low, default, high, or a number ≥ 0 (default: default)",
    )
    p.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="images protected in parallel (default: 1)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs; with OUTDIR an input folder, replace its files in place",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="protect files that already carry the Sfumato marker again (default: skip them)",
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
        help="pixel limit (default: 100 MP)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="S",
        help="seconds per image (default: no limit)",
    )
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


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of perturb.protect that come straight from the command line."""
    from perturb import DEFAULT_MAX_PIXELS

    return {
        "max_pixels": args.max_pixels or DEFAULT_MAX_PIXELS,
        "time_limit": args.time_limit,
        "ai_reservation": args.ai_reservation,
        "seed": args.seed,
    }


@dataclass
class Result:
    """One file's outcome, as printed and as in the JSON report.

    `status` is "protected", "skipped" (already protected; `reason` says by what) or "failed"
    (`reason` says why, in words).
    """

    input: str
    output: str
    status: str
    reason: str | None = None
    error_type: str | None = None
    format: str | None = None
    seconds: float = 0.0
    psnr: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def _failure(src: Path | str, dst: Path | str, reason: str, error_type: str = "Refused") -> Result:
    return Result(str(src), str(dst), "failed", reason=reason, error_type=error_type)


def collect(paths: list[str], outdir: Path) -> tuple[list[tuple[Path, Path]], list[Result]]:
    """(input, output) pairs; folders recursively (image suffixes), relative paths kept."""
    pairs: list[tuple[Path, Path]] = []
    problems: list[Result] = []
    out_resolved = outdir.resolve()
    for text in paths:
        path = Path(text)
        if path.is_dir():
            in_place = path.resolve() == out_resolved
            for file in sorted(path.rglob("*")):
                if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                rel = file.relative_to(path)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if not in_place and out_resolved in file.resolve().parents:
                    continue  # never re-protect our own outputs when OUTDIR is inside a folder
                pairs.append((file, outdir / rel))
        elif path.is_file():
            pairs.append((path, outdir / path.name))
        else:
            problems.append(_failure(path, "", "no such file or folder", "FileNotFoundError"))
    return pairs, problems


def folder_is_output(paths: list[str], outdir: Path) -> str | None:
    """The first input folder that is OUTDIR itself (its files would be replaced), if any."""
    out_resolved = outdir.resolve()
    for text in paths:
        if Path(text).is_dir() and Path(text).resolve() == out_resolved:
            return text
    return None


def run(args: argparse.Namespace) -> int:
    from perturb import ProtectError, load_model

    outdir = Path(args.output)
    if args.jobs < 1:
        print("sfumato protect: --jobs must be at least 1", file=sys.stderr)
        return 2
    if outdir.exists() and not outdir.is_dir():
        print(
            f"sfumato protect: {outdir} is a file, not a folder. Give -o a folder for the "
            "protected copies (it is created if missing), e.g. -o protected",
            file=sys.stderr,
        )
        return 2
    if not args.overwrite and (folder := folder_is_output(args.paths, outdir)):
        print(
            f"sfumato protect: {folder} is also the output folder, so its files would be replaced "
            "by their protected copies. Write them to another folder (-o protected), or add "
            "--overwrite to replace them in place.",
            file=sys.stderr,
        )
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
            results.append(
                _failure(
                    src,
                    dst,
                    f"its copy would be {dst}, like the copy of {seen[key]}; "
                    "protect the two into separate folders",
                )
            )
            continue
        seen[key] = src
        jobs.append((src, dst))
    if not args.json:
        for refused in results:  # said here once, before the work starts
            print(_line(refused), flush=True)

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
        print(render_summary(summary))
    return 0 if all(r.ok for r in results) else 1


def describe_error(exc: Exception, args: argparse.Namespace) -> str:
    """An engine error in words, for a file on the command line."""
    from perturb import NotAnImage, ProtectTimeout

    if isinstance(exc, NotAnImage):
        return f"not an image ({exc.hint})"
    if isinstance(exc, ProtectTimeout) and args.time_limit is not None:
        return f"took longer than --time-limit {args.time_limit:g} s; raise it"
    return str(exc)


def size_warnings(fmt: str, bytes_in: int, bytes_out: int) -> tuple[str, ...]:
    """One warning per known site limit the protected file grew past."""
    return tuple(
        f"now over {limit.site}'s {_size(limit.max_bytes)} limit: {limit.above}"
        for limit in SIZE_LIMITS
        if (not limit.formats or fmt in limit.formats) and bytes_in <= limit.max_bytes < bytes_out
    )


def protect_file(src: Path, dst: Path, model, strength: float, args: argparse.Namespace) -> Result:
    """Protect one file; every failure becomes a Result (the batch goes on)."""
    from perturb import ProtectError, already_protected, protect

    started = time.perf_counter()
    try:
        data = src.read_bytes()
    except OSError as exc:
        return _failure(src, dst, f"cannot read it: {exc.strerror or exc}", type(exc).__name__)
    if not args.force and (marker := already_protected(data)) is not None:
        when = f" on {marker.date}" if marker.date else ""
        return Result(
            str(src),
            str(dst),
            "skipped",
            reason=f"already protected by {marker.model_id}{when}; --force to protect again",
            bytes_in=len(data),
        )
    if not args.overwrite and dst.exists():
        same = dst.resolve() == src.resolve()
        what = "it would replace itself" if same else f"{dst} exists"
        return _failure(src, dst, f"{what}; use --overwrite to replace it")
    try:
        result = protect(data, strength=strength, model=model, **engine_options(args))
    except ProtectError as exc:
        failed = _failure(src, dst, describe_error(exc, args), type(exc).__name__)
        failed.bytes_in, failed.seconds = len(data), time.perf_counter() - started
        return failed
    try:
        write_atomically(dst, result.data)
    except OSError as exc:
        return _failure(src, dst, f"cannot write {dst}: {exc.strerror or exc}", type(exc).__name__)
    return Result(
        str(src),
        str(dst),
        "protected",
        format=result.format,
        seconds=time.perf_counter() - started,
        psnr=result.report.psnr,
        bytes_in=len(data),
        bytes_out=len(result.data),
        warnings=size_warnings(result.format, len(data), len(result.data)),
        notes=result.report.notes,
    )


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, so a crash never leaves half a file.

    The file gets the mode a plain write gives: a replaced file keeps its mode, a new one gets
    0o666 minus the umask (a mkstemp file would stay 0600, unreadable once copied to a web server).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".sfumato-{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with contextlib.suppress(FileNotFoundError):  # a new file: the umask already applied
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _psnr_text(psnr: float | None) -> str:
    if psnr is None:
        return "-"
    return "∞" if math.isinf(psnr) else f"{psnr:.1f} dB"


def _size(n: int) -> str:
    """Bytes in the units sites state their limits in (1 MB = 1,000,000 bytes)."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}".removesuffix(".0") + " MB"
    return f"{n / 1000:.0f} kB" if n >= 1000 else f"{n} bytes"


def _size_change(bytes_in: int, bytes_out: int) -> str:
    ratio = f" (×{bytes_out / bytes_in:.2f})" if bytes_in else ""
    return f"{_size(bytes_in)} -> {_size(bytes_out)}{ratio}"


def _line(r: Result) -> str:
    if r.status == "protected":
        line = (
            f"ok    {r.input} -> {r.output} ({r.seconds:.2f} s, PSNR {_psnr_text(r.psnr)}, "
            f"{_size_change(r.bytes_in, r.bytes_out)})"
        )
        return "\n".join([line, *(f"      warning: {w}" for w in r.warnings)])
    if r.status == "skipped":
        return f"skip  {r.input}: {r.reason}"
    return f"FAIL  {r.input}: {r.reason}"


def summarise(results: list[Result], elapsed: float, model_id: str, strength: float) -> dict:
    done = [r for r in results if r.status == "protected"]
    finite = [r.psnr for r in done if r.psnr is not None and math.isfinite(r.psnr)]
    bytes_in, bytes_out = sum(r.bytes_in for r in done), sum(r.bytes_out for r in done)
    return {
        "files": len(results),
        "protected": len(done),
        "skipped": sum(r.status == "skipped" for r in results),
        "failed": sum(not r.ok for r in results),
        "seconds": round(elapsed, 3),
        "seconds_per_image": round(sum(r.seconds for r in done) / len(done), 3) if done else None,
        "mean_psnr": round(sum(finite) / len(finite), 2) if finite else None,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "size_ratio": round(bytes_out / bytes_in, 3) if bytes_in else None,
        "size_warnings": sum(len(r.warnings) > 0 for r in done),
        "model": model_id,
        "strength": strength,
    }


def render_summary(s: dict) -> str:
    rows = [
        ("files", str(s["files"])),
        ("protected", str(s["protected"])),
        ("skipped", f"{s['skipped']} (already protected)" if s["skipped"] else "0"),
        ("failed", str(s["failed"])),
        (
            "time per image",
            "-" if s["seconds_per_image"] is None else f"{s['seconds_per_image']:.2f} s",
        ),
        ("mean PSNR", "-" if s["mean_psnr"] is None else f"{s['mean_psnr']:.1f} dB"),
        ("size", _size_change(s["bytes_in"], s["bytes_out"]) if s["protected"] else "-"),
        ("model", f"{s['model']} (strength {s['strength']:g})"),
    ]
    if s["size_warnings"]:
        rows.insert(-1, ("over a limit", f"{s['size_warnings']} file(s): see the warnings above"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(["", "summary"] + [f"  {k.ljust(width)}  {v}" for k, v in rows])


def _json_result(r: Result) -> dict:
    d = asdict(r)
    d["ok"] = r.ok
    if r.psnr is not None and math.isinf(r.psnr):
        d["psnr"] = None  # JSON has no infinity: null means "no pixel changed"
    d["warnings"] = list(r.warnings)
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
