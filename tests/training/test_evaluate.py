"""EVALUATION.md quantities: SSIMULACRA 2 equals the package's, the equal-visibility noise hits its
target within 0.5, and S, G, C, ΔC match a hand computation on a toy (block-mean) encoder."""

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from ssimulacra2 import compute_ssimulacra2

from perturb.training import evaluate as ev
from perturb.training import platform_transforms as pt
from perturb.training.surrogates import taef2_decoder, taef2_encoder


def artwork(h: int = 96, w: int = 112, seed: int = 0) -> np.ndarray:
    """Smooth gradients, a few edges and mild texture: closer to art than white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 7.0) * np.cos(yy / 9.0)], axis=2)
    img[h // 3 : h // 2, w // 4 : w // 2] = [0.9, 0.2, 0.1]
    img = img * 200 + 25 + rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def block_mean(img: np.ndarray) -> np.ndarray:
    """The toy encoder by hand: 8×8 block means of [0, 1] RGB, as C×h×w."""
    x = ev.crop8(img).astype(np.float64) / 255
    h, w = x.shape[0] // 8, x.shape[1] // 8
    return x.reshape(h, 8, w, 8, 3).mean(axis=(1, 3)).transpose(2, 0, 1)


def toy_model() -> ev.LatentModel:
    return ev.LatentModel(torch.nn.AvgPool2d(8), torch.nn.Upsample(scale_factor=8), threads=1)


def test_ssimulacra2_on_arrays_equals_the_package(tmp_path: Path) -> None:
    x = artwork()
    xp = pt.apply("jpeg85", x)
    Image.fromarray(x).save(tmp_path / "x.png")
    Image.fromarray(xp).save(tmp_path / "xp.png")
    expected = compute_ssimulacra2(str(tmp_path / "x.png"), str(tmp_path / "xp.png"))
    assert ev.ssimulacra2(x, xp) == pytest.approx(expected, abs=1e-9)
    ref = ev.Ssimulacra2Reference(x)
    assert ref.score(xp) == pytest.approx(expected, abs=1e-9)  # cached pyramid, same score
    assert ref.score(x) == pytest.approx(100.0)


@pytest.mark.parametrize("target", [85.0, 70.0, 55.0])
def test_noise_bisection_hits_the_target_within_half_a_point(target: float) -> None:
    x = artwork()
    m = ev.match_noise(x, target)
    assert m.matched and abs(m.score - target) <= 0.5
    assert m.evaluations <= 30
    # The image returned is exactly clip(x + a·u) with the fixed-seed u, and scores what it says.
    u = ev.unit_noise(x.shape)
    np.testing.assert_array_equal(m.image, ev.noise_image(x, m.a, u))
    assert ev.ssimulacra2(x, m.image) == pytest.approx(m.score)
    diff = m.image.astype(float) - x.astype(float)
    assert np.abs(diff).max() <= m.a * 255 + 0.5


def test_noise_for_an_invisible_target_is_nearly_nothing() -> None:
    x = artwork()
    m = ev.match_noise(x, 100.0)
    assert m.matched and m.a * 255 < 1


def test_unreachable_target_is_reported_not_hung() -> None:
    m = ev.match_noise(artwork(), -1000.0)
    assert not m.matched and m.evaluations <= 30


@pytest.mark.parametrize("transform", ["none", "jpeg85", "resize-jpeg"])
def test_latent_shift_and_gain_match_a_hand_computation(transform: str) -> None:
    x = artwork()
    rng = np.random.default_rng(1)
    # A protected image: a low-frequency colour shift (moves block means) plus fine noise.
    yy, xx = np.mgrid[0 : x.shape[0], 0 : x.shape[1]]
    wave = 6 * np.sin(xx / 5.0)[:, :, None] * np.array([1.0, -1.0, 0.5])
    xp = np.clip(x + wave + rng.normal(0, 1, x.shape), 0, 255).astype(np.uint8)
    ref = ev.ImageReference(x, toy_model(), [transform])
    rec = ev.score_image(ref, xp, damage=True)

    px, pxp = pt.apply(transform, x), pt.apply(transform, xp)
    xn = ev.noise_image(x, rec["noise"]["a"], ev.unit_noise(x.shape))
    pxn = pt.apply(transform, xn)
    z, zp, zn = block_mean(px), block_mean(pxp), block_mean(pxn)
    s_p = ((zp - z) ** 2).sum() / (z**2).sum()
    s_n = ((zn - z) ** 2).sum() / (z**2).sum()
    row = rec["transforms"][transform]
    assert row["S"] == pytest.approx(s_p, rel=1e-4)
    assert row["S_noise"] == pytest.approx(s_n, rel=1e-4)
    assert row["G"] == pytest.approx(s_p / s_n, rel=1e-3)

    # C with the toy decoder (nearest upsampling of block means), by hand.
    def recon_psnr(zz: np.ndarray) -> float:
        up = np.repeat(np.repeat(zz.transpose(1, 2, 0), 8, axis=0), 8, axis=1)
        target = ev.crop8(px).astype(np.float64) / 255
        return 10 * math.log10(1 / np.mean((up - target) ** 2))

    c_p = recon_psnr(z) - recon_psnr(zp)
    c_n = recon_psnr(z) - recon_psnr(zn)
    assert row["C"] == pytest.approx(c_p, abs=1e-3)
    assert row["dC"] == pytest.approx(c_p - c_n, abs=1e-3)
    assert abs(rec["noise"]["ssimulacra2"] - rec["visibility"]["ssimulacra2"]) <= 0.5


def test_visibility_numbers() -> None:
    x = artwork()
    xp = x.copy()
    xp[0, 0, 0] ^= 4
    vis = ev.visibility(x, xp)
    assert vis.psnr == pytest.approx(10 * math.log10(255**2 / (16 / x.size)))
    assert 0.99 < vis.ssim < 1.0 and vis.ssimulacra2 > 90
    assert ev.ssim(x, x) == pytest.approx(1.0)


def test_sizes_must_match() -> None:
    with pytest.raises(ev.EvaluationError, match="differ in size"):
        ev.visibility(artwork(96, 112), artwork(96, 104))


def test_gain_edge_cases() -> None:
    assert ev.gain(0.2, 0.1) == pytest.approx(2.0)
    assert ev.gain(0.0, 0.0) == 1.0
    assert math.isinf(ev.gain(0.1, 0.0))


def test_transparency_is_composited_over_grey() -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:8, :, :] = [255, 0, 0, 255]  # opaque red top half, transparent bottom half
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    rgb = ev.decode_rgb(buf.getvalue())
    assert rgb.shape == (16, 16, 3)
    assert (rgb[:8] == [255, 0, 0]).all() and (rgb[8:] == 128).all()


def test_bad_image_bytes_raise_a_typed_error() -> None:
    with pytest.raises(ev.EvaluationError, match="cannot decode"):
        ev.decode_rgb(b"not an image")


def test_summarize_medians_and_share_under_60() -> None:
    def record(s2: float, g: float) -> dict:
        return {
            "visibility": {"ssimulacra2": s2, "psnr": 40.0, "ssim": 0.9},
            "noise": {"matched": True},
            "transforms": {"jpeg85": {"S": 1.0, "S_noise": 1.0 / g, "G": g}},
        }

    s = ev.summarize([record(50, 1.0), record(70, 3.0), record(80, 2.0), record(90, 10.0)])
    assert s.n == 4 and s.ssimulacra2 == 75 and s.share_under_60 == 0.25
    assert s.transforms["jpeg85"]["G"] == 2.5


def test_summarize_keeps_every_scored_transform_in_scoring_order() -> None:
    """Transforms outside EVALUATION.md's four (`resize-jpeg@F`) are summarised too."""
    names = ("jpeg85", "resize-jpeg@0.6", "resize-jpeg")
    rec = {
        "visibility": {"ssimulacra2": 70.0, "psnr": 40.0, "ssim": 0.9},
        "noise": {"matched": True},
        "transforms": {t: {"S": 2.0, "S_noise": 1.0, "G": 2.0 + i} for i, t in enumerate(names)},
    }
    s = ev.summarize([rec])
    assert tuple(s.transforms) == names and s.transforms["resize-jpeg@0.6"]["G"] == 3.0


def test_onnx_backend_matches_torch() -> None:
    torch.manual_seed(0)
    enc, dec = taef2_encoder(n=8).eval(), taef2_decoder(n=8).eval()
    with torch.no_grad():
        for p in [*enc.parameters(), *dec.parameters()]:
            p.mul_(0.5)  # keep the random net's activations in a sane range
    paths = ev.export_for_workers(enc, dec)
    x = artwork(40, 48)
    a = ev.LatentModel(enc, dec, threads=1)
    b = ev.LatentModel(None, None, threads=1, onnx_paths=paths)
    za, zb = a.encode(x), b.encode(x)
    assert za.shape == (1, 32, 5, 6)
    np.testing.assert_allclose(za, zb, atol=1e-4)
    np.testing.assert_allclose(a.decode(za), b.decode(zb), atol=1e-4)
    assert b.has_decoder


def test_quick_gain_on_a_random_small_encoder() -> None:
    torch.manual_seed(0)
    enc = taef2_encoder(n=8).eval()
    pattern = (np.indices((256, 256)).sum(0) % 4 < 2).astype(np.float32)[:, :, None] * 2 - 1

    def protect(x: np.ndarray) -> np.ndarray:
        return np.clip(x + 4 / 255 * pattern[: x.shape[0], : x.shape[1]], 0, 1)

    out = ev.quick_gain(protect, [artwork(seed=s) for s in range(2)], enc, threads=1)
    assert out["n"] == 2
    assert 0 < out["ssimulacra2"] < 100
    assert set(out["G"]) == {"jpeg85", "resize-jpeg"}
    assert all(g > 0 and math.isfinite(g) for g in out["G"].values())


def test_reference_side_persists_and_is_reused(tmp_path: Path) -> None:
    x = artwork()
    store = tmp_path / "x.npz"
    calls = {"n": 0}

    class Counting(torch.nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1
            return torch.nn.functional.avg_pool2d(t, 8)

    model = ev.LatentModel(Counting(), torch.nn.Upsample(scale_factor=8), threads=1)
    ev.ImageReference(x, model, store=store).prepare(damage=True)
    assert calls["n"] == len(pt.TRANSFORMS) and store.is_file()
    again = ev.ImageReference(x, model, store=store)
    fresh = ev.ImageReference(x, toy_model())
    for t in pt.TRANSFORMS:
        a, b = again.side(t, None, damage=False), fresh.side(t, None, damage=True)
        np.testing.assert_array_equal(a.z, b.z)
        assert again.side(t, None, damage=True).recon_psnr == pytest.approx(b.recon_psnr)
    assert calls["n"] == len(pt.TRANSFORMS)  # nothing recomputed


def test_visibility_only_scoring_skips_the_encoder() -> None:
    x = artwork()
    xp = pt.apply("jpeg85", x)
    rec = ev.score_image(ev.ImageReference(x, toy_model()), xp, transforms=[])
    assert rec["transforms"] == {}
    assert rec["visibility"]["ssimulacra2"] == pytest.approx(ev.ssimulacra2(x, xp))


def test_damage_can_be_limited_to_some_transforms() -> None:
    x = artwork()
    xp = pt.apply("jpeg85", x)
    ref = ev.ImageReference(x, toy_model(), ["none", "jpeg85"])
    rec = ev.score_image(ref, xp, damage=["jpeg85"])
    assert "dC" in rec["transforms"]["jpeg85"] and "C" not in rec["transforms"]["none"]
    assert "G" in rec["transforms"]["none"]


# --- transparency: the noise yardstick works under the product's constraint ----------------------


def sprite(h: int = 96, w: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """An artwork's colour and an alpha with opaque, half-transparent and empty regions."""
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:, w // 2 :] = 0
    alpha[: h // 4, : w // 4] = 128
    return artwork(h, w, seed=3), alpha


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_colour_and_alpha_composite_exactly_as_the_scored_image(mode: str) -> None:
    colour, alpha = sprite()
    img = Image.fromarray(np.dstack([colour, alpha]), "RGBA")
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("RGB").quantize(64)
        img.info["transparency"] = 0
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    c, a = ev.decode_colour_alpha(buf.getvalue())
    assert a is not None and c.shape == (96, 112, 3)
    np.testing.assert_array_equal(ev.composite(c, a), ev.decode_rgb(buf.getvalue()))


def test_opaque_images_have_no_alpha_and_the_same_yardstick() -> None:
    x = artwork()
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="PNG")
    c, a = ev.decode_colour_alpha(buf.getvalue())
    assert a is None and np.array_equal(c, x)
    u = ev.unit_noise(x.shape)
    opaque = np.full(x.shape[:2], 255, np.uint8)
    np.testing.assert_array_equal(ev.noise_image(x, 0.03, u, opaque), ev.noise_image(x, 0.03, u))


def test_noise_goes_under_alpha_and_never_onto_the_grey_background() -> None:
    colour, alpha = sprite()
    x = ev.composite(colour, alpha)
    target = 70.0
    m = ev.match_noise(colour, target, alpha=alpha)
    assert m.matched and abs(m.score - target) <= 0.5
    u = ev.unit_noise(colour.shape)
    np.testing.assert_array_equal(m.image, ev.noise_image(colour, m.a, u, alpha))
    assert (m.image[alpha == 0] == 128).all()  # the background is never touched
    assert (m.image[alpha == 255] != x[alpha == 255]).mean() > 0.5
    # half the canvas cannot take noise: the visible half needs more to be as visible
    old = ev.match_noise(x, target)
    assert m.a > old.a
    # and the reference uses it: the noise of a sprite's record is the one under alpha
    ref = ev.ImageReference(x, toy_model(), ["jpeg85"], colour=colour, alpha=alpha)
    xp = ev.composite(np.clip(colour.astype(int) + 3, 0, 255).astype(np.uint8), alpha)
    rec = ev.score_image(ref, xp, damage=False)
    assert rec["noise"]["under_alpha"]
    assert abs(rec["noise"]["ssimulacra2"] - ev.ssimulacra2(x, xp)) <= 0.5
    with pytest.raises(ev.EvaluationError, match="composited"):
        ev.ImageReference(colour, toy_model(), colour=colour, alpha=alpha)


# --- the replay gain --------------------------------------------------------------------------


def test_replay_gain_uses_the_noise_of_the_protected_images_visibility() -> None:
    x = artwork()
    yy, xx = np.mgrid[0 : x.shape[0], 0 : x.shape[1]]
    wave = 6 * np.sin(xx / 5.0)[:, :, None] * np.array([1.0, -1.0, 0.5])
    xp = np.clip(x + wave, 0, 255).astype(np.uint8)
    half = np.clip(x + wave / 2, 0, 255).astype(np.uint8)
    ref = ev.ImageReference(x, toy_model(), ["none", "jpeg85"])
    for replay, expected in ((xp, "same"), (x, "zero"), (half, "less")):
        rec = ev.score_image(ref, xp, damage=False, replay=replay)
        assert rec["replay"]["ssimulacra2"] == pytest.approx(ev.ssimulacra2(x, replay))
        for t in ("none", "jpeg85"):
            row = rec["transforms"][t]
            assert row["S_replay"] == pytest.approx(
                ev.latent_shift(toy_model().encode(pt.apply(t, replay)),
                                toy_model().encode(pt.apply(t, x))), rel=1e-4)  # fmt: skip
            assert row["G_replay"] == pytest.approx(row["S_replay"] / row["S_noise"])
            if expected == "same":
                assert row["G_replay"] == pytest.approx(row["G"])
            elif expected == "zero":
                assert row["G_replay"] == 0
            else:
                assert 0 < row["G_replay"] < row["G"]
    summary = ev.summarize([rec])
    assert summary.transforms["jpeg85"]["G_replay"] == rec["transforms"]["jpeg85"]["G_replay"]
