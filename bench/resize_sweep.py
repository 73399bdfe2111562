"""Protection after downscales by other factors than EVALUATION.md's 0.75.

    .venv-train/bin/python bench/resize_sweep.py            # every 4th val image, ≤ 512 px
    .venv-train/bin/python bench/resize_sweep.py --quick    # 6 images at ≤ 256 px

`resize-jpeg` downscales by exactly 0.75, where every edge of the model's 8 × 8 cells lands on an
edge of the 6-px output grid. Sites resize to their own widths, so the cells land anywhere. This
scores G (EVALUATION.md, equal-visibility noise under alpha) after `resize-jpeg@F` — Lanczos
downscale by F, then JPEG 80 — for several F, each protected image made by the product
(`perturb.protect`, default preset, a fresh key) from a downscaled copy of the val file in its
own format, as `bench/projection.py` makes them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout
sys.path.insert(0, str(ROOT / "bench"))

import val_sample  # noqa: E402

from perturb.training import evaluate as ev  # noqa: E402

FACTORS = (0.5, 0.6, 2 / 3, 0.75, 0.8, 0.9)


def transform_names(factors: tuple[float, ...]) -> tuple[str, ...]:
    """jpeg85 (the unscaled reference) then `resize-jpeg@F` per factor, 0.75 as `resize-jpeg`."""
    return ("jpeg85",) + tuple("resize-jpeg" if f == 0.75 else f"resize-jpeg@{f:.3g}"
                               for f in factors)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    a = val_sample.parse(val_sample.parser(__doc__, "resize_sweep"), argv)
    import torch

    from perturb import models
    from perturb.training.surrogates import load_taef2

    torch.set_num_threads(2)
    engine = models.load_model(a.model)
    names = transform_names(FACTORS)
    latents = ev.LatentModel(load_taef2(a.shared, decoder=False).encoder, None, 2)
    val = val_sample.files(a)
    print(f"{engine.id} {engine.version}: {len(val)} val images at ≤ {a.side} px", flush=True)
    records, transparent, t0 = [], 0, time.perf_counter()
    for i, path in enumerate(val, 1):
        colour, alpha, colour_p = val_sample.protect_file(path, a.side, engine)
        transparent += alpha is not None
        ref = ev.ImageReference(ev.composite(colour, alpha), latents, names,
                                colour=colour, alpha=alpha)  # fmt: skip
        records.append(ev.score_image(ref, ev.composite(colour_p, alpha), damage=False))
        print(
            f"  {i}/{len(val)} {path.name}: SSIMULACRA 2 "
            f"{records[-1]['visibility']['ssimulacra2']:.1f} "
            f"[{(time.perf_counter() - t0) / 60:.1f} min]",
            flush=True,
        )

    summary = ev.summarize(records)
    g = {t: summary.transforms[t]["G"] for t in names}
    lines = [
        f"Model: {engine.id} {engine.version}, default preset; {len(records)} val images at "
        f"≤ {a.side} px ({transparent} with transparency), median SSIMULACRA 2 "
        f"{summary.ssimulacra2:.1f}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{(time.perf_counter() - t0) / 60:.1f} min.",
        "",
        f"Command: `.venv-train/bin/python bench/resize_sweep.py{' --quick' if a.quick else ''}`",
        "",
        "| transform | downscale | G (median) |",
        "| --- | --- | --- |",
        f"| jpeg85 | none | {g['jpeg85']:.2f} |",
    ]
    for f, t in zip(FACTORS, names[1:], strict=True):
        lines.append(f"| {t} (then JPEG 80) | {f:.3g} | {g[t]:.2f} |")
    text = "\n".join(lines)
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(text + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"model": engine.id, "version": engine.version, "side": a.side, "factors": FACTORS,
         "G": g, "images": [{"name": p.name, "G": {t: r["transforms"][t]["G"] for t in names},
                             "ssimulacra2": r["visibility"]["ssimulacra2"]}
                            for p, r in zip(val, records, strict=True)]},
        indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
