"""The projection attack: remove, from every 8×8 cell, its part in the public model's output span.

    .venv-train/bin/python bench/projection.py            # every 4th val image, ≤ 512 px
    .venv-train/bin/python bench/projection.py --quick    # 6 images at ≤ 256 px

The keyed model's last layer maps each cell's hidden features to its 8×8 RGB patch through a
public 1×1 convolution `W` (3·8·8 × hidden): before the tanh, every cell's change lies in the
span of `W`'s columns, a subspace of hidden dimensions out of 192. The key decides where in that
span, but an attacker who reads `W` from the ONNX file can remove the whole span from the
scraped pixels without knowing the key — at the price of whatever of the artwork lies in it too.
EVALUATION.md leaves such attacks to outside checks; this measures the obvious two:

- `span`: `x_a = x' − P x'` per cell (`P`: the orthogonal projector onto span(W)), cells on the
  engine's grid (it pads bottom and right, so cells start at the top-left pixel);
- `span-highpass`: `x_a = x' − P (x' − blur(x'))`: only the cell's fine detail in the span goes,
  so the artwork's smooth content is spared.

Each protected image is made by the product (`perturb.protect`, default preset, a fresh key) from
a downscaled copy of the val file in its own format; `x_a` is scored as the replay attack's image
is (EVALUATION.md, "The attacker who owns the product"): G against the noise of `x'`'s
visibility, under `jpeg85` and `resize-jpeg`, with its SSIMULACRA 2 against the original. The
attack works if `x_a` is close to the original (SSIMULACRA 2 above `x'`'s) and its G falls
towards 1. Also printed: the share of the perturbation's energy that lies in the span.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import val_sample  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

from perturb.training import evaluate as ev  # noqa: E402
from perturb.training.train import SPAN_BLUR_SIGMA  # noqa: E402  (the one the training attack uses)

TRANSFORMS = ("jpeg85", "resize-jpeg")
ATTACKS = ("span", "span-highpass")


def output_basis(onnx_path: Path) -> tuple[np.ndarray, int]:
    """`W` (3·s² × hidden) of the model's last layer, read from the ONNX file, and the cell side s.

    Row c·s² + i·s + j is colour c at row i, column j of the cell (PixelShuffle's order)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    w = next(v for k, v in weights.items() if k.endswith("out.weight"))
    s = int(round((w.shape[0] / 3) ** 0.5))
    return w.reshape(w.shape[0], -1).astype(np.float64), s


def projector(w: np.ndarray) -> np.ndarray:
    """The orthogonal projector onto the span of `w`'s columns."""
    q, _ = np.linalg.qr(w)
    return q @ q.T


def to_cells(img: np.ndarray, s: int) -> tuple[np.ndarray, tuple[int, int]]:
    """H×W×3 → (cells × 3s²) in PixelShuffle's order, reflect-padded to whole cells."""
    h, w = img.shape[:2]
    padded = np.pad(img, ((0, (-h) % s), (0, (-w) % s), (0, 0)), mode="reflect")
    ph, pw = padded.shape[:2]
    cells = padded.reshape(ph // s, s, pw // s, s, 3).transpose(0, 2, 4, 1, 3)
    return cells.reshape(-1, 3 * s * s), (ph, pw)


def from_cells(cells: np.ndarray, s: int, padded: tuple[int, int], shape: tuple[int, ...]
               ) -> np.ndarray:
    ph, pw = padded
    img = cells.reshape(ph // s, pw // s, 3, s, s).transpose(0, 3, 1, 4, 2).reshape(ph, pw, 3)
    return img[: shape[0], : shape[1]]


def remove_span(x: np.ndarray, proj: np.ndarray, s: int, blurred: np.ndarray | None = None
                ) -> np.ndarray:
    """The attack on colour in [0, 1]: each cell minus its part in the span (with `blurred`, only
    the part of its fine detail `x − blurred`)."""
    cells, padded = to_cells(x if blurred is None else x - blurred, s)
    return x - from_cells(cells @ proj, s, padded, x.shape)


def attacked(colour: np.ndarray, proj: np.ndarray, s: int, attack: str) -> np.ndarray:
    """One of ATTACKS on uint8 colour, quantised back to uint8 as a scraper would save it."""
    blurred = None
    if attack == "span-highpass":
        smooth = Image.fromarray(colour).filter(ImageFilter.GaussianBlur(SPAN_BLUR_SIGMA))
        blurred = np.asarray(smooth).astype(np.float64) / 255
    return ev.to_uint8(remove_span(colour.astype(np.float64) / 255, proj, s, blurred))


def span_share(delta: np.ndarray, proj: np.ndarray, s: int) -> float:
    """‖P δ‖² / ‖δ‖²: how much of the perturbation's energy the span holds."""
    cells, _ = to_cells(delta, s)
    total = float((cells**2).sum())
    return float(((cells @ proj) ** 2).sum()) / total if total else float("nan")


def main(argv: list[str] | None = None) -> int:
    a = val_sample.parse(val_sample.parser(__doc__, "projection"), argv)
    import torch

    from perturb import models
    from perturb.training.surrogates import load_taef2

    torch.set_num_threads(2)
    engine = models.load_model(a.model)
    w, s = output_basis(engine.path)
    proj = projector(w)
    latents = ev.LatentModel(load_taef2(a.shared, decoder=False).encoder, None, 2)
    val = val_sample.files(a)
    print(f"{engine.id} {engine.version}: W is {w.shape[0]} × {w.shape[1]} "
          f"(span {np.linalg.matrix_rank(w)} of {w.shape[0]} per {s}×{s} cell); "
          f"{len(val)} val images at ≤ {a.side} px", flush=True)
    rows, t0 = [], time.perf_counter()
    for i, path in enumerate(val, 1):
        colour, alpha, colour_p = val_sample.protect_file(path, a.side, engine)
        delta = (colour_p.astype(np.float64) - colour) / 255
        if alpha is not None:  # only what shows once composited counts
            delta = delta * (alpha[..., None] > 0)
        x = ev.composite(colour, alpha)
        ref = ev.ImageReference(x, latents, TRANSFORMS, colour=colour, alpha=alpha)
        row = {"name": path.name, "transparent": alpha is not None,
               "span_share": span_share(delta, proj, s), "attacks": {}}  # fmt: skip
        for attack in ATTACKS:
            xa = attacked(colour_p, proj, s, attack)
            rec = ev.score_image(ref, ev.composite(colour_p, alpha), damage=False,
                                 replay=ev.composite(xa, alpha))  # fmt: skip
            row["ssimulacra2"] = rec["visibility"]["ssimulacra2"]
            row["G"] = {t: rec["transforms"][t]["G"] for t in TRANSFORMS}
            row["attacks"][attack] = {
                "ssimulacra2": rec["replay"]["ssimulacra2"],
                "G": {t: rec["transforms"][t]["G_replay"] for t in TRANSFORMS},
            }
        rows.append(row)
        el = time.perf_counter() - t0
        print(f"  {i}/{len(val)} {path.name}: SSIMULACRA 2 {row['ssimulacra2']:.1f}, span holds "
              f"{row['span_share']:.0%} of δ [{el / 60:.1f} min]", flush=True)

    def med(values) -> float:
        return statistics.median(values)

    summary = {"as protected": {"ssimulacra2": med(r["ssimulacra2"] for r in rows),
                                **{t: med(r["G"][t] for r in rows) for t in TRANSFORMS}}}
    for attack in ATTACKS:
        summary[attack] = {"ssimulacra2": med(r["attacks"][attack]["ssimulacra2"] for r in rows),
                           **{t: med(r["attacks"][attack]["G"][t] for r in rows)
                              for t in TRANSFORMS}}  # fmt: skip
    share = med(r["span_share"] for r in rows)
    lines = [
        f"Model: {engine.id} {engine.version}, default preset; {len(rows)} val images at "
        f"≤ {a.side} px ({sum(r['transparent'] for r in rows)} with transparency); "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{(time.perf_counter() - t0) / 60:.1f} min.",
        "",
        f"Command: `.venv-train/bin/python bench/projection.py{' --quick' if a.quick else ''}`",
        "",
        f"W spans {np.linalg.matrix_rank(w)} of {w.shape[0]} dimensions per {s}×{s} cell; the "
        f"span holds a median {share:.0%} of the perturbation's energy.",
        "",
        "| image the scraper trains on | SSIMULACRA 2 vs original | G jpeg85 | G resize-jpeg |",
        "| --- | --- | --- | --- |",
    ]
    for name, v in summary.items():
        lines.append(f"| {name} | {v['ssimulacra2']:.1f} | {v['jpeg85']:.2f} | "
                     f"{v['resize-jpeg']:.2f} |")
    text = "\n".join(lines)
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(text + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"model": engine.id, "version": engine.version, "side": a.side,
         "basis": list(w.shape), "span_share": share, "summary": summary, "images": rows},
        indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
