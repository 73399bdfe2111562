"""Transparency benchmark: how much can any perturbation do on a sprite's visible pixels alone?

    .venv-train/bin/python bench/transparency.py              # 6 val images with alpha, PGD-100
    .venv-train/bin/python bench/transparency.py --steps 20   # a quicker look (not the result)

EVALUATION.md scores a transparent image composited over grey 128, and its noise yardstick `xₙ`
adds noise to every pixel of that composite, the grey background included. A product that keeps
the artist's transparency can only change what shows: the composite moves by alpha·δ. This bench
scores, on the same images at full size and by the same definitions (S, G against equally visible
noise, SSIMULACRA 2):

- the shipped model at `default`, black-box through `perturb.protect` (alpha kept);
- PGD-100 on the encoder confined to the visible pixels (δ·alpha) at L∞ 4, 8, 16 /255: the best a
  slow per-image optimiser does under the same constraint;
- PGD-100 on the whole composite at L∞ 4/255, background included: what becomes possible only if
  transparent pixels were made visible (which the product does not do).

Writes bench/results/transparency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from perturb.engine import protect  # noqa: E402
from perturb.training import evaluate as ev  # noqa: E402
from perturb.training.calibrate import load_sample  # noqa: E402
from perturb.training.pgd import pgd_encoder_attack  # noqa: E402
from perturb.training.surrogates import load_surrogate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TRANSFORMS = ("none", "jpeg85", "resize-jpeg", "noise-jpeg")
MASKED_BUDGETS = (4, 8, 16)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pick(folder: Path, k: int) -> list[Path]:
    """k images with transparency, evenly spaced in name order (a fixed, unbiased choice)."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".webp", ".gif"))
    with_alpha = [p for p in paths if load_sample(p).alpha is not None]
    if not with_alpha:
        raise SystemExit(f"error: no image with transparency in {folder}")
    step = max(1, len(with_alpha) // k)
    return with_alpha[::step][:k]


def attack(encoder, x: np.ndarray, alpha: np.ndarray | None, budget: int, steps: int) -> tuple:
    xt = torch.from_numpy(x.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    mask = None  # 8-bit alpha (H×W) → 1×1×H×W in [0, 1]
    if alpha is not None:
        mask = torch.from_numpy(alpha.astype(np.float32) / 255)[None, None].contiguous()
    res = pgd_encoder_attack(encoder, xt, budget / 255, steps=steps, seed=0, mask=mask)
    return ev.to_uint8(res.x_adv[0].permute(1, 2, 0).numpy()), res.seconds


def row(record: dict) -> dict:
    return {"ssimulacra2": record["visibility"]["ssimulacra2"],
            **{t: record["transforms"][t]["G"] for t in TRANSFORMS}}


def write(methods: list[str], per_image: dict, steps: int, seconds: float, final: bool) -> str:
    """The table and JSON so far (after every image: a long run that stops early still counts)."""
    summary = {m: {k: statistics.median(r[m][k] for r in per_image.values())
                   for k in ("ssimulacra2", *TRANSFORMS)} for m in methods}
    head = ("| method | SSIMULACRA 2 | G none | G jpeg85 | G resize-jpeg | G noise-jpeg |\n"
            "| --- | --- | --- | --- | --- | --- |")
    lines = [head] + [
        f"| {m} | {v['ssimulacra2']:.1f} | "
        + " | ".join(f"{v[t]:.2f}" for t in TRANSFORMS) + " |" for m, v in summary.items()]
    cov = statistics.median(r["coverage"] for r in per_image.values())
    md = (f"Transparency bench{'' if final else ' (PARTIAL)'}: {len(per_image)} val images with "
          f"alpha (median {cov:.0%} of the canvas visible), full size, medians; G against equally "
          f"visible noise over the whole composite (EVALUATION.md), TAEF2.\n\n"
          + "\n".join(lines) + "\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transparency.md").write_text(md)
    (RESULTS / "transparency.json").write_text(json.dumps(
        {"images": list(per_image), "steps": steps, "complete": final, "summary": summary,
         "per_image": per_image, "seconds": seconds}, indent=1))
    return md


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT / ".." / "shared")
    ap.add_argument("--folder", type=Path, help="images (default: <shared>/data/artworks/val)")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    folder = a.folder or a.shared / "data" / "artworks" / "val"
    paths = pick(folder, a.images)
    sur = load_surrogate("taef2", a.shared)
    latents = ev.LatentModel(sur.encoder, None, a.threads)
    methods = (["model default (alpha kept)"]
               + [f"PGD-{a.steps} visible pixels {b}/255" for b in MASKED_BUDGETS]
               + [f"PGD-{a.steps} whole canvas 4/255"])
    per_image: dict[str, dict] = {}
    started = time.time()
    for n, path in enumerate(paths, 1):
        s = load_sample(path)
        x = ev.crop8(s.composite(s.rgb))
        alpha = s.alpha[: x.shape[0], : x.shape[1]]
        ref = ev.ImageReference(x, latents, TRANSFORMS)
        out = ev.crop8(ev.decode_rgb(protect(path.read_bytes(), strength="default").data))
        results = {methods[0]: (out, None)}
        for b in MASKED_BUDGETS:
            results[f"PGD-{a.steps} visible pixels {b}/255"] = attack(sur.encoder, x, alpha, b,
                                                                      a.steps)
        results[methods[-1]] = attack(sur.encoder, x, None, 4, a.steps)
        per_image[path.name] = {"coverage": s.coverage, "size": [x.shape[1], x.shape[0]]}
        for m, (xp, secs) in results.items():
            rec = ev.score_image(ref, xp, damage=False)
            per_image[path.name][m] = {**row(rec), "seconds": secs}
        log(f"{n}/{len(paths)} {path.name} ({x.shape[1]}×{x.shape[0]}, "
            f"{s.coverage:.0%} visible) done, {time.time() - started:.0f} s so far")
        md = write(methods, per_image, a.steps, time.time() - started, final=n == len(paths))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
