"""Calibrate the strength presets: `low` / `default` / `high` at median SSIMULACRA2 ≈ 80 / 70 / 60.

Through the product path: the shipped ONNX perturbs each val image's stored colour (full size,
transparent pixels included, alpha untouched), and SSIMULACRA2 compares both sides composited over
grey 128, as `bench/efficacy.py` scores them. SSIMULACRA2 is measured per image at a log-spaced
grid of strengths; the per-image curves are interpolated (linear in log strength).

Transparent pixels show none of the perturbation, so at one strength a sprite on a transparent
canvas is far less visible than an opaque painting. The card's coverage rule (strength ×
coverage^−exponent, capped) gives the visible part the whole image's budget; its exponent is fitted
here so that images with and without transparency reach the same median score at `default`.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from perturb.models import Coverage
from perturb.training.evaluate import Ssimulacra2Reference, to_rgb_array

# "default" sits one point above the 70 line: the product re-encodes JPEG uploads at their own
# quality, which costs a little visibility that these PNG round trips do not see.
TARGETS = {"low": 80.0, "default": 71.0, "high": 60.0}
GRID = (0.15, 0.22, 0.33, 0.5, 0.75, 1.1, 1.7, 2.8, 4.5)  # log-spaced strengths
EXPONENTS = tuple(round(0.05 * i, 2) for i in range(31))  # 0 … 1.5
MAX_FACTOR = 2.0  # a sprite's figure never gets more than twice an opaque image's strength

Perturb = Callable[[np.ndarray, float], np.ndarray]  # H×W×3 uint8, strength → H×W×3 uint8


@dataclass
class Sample:
    """One val image as stored: colour (also under transparent pixels) and its 8-bit alpha."""

    name: str
    rgb: np.ndarray
    alpha: np.ndarray | None  # H×W uint8; None for opaque images

    @property
    def coverage(self) -> float:
        """The visible share, as the engine computes it (mean alpha)."""
        return 1.0 if self.alpha is None else float(self.alpha.mean()) / 255.0

    def composite(self, rgb: np.ndarray) -> np.ndarray:
        """`rgb` with this image's alpha over grey, as the benchmark decodes every image."""
        if self.alpha is None:
            return rgb
        return to_rgb_array(Image.fromarray(np.dstack([rgb, self.alpha]), "RGBA"))


def load_sample(path: Path) -> Sample:
    with Image.open(path) as im:
        has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
        rgba = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    if not has_alpha or rgba[..., 3].min() == 255:
        return Sample(path.name, np.ascontiguousarray(rgba[..., :3]), None)
    return Sample(path.name, np.ascontiguousarray(rgba[..., :3]), rgba[..., 3].copy())


def curves(perturb: Perturb, samples: Sequence[Sample], grid: Sequence[float] = GRID,
           progress: Callable[[int], None] | None = None) -> np.ndarray:
    """SSIMULACRA2 per image (rows) per raw strength (columns), composited over grey."""
    out = np.zeros((len(samples), len(grid)))
    for i, s in enumerate(samples):
        ref = Ssimulacra2Reference(s.composite(s.rgb))
        for j, strength in enumerate(grid):
            out[i, j] = ref.score(s.composite(perturb(s.rgb, strength)))
        if progress:
            progress(i + 1)
    return out


def interpolate(scores: np.ndarray, grid: Sequence[float], strength: float,
                factors: Sequence[float] | None = None) -> np.ndarray:
    """Per-image score at `strength` × that image's factor (linear in log strength)."""
    logs = np.log(np.asarray(grid))
    factors = np.ones(len(scores)) if factors is None else np.asarray(factors)
    return np.array([np.interp(math.log(strength * f), logs, row)
                     for row, f in zip(scores, factors, strict=True)])


def solve(scores: np.ndarray, grid: Sequence[float], target: float,
          factors: Sequence[float] | None = None) -> float:
    """Strength at which the median (over images) score crosses `target` (bisection in log s;
    the median of curves falling in strength falls too). Clamped to the grid's range."""
    def med(log_s: float) -> float:
        return float(np.median(interpolate(scores, grid, math.exp(log_s), factors)))

    lo, hi = math.log(grid[0]), math.log(grid[-1])
    if med(lo) <= target:
        return grid[0]
    if med(hi) >= target:
        return grid[-1]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if med(mid) > target else (lo, mid)
    return math.exp(0.5 * (lo + hi))


def fit_exponent(scores: np.ndarray, coverages: Sequence[float], grid: Sequence[float] = GRID,
                 target: float = TARGETS["default"], max_factor: float = MAX_FACTOR) -> float:
    """The coverage exponent that brings transparent images' median score at `default` to the
    opaque images' median (0 when the set has only one kind)."""
    cov = np.asarray(coverages)
    partial = cov < 1
    if partial.all() or not partial.any():
        return 0.0
    best, best_gap = 0.0, math.inf
    for e in EXPONENTS:
        factors = [Coverage(e, max_factor).factor(c) for c in cov]
        s = solve(scores, grid, target, factors)
        at = interpolate(scores, grid, s, factors)
        gap = abs(float(np.median(at[partial])) - float(np.median(at[~partial])))
        if gap < best_gap - 1e-9:
            best, best_gap = e, gap
    return best


@dataclass
class Calibration:
    presets: dict[str, float]
    exponent: float
    max_factor: float
    scores: np.ndarray  # per image per raw grid strength
    coverages: list[float]

    @property
    def factors(self) -> list[float]:
        return [Coverage(self.exponent, self.max_factor).factor(c) for c in self.coverages]

    def at(self, strength: float) -> np.ndarray:
        """Per-image score at a nominal strength (coverage rule applied)."""
        return interpolate(self.scores, GRID, strength, self.factors)


def calibrate(perturb: Perturb, samples: Sequence[Sample], grid: Sequence[float] = GRID,
              max_factor: float = MAX_FACTOR,
              progress: Callable[[int], None] | None = None) -> Calibration:
    scores = curves(perturb, samples, grid, progress)
    coverages = [s.coverage for s in samples]
    exponent = fit_exponent(scores, coverages, grid, TARGETS["default"], max_factor)
    factors = [Coverage(exponent, max_factor).factor(c) for c in coverages]
    presets = {k: round(solve(scores, grid, v, factors), 3) for k, v in TARGETS.items()}
    return Calibration(presets, exponent, max_factor, scores, coverages)


def main() -> None:
    """Calibrate an exported model (.onnx with its card) and print the presets and the rule."""
    from perturb.models import load_model
    from perturb.training.data import list_images

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", type=Path, help="an exported model: <id>.onnx next to <id>.json")
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--images", type=int, default=65, help="val images used (evenly spaced)")
    ap.add_argument("--out", type=Path, help="write presets, rule and curves as JSON")
    a = ap.parse_args()
    model = load_model(a.onnx)
    paths = list_images(a.shared, "val")
    paths = paths[:: max(1, len(paths) // a.images)][: a.images]
    cal = calibrate(model.perturb, [load_sample(p) for p in paths])
    print("presets:", cal.presets, "coverage exponent:", cal.exponent)
    for name, s in cal.presets.items():
        print(f"{name}: median SSIMULACRA2 {np.median(cal.at(s)):.1f}")
    if a.out:
        a.out.write_text(json.dumps({"presets": cal.presets, "exponent": cal.exponent,
                                     "grid": GRID, "scores": cal.scores.round(2).tolist()}))


if __name__ == "__main__":
    main()
