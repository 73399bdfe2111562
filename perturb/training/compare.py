"""Compare checkpoints at equal visibility: the quick check behind docs/model.md's "what was tried".

    .venv-train/bin/python -m perturb.training.compare runs/a/model.pt runs/b/model.pt

Each checkpoint's strength is solved so that the median SSIMULACRA 2 over the same val images
(every fifth, composited over grey, ≤ 384 px) equals `--target`; then `quick_gain` reports G and
ΔC there. G depends on the visibility it is measured at, so only equal-visibility rows compare.
For tuning on `val/`; `bench/efficacy.py` gives the reported numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from perturb.training import evaluate as ev
from perturb.training.calibrate import GRID, Sample, curves, solve
from perturb.training.export import load_model
from perturb.training.generator import KeyedProtector


def perturb_fn(model: KeyedProtector, seed: int = 0):
    """uint8 H×W×3, strength → uint8 H×W×3, reflect-padded to the model's size multiple like the
    engine, with the same key for every call (comparisons, unlike protections, repeat)."""
    t = model.size_multiple

    @torch.no_grad()
    def run(rgb: np.ndarray, strength: float) -> np.ndarray:
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
        h, w = x.shape[-2:]
        x = torch.nn.functional.pad(x, (0, (-w) % t, 0, (-h) % t), mode="reflect")
        key = model.draw_key(1, *x.shape[-2:], torch.Generator().manual_seed(seed))
        y = model(x, torch.tensor(strength), key)[0, :, :h, :w]
        return ev.to_uint8(y.permute(1, 2, 0).numpy())

    return run


def load_images(folder: Path, every: int = 5, side: int = 384) -> list[np.ndarray]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    out = []
    for p in paths[::every]:
        x = ev.decode_rgb(p)
        if max(x.shape[:2]) > side:
            s = side / max(x.shape[:2])
            size = (round(x.shape[1] * s), round(x.shape[0] * s))
            x = np.asarray(Image.fromarray(x).resize(size, Image.LANCZOS))
        out.append(ev.crop8(x))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--target", type=float, default=71.0, help="median SSIMULACRA 2")
    a = ap.parse_args(argv)
    from perturb.training.surrogates import load_taef2

    torch.set_num_threads(2)
    images = load_images(a.shared / "data" / "artworks" / "val")
    samples = [Sample(str(i), x, None) for i, x in enumerate(images)]
    sur = load_taef2(a.shared, decoder=True)
    for ck in a.checkpoints:
        run = perturb_fn(load_model(ck))
        strength = solve(curves(run, samples), GRID, a.target)
        r = ev.quick_gain(lambda x, s=strength, f=run: f(ev.to_uint8(x), s) / 255.0,
                          images, sur.encoder, sur.decoder, max_side=384)
        print(f"{ck}: strength {strength:.3f}, SSIMULACRA 2 {r['ssimulacra2']:.1f}, "
              f"G {r['G']}, ΔC {r['dC']}", flush=True)


if __name__ == "__main__":
    main()
