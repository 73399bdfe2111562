"""A few real training steps on tiny crops with a randomly initialised TAEF2-architecture net."""

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perturb.engine import protect
from perturb.training.data import CropSampler, composite
from perturb.training.generator import GeneratorConfig
from perturb.training.ship import main as ship_main
from perturb.training.surrogates import TAEF2_TAPS, Surrogate, taef2_encoder
from perturb.training.train import TrainConfig, Trainer, main
from perturb.training.transforms import (
    Transform,
    jpeg_model,
    jpeg_real,
    jpeg_st,
    sample_transform,
)


def write_images(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        arr = (rng.random((70 + 10 * i, 90, 4)) * 255).astype(np.uint8)
        p = folder / f"art{i}.png"
        Image.fromarray(arr, "RGBA").save(p)
        paths.append(p)
    return paths


def random_surrogate() -> Surrogate:
    torch.manual_seed(0)
    enc = taef2_encoder().eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return Surrogate("random-taef2", enc, None, {}, TAEF2_TAPS)


def test_training_steps_change_the_generator(tmp_path: Path) -> None:
    cfg = TrainConfig(run=str(tmp_path / "run"), batch=2, crops=(32, 64),
                      generator=GeneratorConfig(hidden=8))
    data = CropSampler(write_images(tmp_path / "train"), seed=0)
    trainer = Trainer(cfg, [random_surrogate()], data,
                      [data.images[0][:3, :64, :64].float() / 255])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    logs = [trainer.train_step() for _ in range(3)]
    assert all(np.isfinite(lg["loss"]) for lg in logs)
    after = trainer.model.state_dict()
    for name in ("gate.0.weight", "key_in.weight", "mix.weight", "out.weight"):
        assert not torch.equal(before[name], after[name]), name
    assert np.isfinite(trainer.evaluate()["val_log10_shift_jpeg85"])


def test_transparent_pixels_do_not_count_in_the_loss(tmp_path: Path) -> None:
    """The loss compares composites: perturbing colour under alpha 0 changes nothing scored."""
    folder = tmp_path / "train"
    folder.mkdir()
    Image.new("RGBA", (64, 64), (200, 40, 40, 0)).save(folder / "clear.png")
    cfg = TrainConfig(batch=1, crops=(32,), visibility_target=0, generator=GeneratorConfig())
    trainer = Trainer(cfg, [random_surrogate()], CropSampler([folder / "clear.png"]), [])
    crop = trainer.data.batch(1, 32)
    protected = trainer.protect(crop[:, :3])
    assert not torch.equal(protected, crop[:, :3])  # the colour under alpha was perturbed
    assert torch.equal(composite(torch.cat([protected, crop[:, 3:]], 1)), composite(crop))


def test_decoy_term_trains(tmp_path: Path) -> None:
    cfg = TrainConfig(batch=2, crops=(32,), decoy_weight=0.5, generator=GeneratorConfig(hidden=4))
    data = CropSampler(write_images(tmp_path / "train", 1), seed=0)
    trainer = Trainer(cfg, [random_surrogate()], data, [])
    assert trainer.decoy is not None and trainer.decoy[0].shape[1] == 32
    before = trainer.model.out.weight.detach().clone()
    assert np.isfinite(trainer.train_step()["loss"])
    assert not torch.equal(before, trainer.model.out.weight)


def test_the_span_attack_step_trains_and_the_visibility_is_of_the_protected_crop(
        tmp_path: Path) -> None:
    paths = write_images(tmp_path / "train", 1)
    logs = []
    for p in (1.0, 0.0):
        cfg = TrainConfig(batch=1, crops=(32,), span_attack=p, generator=GeneratorConfig(hidden=4))
        torch.manual_seed(0)
        trainer = Trainer(cfg, [random_surrogate()], CropSampler(paths, seed=0), [])
        before = trainer.model.out.weight.detach().clone()
        logs.append(trainer.train_step())
        assert np.isfinite(logs[-1]["loss"])
        assert not torch.equal(before, trainer.model.out.weight)
    # the same crop and key: the encoder saw the attacked copy, the visibility term did not
    assert logs[0]["loss"] != logs[1]["loss"]
    assert logs[0]["ss2"] == pytest.approx(logs[1]["ss2"], abs=1e-6)


def test_checkpoint_resume_restores_state(tmp_path: Path) -> None:
    cfg = TrainConfig(batch=1, crops=(32,), generator=GeneratorConfig(hidden=4))
    data = CropSampler(write_images(tmp_path / "train", 1), seed=0)
    a = Trainer(cfg, [random_surrogate()], data, [])
    a.train_step()
    a.step = 7
    a.save(tmp_path / "ckpt.pt")
    b = Trainer(cfg, [random_surrogate()], data, [])
    b.load(tmp_path / "ckpt.pt")
    assert b.step == 7
    assert torch.equal(a.model.out.weight, b.model.out.weight)
    # the training keys continue where they stopped, not from the start
    assert torch.equal(a.keys.get_state(), b.keys.get_state())


# a tiny generator with a bound large enough that, untrained, the calibration finds its presets
# inside the strength grid
TINY = ("--g-key-channels", "2", "--g-hidden", "4", "--g-eps", "0.5")


def test_main_runs_end_to_end_on_a_shared_layout(tmp_path: Path, capsys: pytest.CaptureFixture
                                                  ) -> None:
    shared = tmp_path / "shared"
    write_images(shared / "data" / "artworks" / "train")
    write_images(shared / "data" / "artworks" / "val", 1)
    (shared / "surrogates").mkdir(parents=True)
    torch.save(taef2_encoder().state_dict(), shared / "surrogates" / "taef2_encoder.pth")
    run = tmp_path / "run"
    main(["--shared", str(shared), "--run", str(run), "--max-steps", "2", "--batch", "1",
          "--crops", "32", "--eval-every", "1", *TINY])
    state = torch.load(run / "model.pt", weights_only=False)
    assert state["step"] == 2 and len(state["history"]) == 2
    assert state["config"]["generator"]["key_channels"] == 2
    main(["--shared", str(shared), "--run", str(run), "--max-steps", "3", "--batch", "1",
          "--crops", "32", "--resume", *TINY])
    assert torch.load(run / "model.pt", weights_only=False)["step"] == 3
    # --init from a narrower model widens it (the same function to start from) and trains on
    wide = tmp_path / "wide"
    main(["--shared", str(shared), "--run", str(wide), "--max-steps", "1", "--batch", "1",
          "--crops", "32", "--init", str(run / "model.pt"), *TINY, "--g-hidden", "6"])
    assert "init: widened 4 → 6 hidden channels" in capsys.readouterr().out
    assert torch.load(wide / "model.pt", weights_only=False)["model"]["mix.weight"].shape[0] == 6
    # ship it: export, calibration through the engine, card; the engine then protects with it
    Image.fromarray((np.random.default_rng(1).random((64, 80, 3)) * 255).astype(np.uint8)).save(
        shared / "data" / "artworks" / "val" / "opaque.png")
    out = tmp_path / "models"
    ship_main([str(run / "model.pt"), "--id", "tiny-shipped", "--shared", str(shared),
               "--out-dir", str(out)])
    card = json.loads((out / "tiny-shipped.json").read_text())
    p = card["presets"]
    assert 0 < p["low"] < p["default"] < p["high"]
    assert 0 <= card["coverage"]["exponent"] <= 1.5
    assert card["data"]["images_with_transparency"] == 1
    assert card["metrics"]["ssimulacra2_at_presets"]["default_exact"]["images"] == 2
    src = (shared / "data" / "artworks" / "val" / "opaque.png").read_bytes()
    assert card["contract"]["key"] == {"input": "key", "channels": 2, "scale": 8,
                                       "distribution": "standard_normal"}
    assert card["secret"]["values_per_64px_block"] == 8 * 8 * 2  # 64 cells of 8 px, 2 values
    assert "CSPRNG" in card["secret"]["source"]
    assert "2^128 possibilities" in card["secret"]["why_unsearchable"]
    protected = protect(src, model=str(out / "tiny-shipped.onnx"))
    assert protected.report.model_id == "tiny-shipped" and protected.data != src
    assert protect(src, model=str(out / "tiny-shipped.onnx")).data != protected.data  # keyed


def test_transforms_keep_shape_rules_and_pass_gradients() -> None:
    rng = random.Random(1)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    for i in range(12):
        t = replace(sample_transform(rng), jpeg_grad=("identity", "model")[i % 2])
        y = t(x)
        assert y.shape[-1] % 8 == 0 and y.shape[-2] % 8 == 0
        assert float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1
        (g,) = torch.autograd.grad(y.sum(), x)
        assert g.abs().sum() > 0
    smooth = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()
    smooth = smooth + 0.1 * torch.rand(1, 3, 64, 64)
    jpeg = Transform("jpeg", quality=75)(smooth)
    assert 0 < float((jpeg - smooth).abs().mean()) < 0.05  # the real codec ran, and is lossy


def test_jpeg_model_tracks_the_codec_and_its_gradient_drops_what_420_drops() -> None:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 40), indexing="ij")
    x = torch.stack([0.2 + 0.6 * xx, 0.5 + 0.3 * torch.sin(6 * yy), 0.8 - 0.5 * xx * yy])[None]
    x = (x + 0.05 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    real = jpeg_real(x, 85)
    assert float((jpeg_model(x, 85) - real).pow(2).mean().sqrt()) < 0.5 * float(
        (real - x).pow(2).mean().sqrt())  # closer to the codec's output than the input is
    # a chroma-only checkerboard (luma unchanged) is averaged away by 4:2:0: the model's gradient
    # has no component along it, the straight-through one passes it whole
    d = torch.tensor([1.0, -1.0, (0.587 - 0.299) / 0.114]).view(1, 3, 1, 1)
    v = d * ((torch.arange(48).view(-1, 1) + torch.arange(40)) % 2 * 2 - 1.0)
    for grad, along in (("model", 0.0), ("identity", float(v.pow(2).sum()))):
        xr = x.clone().requires_grad_(True)
        y = jpeg_st(xr, 85, grad)
        assert torch.equal(y.detach(), real)  # the forward pass is the real codec either way
        (g,) = torch.autograd.grad((y * v).sum(), xr)
        assert abs(float((g * v).sum()) - along) < 1e-3 * float(v.pow(2).sum())


def test_transform_mixture_weights_pick_the_transforms() -> None:
    rng = random.Random(2)
    only_resize = (("identity", 0.0), ("jpeg", 0.0), ("resize-jpeg", 1.0), ("noise-jpeg", 0.0))
    assert {sample_transform(rng, mixture=only_resize).name for _ in range(50)} == {"resize-jpeg"}
    # weights need not sum to 1: they are relative
    halves = (("identity", 2.0), ("jpeg", 2.0), ("resize-jpeg", 0.0), ("noise-jpeg", 0.0))
    names = [sample_transform(rng, mixture=halves).name for _ in range(400)]
    assert set(names) == {"identity", "jpeg"} and 120 < names.count("jpeg") < 280


def test_learning_rate_falls_along_a_cosine_to_its_floor(tmp_path: Path) -> None:
    cfg = TrainConfig(batch=1, crops=(32,), lr_net=0.02, lr_floor=0.1,
                      generator=GeneratorConfig(hidden=8))
    data = CropSampler(write_images(tmp_path / "train", 1), seed=0)
    trainer = Trainer(cfg, [random_surrogate()], data, [])

    def lr_at(progress: float) -> float:
        trainer.set_lr(progress)
        return trainer.opt.param_groups[0]["lr"]

    lrs = [lr_at(p) for p in np.linspace(0, 1, 11)]
    assert lrs[0] == 0.02 and abs(lrs[-1] - 0.002) < 1e-12 and abs(lr_at(0.5) - 0.011) < 1e-12
    assert all(a > b for a, b in zip(lrs[:-1], lrs[1:], strict=True))
    assert lr_at(1.7) == lrs[-1] and lr_at(-1) == lrs[0]  # clamped outside the run
