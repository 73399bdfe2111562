"""Ship a checkpoint: checked ONNX export, preset calibration and model card in onnx_models/.

    python -m perturb.training.ship runs/main/model.pt --id sfumato-keyed-v3 --shared ../shared

Writes `onnx_models/<id>.onnx` and `onnx_models/<id>.json` (the card of docs/architecture.md). The
card's metrics are measured here on `val/`; the reported efficacy numbers come from
`bench/efficacy.py` on the shipped file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from perturb import models as perturb_models
from perturb.training.calibrate import GRID, TARGETS, Calibration, calibrate, load_sample
from perturb.training.data import list_images, load_rgb
from perturb.training.export import OPSET, check, load_model, sha256_bytes, to_onnx_bytes
from perturb.training.generator import KeyedProtector, macs_per_pixel
from perturb.training.surrogates import TAEF2_FILES, sha256_file


def contract(model: KeyedProtector) -> dict:
    """The card's contract: inputs (the key among them), outputs, size multiple, large images.

    The generator looks at a few cells around each pixel, so big images are cut into tiles that
    overlap and blend; each tile gets its slice of the frame's one key field, so tiles agree."""
    key = "float32 [N,C,H/s,W/s] i.i.d. standard normal, fresh per image and frame"
    return {
        "inputs": {"image": "float32 [N,3,H,W] sRGB in [0,1]", "strength": "float32 scalar",
                   "key": key},
        "outputs": {"protected": "float32 [N,3,H,W] in [0,1]"},
        "key": {"input": "key", "channels": model.cfg.key_channels, "scale": model.cfg.scale,
                "distribution": "standard_normal"},
        "size_multiple": model.size_multiple,
        "large_images": {"mode": "tile", "tile": 1024, "overlap": 64},
        "opset": OPSET,
    }


def secret(model: KeyedProtector, block: int = 64) -> dict:
    """How much secret reaches each block × block region, and why it cannot be searched (the
    threat model of EVALUATION.md, "The attacker who owns the product")."""
    s, c = model.cfg.scale, model.cfg.key_channels
    per_block = (block // s) ** 2 * c
    reach = 2 * 2 + 1  # two 3×3 convolutions on the key: each cell sees 5 × 5 cells of it
    return {
        "source": "numpy.random.default_rng(secrets.randbits(128)) per image and frame: the "
                  "operating system's CSPRNG; never written to the file, the marker, a log, "
                  "the report or the API",
        "values_per_64px_block": per_block,
        "key_values_per_cell_receptive_field": reach * reach * c,
        "why_unsearchable": (
            f"each {block}×{block} block is shaped by {per_block} independent standard normal "
            f"values ({(block // s) ** 2} cells of {s}×{s} px, {c} values each): even their signs "
            f"alone are 2^{per_block} possibilities per block, against the offsets, flips or K "
            "patterns a correlation search can try; the map from key to perturbation is "
            "non-linear (two tanh layers, gated by the image), so no least-squares fit of a few "
            "coefficients recovers it; the whole field derives from a 128-bit seed that exists "
            "only while the image is protected; the perturbation is odd in the key, so the mean "
            "of any number of replays is zero"),
    }  # fmt: skip


def card(model_id: str, version: str, onnx_bytes: bytes, model: KeyedProtector,
         cal: Calibration | None, training: dict, data: dict, surrogates: list[dict],
         metrics: dict) -> dict:
    """The model card; `cal` None writes a provisional card (contract only) to calibrate with."""
    presets = cal.presets if cal else {"low": 0.5, "default": 1.0, "high": 1.6}
    coverage = {"exponent": cal.exponent if cal else 0.0,
                "max_factor": cal.max_factor if cal else 1.0,
                "rule": "strength × visible share^−exponent (at most max_factor) for images "
                        "with transparency, fitted with the presets on val"}
    return {
        "id": model_id,
        "version": version,
        "file": f"{model_id}.onnx",
        "sha256": sha256_bytes(onnx_bytes),
        "contract": contract(model),
        "secret": secret(model),
        "presets": presets,
        "coverage": coverage,
        "training": training,
        "data": data,
        "surrogates": surrogates,
        "metrics": metrics,
    }


def visibility_stats(scores: list[float] | np.ndarray, how: str) -> dict:
    a = np.asarray(scores)
    return {"how": how, "median": round(float(np.median(a)), 2), "min": round(float(a.min()), 2),
            "max": round(float(a.max()), 2), "share_under_60": round(float((a < 60).mean()), 3),
            "images": len(scores)}


def product_scores(onnx: Path, paths: list[Path]) -> list[float]:
    """SSIMULACRA2 at `default` of perturb.protect's output for each file (composited over grey)."""
    from perturb.engine import protect
    from perturb.training import evaluate as ev

    scores = []
    for i, p in enumerate(paths):  # fixed keys (seed): the card's numbers are reproducible
        x = ev.decode_rgb(p)
        out = protect(p.read_bytes(), strength="default", model=str(onnx), ai_reservation=False,
                      seed=i)
        scores.append(ev.ssimulacra2(x, ev.decode_rgb(out.data)))
    return scores


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--id", default="sfumato-keyed-v3")
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--out-dir", type=Path, default=Path("onnx_models"))
    ap.add_argument("--calibration-images", type=int, default=65, help="val images (all: 65)")
    ap.add_argument("--metrics-json", type=Path, action="append", default=[],
                    help="extra measured metrics (JSON objects) merged into the card")
    ap.add_argument("--note", action="append", default=[],
                    help="a line on how the checkpoint was trained (e.g. earlier stages)")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    t0 = time.time()
    state = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    model = load_model(a.checkpoint)
    onnx_bytes = to_onnx_bytes(model)
    val_paths = list_images(a.shared, "val")
    check_imgs = [load_rgb(p, max_side=512, multiple=model.size_multiple) for p in val_paths[:6]]
    worst = check(model, onnx_bytes, check_imgs)
    print(f"ONNX vs PyTorch max abs diff {worst:.2e}; {len(onnx_bytes) / 1024:.0f} KiB")
    step = max(1, len(val_paths) // a.calibration_images)
    cal_paths = val_paths[::step][: a.calibration_images]
    samples = [load_sample(p) for p in cal_paths]
    with tempfile.TemporaryDirectory() as tmp:  # the exported file, run by the engine itself
        provisional = Path(tmp) / f"{a.id}.onnx"
        provisional.write_bytes(onnx_bytes)
        provisional.with_suffix(".json").write_text(json.dumps(
            card(a.id, a.version, onnx_bytes, model, None, {}, {}, [], {})))
        engine_model = perturb_models.load_model(provisional)

        def perturb(rgb: np.ndarray, strength: float) -> np.ndarray:
            # the same key for every image and strength: smooth, reproducible curves
            return engine_model.perturb(rgb, strength, rng=np.random.default_rng(0))

        cal = calibrate(perturb, samples,
                        progress=lambda i: print(f"  calibrated {i}/{len(samples)}", flush=True))
    print("presets:", cal.presets, "coverage exponent:", cal.exponent)
    vis = {name: visibility_stats(cal.at(s), "interpolated") for name, s in cal.presets.items()}
    train_paths = list_images(a.shared, "train")
    metrics: dict = {
        "split": "val",
        "onnx_max_abs_diff_vs_pytorch": worst,
        "onnx_bytes": len(onnx_bytes),
        "macs_per_pixel_estimate": round(macs_per_pixel(model.cfg)),
        "ssimulacra2_at_presets": vis,
        "ssimulacra2_targets": TARGETS,
        "ssimulacra2_grid": {"strengths": list(GRID), "how": "raw strength, no coverage rule",
                             "median": [round(float(v), 2) for v in np.median(cal.scores, 0)]},
        "training_val_history": state.get("history", [])[-3:],
    }
    for extra in a.metrics_json:
        metrics.update(json.loads(extra.read_text()))
    shared_sur = Path(a.shared) / "surrogates"
    surrogates = [{"name": "taef2", "source": "madebyollin/taesd (MIT)",
                   "files": {f: sha256_file(shared_sur / f) for f in TAEF2_FILES.values()
                             if (shared_sur / f).is_file()}}]
    cfg = state["config"]
    training = {"config": cfg, "steps": state.get("step"),
                "code": "perturb/training/train.py", "command": "make train"}
    if a.note:
        training["stages"] = a.note
    data = {"corpus": "../shared/data/artworks", "train_images": len(train_paths),
            "val_images": len(val_paths), "calibration_images": len(cal_paths),
            "transparency": "colour perturbed under alpha, scored composited over grey 128",
            "images_with_transparency": sum(s.alpha is not None for s in samples)}
    c = card(a.id, a.version, onnx_bytes, model, cal, training, data, surrogates, metrics)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    shipped = a.out_dir / f"{a.id}.onnx"
    shipped.write_bytes(onnx_bytes)
    shipped.with_suffix(".json").write_text(json.dumps(c, indent=2) + "\n")
    # default: measured again end to end, perturb.protect on each image's own PNG (alpha kept)
    exact = product_scores(shipped, cal_paths)
    metrics["ssimulacra2_at_presets"]["default_exact"] = visibility_stats(exact, "measured")
    print("measured at default through perturb.protect:", visibility_stats(exact, "measured"))
    shipped.with_suffix(".json").write_text(json.dumps(c, indent=2) + "\n")
    print(f"shipped {a.out_dir / a.id}.onnx + .json in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
