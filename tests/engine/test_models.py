"""Model loading (card, sha256, contract), resolution, strength presets, threads, tiling."""

from __future__ import annotations

import io
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from perturb import ModelUnavailable, load_model, models, protect
from tests.engine import samples
from tests.support.tiny_model import build_tiny_model


def copy_model(src: str, directory: Path, model_id: str = "tiny-test") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    onnx = directory / f"{model_id}.onnx"
    shutil.copy(src, onnx)
    shutil.copy(Path(src).with_suffix(".json"), onnx.with_suffix(".json"))
    return onnx


def test_one_session_per_model_per_process(tiny_model: str) -> None:
    assert load_model(tiny_model) is load_model(tiny_model)
    assert load_model(load_model(tiny_model)) is load_model(tiny_model)


def test_card_fields_are_read(tiny_model: str) -> None:
    model = load_model(tiny_model)
    assert model.id == "tiny-test"
    assert model.size_multiple == 8
    assert model.large_images.mode == "tile"
    assert model.resolve_strength("low") == 0.5
    assert model.resolve_strength("HIGH") == 1.6
    assert model.resolve_strength(0.25) == 0.25
    assert model.resolve_strength("2") == 2.0


def test_missing_model_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="nope.onnx"):
        load_model(str(tmp_path / "nope.onnx"))


def test_missing_card(tiny_model: str, tmp_path: Path) -> None:
    onnx = copy_model(tiny_model, tmp_path)
    onnx.with_suffix(".json").unlink()
    with pytest.raises(ModelUnavailable, match="card"):
        load_model(str(onnx))


def test_unreadable_card(tiny_model: str, tmp_path: Path) -> None:
    onnx = copy_model(tiny_model, tmp_path)
    onnx.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelUnavailable, match="unreadable"):
        load_model(str(onnx))


def test_sha256_mismatch_is_reported_with_the_file(tiny_model: str, tmp_path: Path) -> None:
    onnx = copy_model(tiny_model, tmp_path)
    onnx.write_bytes(onnx.read_bytes() + b"tampered")
    with pytest.raises(ModelUnavailable, match="sha256") as info:
        load_model(str(onnx))
    assert str(onnx.name) in str(info.value)


def test_corrupt_onnx_with_matching_card(tmp_path: Path) -> None:
    onnx = build_tiny_model(tmp_path)
    onnx.write_bytes(b"this is not a protobuf")
    card = json.loads(onnx.with_suffix(".json").read_text())
    import hashlib

    card["sha256"] = hashlib.sha256(onnx.read_bytes()).hexdigest()
    onnx.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelUnavailable, match="onnxruntime"):
        load_model(str(onnx))


def test_runtime_failure_is_typed(failing_model: str) -> None:
    with pytest.raises(ModelUnavailable, match="failed while running"):
        protect(samples.grey_png(), model=failing_model)


def test_no_model_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFUMATO_MODEL", raising=False)
    monkeypatch.setattr(models, "DEFAULT_MODEL", None)
    with pytest.raises(ModelUnavailable, match="no protection model"):
        load_model(None)


def test_resolution_by_id_env_and_default(
    tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_model(tiny_model, tmp_path / "dir", "my-model")
    monkeypatch.setenv("SFUMATO_MODELS_DIR", str(tmp_path / "dir"))
    monkeypatch.delenv("SFUMATO_MODEL", raising=False)
    assert load_model("my-model").path == (tmp_path / "dir" / "my-model.onnx").resolve()
    monkeypatch.setattr(models, "DEFAULT_MODEL", "my-model")
    assert load_model(None).path.name == "my-model.onnx"
    monkeypatch.setenv("SFUMATO_MODEL", tiny_model)
    assert load_model(None).path == Path(tiny_model).resolve()
    with pytest.raises(ModelUnavailable, match="available ids: my-model"):
        load_model("unknown-id")


def test_inference_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFUMATO_THREADS", "3")
    assert models.inference_threads() == 3
    monkeypatch.setenv("SFUMATO_THREADS", "many")
    with pytest.raises(ModelUnavailable):
        models.inference_threads()
    monkeypatch.delenv("SFUMATO_THREADS")
    assert 1 <= models.inference_threads() <= 8


def test_concurrent_calls_share_the_session_and_agree(tiny_model: str) -> None:
    data = samples.rgba_png()
    expected = protect(data, model=tiny_model, seed=5).data
    barrier = threading.Barrier(4)

    def run(_: int) -> bytes:
        barrier.wait()
        return protect(data, model=tiny_model, seed=5).data

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(run, range(4))) == {expected}


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16)


def test_tiled_inference_matches_whole_image(tiny_model: str, small_tile_model: str) -> None:
    # the tiny model is per pixel (period-2 pattern, key signs per 4×4 block) and tile origins
    # sit on multiples of 8, each tile getting its slice of one key field: blended tiles must
    # reproduce the whole-image result; seams, misplaced tiles or key slices would show here
    data = samples.encode(Image.fromarray(samples.artwork(203, 157)), "PNG")
    whole = pixels(protect(data, model=tiny_model, seed=3).data)
    tiled = pixels(protect(data, model=small_tile_model, seed=3).data)
    assert np.abs(whole - tiled).max() <= 1
    assert (whole != pixels(data)).mean() > 0.5


TILINGS = [(64, 16), (64, 0), (48, 24), (32, 8), (1024, 64)]


@pytest.mark.parametrize("tile,overlap", TILINGS)
@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
@pytest.mark.parametrize("kind", ["rgb", "grey", "rgb16"])
def test_every_tiling_agrees_with_the_whole_image(
    model_dir: Path, tile: int, overlap: int, keyed: bool, kind: str
) -> None:
    whole = load_model(build_tiny_model(model_dir, model_id=f"whole-{keyed}", keyed=keyed,
                                        large_images={"mode": "tile", "tile": 4096, "overlap": 0}))
    tiled = load_model(build_tiny_model(model_dir, model_id=f"tiles-{tile}-{overlap}-{keyed}",
                                        keyed=keyed, large_images={"mode": "tile", "tile": tile,
                                                                   "overlap": overlap}))
    px = samples.artwork(203, 157, seed=4, channels=1 if kind == "grey" else 3)
    if kind == "rgb16":
        px = px.astype(np.uint16) * 257 + 100
    a = whole.perturb(px, 1.0, rng=np.random.default_rng(8))
    b = tiled.perturb(px, 1.0, rng=np.random.default_rng(8))
    assert a.dtype == b.dtype == px.dtype and a.shape == px.shape
    assert np.abs(a.astype(np.int64) - b).max() <= 1
    assert (a != px).mean() > 0.5


def test_tile_spans_cover_the_axis_with_ramps_summing_to_one() -> None:
    for n in (1, 7, 64, 65, 200, 1000):
        spans = models._spans(n, 64, 48)
        total = np.zeros(n, dtype=np.float64)
        for i, (a, b) in enumerate(spans):
            assert a % 8 == 0
            total[a:b] += models._ramp(spans, i)
        np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_working_resolution_mode(model_dir: Path) -> None:
    path = build_tiny_model(model_dir, model_id="tiny-workres",
                            large_images={"mode": "working_resolution", "max_side": 64})
    data = samples.encode(Image.fromarray(samples.artwork(300, 200)), "PNG")
    out = protect(data, model=str(path))
    diff = np.abs(pixels(out.data) - pixels(data))
    assert out.report.width == 300 and diff.max() <= 5 and diff.mean() > 0.1


def test_strength_zero_changes_no_pixel(tiny_model: str) -> None:
    data = samples.rgba_png()
    out = protect(data, model=tiny_model, strength=0)
    assert np.array_equal(pixels(out.data), pixels(data))
    assert out.report.psnr == float("inf")


def test_strength_scales_the_perturbation(tiny_model: str) -> None:
    data = samples.grey_png()
    low = protect(data, model=tiny_model, strength="low").report.psnr
    high = protect(data, model=tiny_model, strength="high").report.psnr
    assert low > high


@settings(max_examples=200, deadline=None)
@given(
    exponent=st.floats(0, 2), max_factor=st.floats(1, 10),
    a=st.floats(0, 1), b=st.floats(0, 1),
)
def test_coverage_factor_is_bounded_and_falls_as_more_is_visible(
    exponent: float, max_factor: float, a: float, b: float
) -> None:
    rule = models.Coverage(exponent, max_factor)
    lo, hi = sorted((a, b))
    assert 1.0 <= rule.factor(hi) <= rule.factor(lo) or lo == 0.0
    assert rule.factor(lo) <= max_factor
    assert rule.factor(1.0) == 1.0 and rule.factor(0.0) == 1.0  # opaque; nothing visible


def _half_transparent(opaque: bool) -> bytes:
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = 128
    rgba[..., 3] = 255
    if not opaque:
        rgba[:, 32:, 3] = 0  # right half transparent: 50 % coverage
    return samples.encode(Image.fromarray(rgba, "RGBA"), "PNG")


def test_transparent_images_carry_the_budget_on_their_visible_part(model_dir: Path) -> None:
    path = build_tiny_model(model_dir, model_id="tiny-coverage",
                            coverage={"exponent": 1.0, "max_factor": 1.5})
    deltas = {}
    for opaque in (True, False):
        data = _half_transparent(opaque)
        out = protect(data, model=str(path), strength=1.0)
        diff = np.abs(pixels(out.data)[:, :32, :3].astype(int) - 128)
        deltas[opaque] = diff.max()
        alpha_same = np.array_equal(pixels(out.data)[..., 3], pixels(data)[..., 3])
        assert alpha_same
    # checkerboard of 4/255 at strength 1 → 4 levels; half visible → ×min(1.5, 0.5⁻¹) = 6
    assert (deltas[True], deltas[False]) == (4, 6)
    note = protect(_half_transparent(False), model=str(path)).report.notes
    assert any("50% of the canvas is transparent" in n and "×1.50" in n for n in note)


def test_cards_without_a_coverage_rule_do_not_scale(tiny_model: str) -> None:
    out = protect(_half_transparent(False), model=tiny_model, strength=1.0)
    assert np.abs(pixels(out.data)[:, :32, :3].astype(int) - 128).max() == 4
    assert not any("transparent" in n for n in out.report.notes)
    # PSNR is of the change as seen: the transparent half's changed colour does not count
    opaque = protect(_half_transparent(True), model=tiny_model, strength=1.0)
    assert out.report.psnr == pytest.approx(opaque.report.psnr + 10 * np.log10(2), abs=1e-6)


def test_an_invalid_coverage_rule_is_refused(model_dir: Path) -> None:
    path = build_tiny_model(model_dir, model_id="tiny-bad-coverage",
                            coverage={"exponent": -1.0, "max_factor": 2.0})
    with pytest.raises(ModelUnavailable, match="coverage"):
        load_model(str(path))


class _LocalPatternSession:
    """A stand-in onnxruntime session whose output depends on tile-local coordinates, so tiles
    disagree in their overlaps and only correct blending weights give the expected image."""

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        image = feeds["image"]
        _, _, h, w = image.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        wave = 0.05 * np.sin(yy / 3.0) * np.cos(xx / 5.0)
        return [np.clip(image + feeds["strength"] * wave, 0, 1).astype(np.float32)]


def _expected_blend(px: np.ndarray, tile: int, overlap: int, m: int) -> np.ndarray:
    """The blend written out naively: every tile's output weighted by its ramps, summed."""
    h, w, _ = px.shape
    tile = max(m, tile - tile % m)
    overlap = min(overlap, tile // 2)
    step = max(m, (tile - overlap) // m * m)
    if 2 * step < tile:
        step = -(-tile // (2 * m)) * m
    ys, xs = models._spans(h, tile, step), models._spans(w, tile, step)
    x = px.astype(np.float32).transpose(2, 0, 1) / 255
    total = np.zeros_like(x, dtype=np.float64)
    for i, (y0, y1) in enumerate(ys):
        for j, (x0, x1) in enumerate(xs):
            th, tw = y1 - y0, x1 - x0
            ph, pw = -(-th // m) * m, -(-tw // m) * m
            padded = np.zeros((1, 3, ph, pw), np.float32)
            padded[0, :, :th, :tw] = x[:, y0:y1, x0:x1]
            feeds = {"image": padded, "strength": np.float32(1.0)}
            out = _LocalPatternSession().run(["protected"], feeds)[0][0, :, :th, :tw]
            weight = models._ramp(ys, i)[:, None] * models._ramp(xs, j)[None, :]
            total[:, y0:y1, x0:x1] += weight * out
    return np.clip(np.round(total * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 150), w=st.integers(1, 150), tile=st.sampled_from([16, 24, 32, 64]),
    overlap=st.sampled_from([0, 4, 8, 16, 40]),
)
def test_blending_writes_exactly_the_weighted_sum_of_tiles(
    h: int, w: int, tile: int, overlap: int
) -> None:
    model = models.Model(
        id="local", version="0", path=Path("local.onnx"), card={}, size_multiple=8,
        large_images=models.LargeImages("tile", tile, overlap), presets={},
        session=_LocalPatternSession(),
    )
    px = samples.artwork(w, h, seed=h * w)
    got = model.perturb(px, 1.0).astype(np.int64)
    assert np.abs(got - _expected_blend(px, tile, overlap, 8)).max() <= 1
