"""Compare models at equal visibility, the product's way: the quick check behind docs/model.md.

    .venv-train/bin/python -m perturb.training.compare runs/a/model.pt onnx_models/<id>.onnx

Each model (a train.py checkpoint, or an exported `.onnx` next to its card) perturbs every
`--every`-th val image as stored — colour, also under transparent pixels, alpha untouched,
downscaled to ≤ `--side` px — with a fresh key per protection. Its strength is solved so that the
median SSIMULACRA 2 (composited over grey) equals `--target`, with the coverage rule fitted as
`calibrate` fits it. Then, per EVALUATION.md: G under each transform against the equal-visibility
noise (added under alpha), Gᵣ after the replay attack (4 more protections of the protected pixels
with fresh keys, their mean change subtracted), and for JPEG inputs the protected file's size when
re-encoded with the original's quantisation tables. G depends on the visibility it is measured at,
so only equal-visibility rows compare. For tuning on `val/`; `bench/efficacy.py` gives the
reported numbers. Two diagnostics for checkpoints: `--grid-offset N` moves the model's cells,
`--cell-filter SPEC` adds a row per fixed filter of its cells (cell_filters.py).
"""

from __future__ import annotations

import argparse
import io
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from perturb.models import Coverage
from perturb.training import evaluate as ev
from perturb.training.calibrate import GRID, MAX_FACTOR, Sample, curves, fit_exponent, solve
from perturb.training.cell_filters import cell_filter, filtered
from perturb.training.data import list_images
from perturb.training.generator import KeyedProtector

REPLAYS = 4
CALIBRATION_SEED = 0  # one key for the calibration curves, so they are smooth
# (uint8 colour, strength, numpy generator for the key) → uint8 colour
Perturb = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass
class ValImage:
    sample: Sample
    jpeg: bytes | None  # the original file when it is a JPEG (for the size column)


def torch_perturb(model: KeyedProtector, grid_offset: int = 0) -> Perturb:
    """A generator run as the engine runs a keyed model (reflect-padded, cropped back, 8-bit).

    `grid_offset` > 0 pads that many pixels on the top and left too, so the model's cells start
    that far before the image's first pixel (the engine's grid is offset 0): a diagnostic of how
    much the scores owe to the cells lining up with JPEG's blocks and a resize's pixels."""
    t, o = model.size_multiple, grid_offset

    @torch.no_grad()
    def run(rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
        h, w = x.shape[-2:]
        x = torch.nn.functional.pad(x, (o, (-(w + o)) % t, o, (-(h + o)) % t), mode="reflect")
        shape = model.key_shape(1, *x.shape[-2:])
        key = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
        y = model(x, torch.tensor(strength), key)[0, :, o : o + h, o : o + w]
        return ev.to_uint8(y.permute(1, 2, 0).numpy())

    return run


def onnx_perturb(path: Path) -> Perturb:
    """An exported model through the engine (`perturb.models`), keyed or not."""
    from perturb.models import load_model

    model = load_model(path)
    return lambda rgb, strength, rng: model.perturb(rgb, strength, rng=rng)


def load_images(folder: Path, every: int, side: int) -> list[ValImage]:
    paths = list_images(folder)
    out = []
    for p in paths[::every]:
        data = p.read_bytes()
        colour, alpha = ev.decode_colour_alpha(data)
        if max(colour.shape[:2]) > side:
            s = side / max(colour.shape[:2])
            size = (round(colour.shape[1] * s), round(colour.shape[0] * s))
            colour = np.asarray(Image.fromarray(colour).resize(size, Image.LANCZOS))
            if alpha is not None:
                alpha = np.asarray(Image.fromarray(alpha).resize(size, Image.LANCZOS))
            data = _jpeg_like(colour, data) if data[:2] == b"\xff\xd8" else data
        h, w = (d - d % 8 for d in colour.shape[:2])
        colour = np.ascontiguousarray(colour[:h, :w])
        alpha = None if alpha is None else np.ascontiguousarray(alpha[:h, :w])
        jpeg = data if data[:2] == b"\xff\xd8" else None
        out.append(ValImage(Sample(p.name, colour, alpha), jpeg))
    return out


def _jpeg_like(rgb: np.ndarray, original: bytes) -> bytes:
    """`rgb` encoded with the original JPEG's quantisation tables and subsampling."""
    from PIL import JpegImagePlugin

    with Image.open(io.BytesIO(original)) as im:
        tables = im.quantization
        sub = JpegImagePlugin.get_sampling(im)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", qtables=tables, subsampling=max(sub, 0))
    return buf.getvalue()


def score_model(
    perturb: Perturb,
    images: list[ValImage],
    target: float,
    encoder: torch.nn.Module,
    seed: int = 1,
    transforms: tuple[str, ...] = ("jpeg85", "resize-jpeg"),
) -> dict:
    """Strength solved for a median SSIMULACRA 2 of `target`, then G, Gᵣ and the JPEG size."""
    samples = [im.sample for im in images]
    fixed = lambda rgb, s: perturb(rgb, s, np.random.default_rng(CALIBRATION_SEED))  # noqa: E731
    scores = curves(fixed, samples)
    coverages = [s.coverage for s in samples]
    exponent = fit_exponent(scores, coverages, GRID, target, MAX_FACTOR)
    factors = [Coverage(exponent, MAX_FACTOR).factor(c) for c in coverages]
    strength = solve(scores, GRID, target, factors)
    latents = ev.LatentModel(encoder, None, 2)
    rng = np.random.default_rng(seed)
    records, sizes = [], []
    for im, f in zip(images, factors, strict=True):
        s = im.sample
        xp = perturb(s.rgb, strength * f, rng)
        if im.jpeg is not None:  # the product's re-encoding of a JPEG input
            data = _jpeg_like(xp, im.jpeg)
            sizes.append(len(data) / len(im.jpeg))
            xp = ev.decode_rgb(data)
        change = np.zeros(xp.shape)
        for _ in range(REPLAYS):
            again = perturb(xp, strength * f, rng)
            if im.jpeg is not None:
                again = ev.decode_rgb(_jpeg_like(again, im.jpeg))
            change += again.astype(np.float64) - xp
        restored = ev.to_uint8((xp - change / REPLAYS) / 255.0)
        x = s.composite(s.rgb)
        ref = ev.ImageReference(x, latents, transforms, colour=s.rgb, alpha=s.alpha)
        records.append(
            ev.score_image(ref, s.composite(xp), damage=False, replay=s.composite(restored))
        )
    summary = ev.summarize(records)
    opaque = [r for r, s in zip(records, samples, strict=True) if s.alpha is None]
    sprites = [r for r, s in zip(records, samples, strict=True) if s.alpha is not None]

    def g(rs: list[dict], t: str, k: str) -> float | None:
        return ev.median(r["transforms"][t][k] for r in rs)

    return {
        "strength": strength, "exponent": exponent, "n": summary.n,
        "ssimulacra2": summary.ssimulacra2, "under_60": summary.share_under_60,
        "G": {t: summary.transforms[t]["G"] for t in transforms},
        "G_replay": {t: summary.transforms[t]["G_replay"] for t in transforms},
        "G_opaque": {t: g(opaque, t, "G") for t in transforms},
        "G_sprites": {t: g(sprites, t, "G") for t in transforms},
        "jpeg_size": statistics.median(sizes) if sizes else None,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, nargs="+", help="train.py checkpoints or .onnx files")
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument(
        "--surrogate",
        default="taef2",
        help="encoder G is measured on: taef2 or a held-out encoder file (heldout.py)",
    )
    ap.add_argument("--target", type=float, default=71.0, help="median SSIMULACRA 2")
    ap.add_argument("--every", type=int, default=4, help="every n-th val image")
    ap.add_argument("--side", type=int, default=512, help="long side the images are scaled to")
    ap.add_argument(
        "--grid-offset",
        type=int,
        default=0,
        help="shift the model's cells by this many px (checkpoints only; diagnostic)",
    )
    ap.add_argument(
        "--cell-filter",
        action="append",
        default=[],
        help="also score each checkpoint with this fixed filter of its cells (cell_filters.py): "
        "jpeg-weight@P or chroma-pool; repeat for more (diagnostic)",
    )
    a = ap.parse_args(argv)
    if (a.grid_offset or a.cell_filter) and any(p.suffix == ".onnx" for p in a.models):
        ap.error("--grid-offset and --cell-filter need train.py checkpoints, not .onnx files")
    for spec in a.cell_filter:
        try:
            cell_filter(spec)
        except ValueError as e:
            ap.error(str(e))
    from perturb.training.surrogates import SurrogateError, load_surrogate

    torch.set_num_threads(2)
    try:
        encoder = load_surrogate(a.surrogate, a.shared).encoder
    except SurrogateError as e:
        ap.error(str(e))
    images = load_images(a.shared / "data" / "artworks" / "val", a.every, a.side)
    print(
        f"{len(images)} val images (every {a.every}th, ≤ {a.side} px), "
        f"{sum(im.sample.alpha is not None for im in images)} with transparency; "
        f"G on {a.surrogate}",
        flush=True,
    )
    runs: list[tuple[str, Perturb]] = []
    for path in a.models:
        if path.suffix == ".onnx":
            runs.append((str(path), onnx_perturb(path)))
            continue
        from perturb.training.export import load_model

        model = load_model(path)
        runs.append((str(path), torch_perturb(model, a.grid_offset)))
        for spec in a.cell_filter:
            filtered_run = torch_perturb(filtered(model, spec), a.grid_offset)
            runs.append((f"{path} --cell-filter {spec}", filtered_run))
    for name, run in runs:
        r = score_model(run, images, a.target, encoder)

        def fmt(d: dict) -> str:
            return " / ".join("—" if v is None else f"{v:.2f}" for v in d.values())

        size = "—" if r["jpeg_size"] is None else f"{r['jpeg_size']:.2f}×"
        print(
            f"{name}: strength {r['strength']:.3f} (coverage exponent {r['exponent']}), "
            f"SSIMULACRA 2 {r['ssimulacra2']:.1f} ({r['under_60']:.0%} < 60), "
            f"G {fmt(r['G'])}, Gᵣ {fmt(r['G_replay'])} (jpeg85 / resize-jpeg); "
            f"opaque {fmt(r['G_opaque'])}, sprites {fmt(r['G_sprites'])}; JPEG size {size}",
            flush=True,
        )


if __name__ == "__main__":
    main()
