"""The val sample the attack and sweep benches share: every n-th val file scaled to ≤ a side, in
its own format, protected by the product (`perturb.protect`, default preset, a fresh key)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The shared flags; `out` names the result files in bench/results/."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT / ".." / "shared")
    ap.add_argument("--model", help="model id or .onnx (default: the shipped default model)")
    ap.add_argument("--side", type=int, default=512, help="long side the val files are scaled to")
    ap.add_argument(
        "--every",
        type=int,
        default=4,
        help="every n-th val image (4: the 17 that perturb.training.compare uses)",
    )
    ap.add_argument("--quick", action="store_true", help="6 images at ≤ 256 px")
    ap.add_argument("--out", type=Path, default=RESULTS / out,
                    help="writes <out>.json and <out>.md")  # fmt: skip
    return ap


def parse(ap: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    a = ap.parse_args(argv)
    if a.quick:
        a.side, a.every = 256, 11
    return a


def files(a: argparse.Namespace) -> list[Path]:
    from perturb.training.data import list_images

    return list_images(a.shared, "val")[:: a.every]


def protect_file(path: Path, side: int, engine) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(colour, alpha or None, protected colour) of `path` scaled to ≤ `side` px."""
    from efficacy import quick_input

    from perturb import protect
    from perturb.training import evaluate as ev

    data = quick_input(path.read_bytes(), side)
    colour, alpha = ev.decode_colour_alpha(data)
    colour_p, _ = ev.decode_colour_alpha(protect(data, strength="default", model=engine).data)
    return colour, alpha, colour_p
