"""The keyed-model contract: a secret key field drawn per image and frame, never written anywhere,
reproducible only with an explicit seed; the replay attack does not undo it; cards are checked."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from perturb import ModelUnavailable, inspect_marker, load_model, protect
from tests.engine import samples
from tests.support.tiny_model import build_tiny_model, key_block

# Large enough that its decimal and hex forms cannot turn up in a file by chance.
SEED = 2**127 + 98765432123456789


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.int64)


def png(rgb: np.ndarray) -> bytes:
    return samples.encode(Image.fromarray(rgb), "PNG")


# --- a fresh secret per call, per frame -----------------------------------------------------------


def test_two_protections_of_one_image_differ(tiny_model: str) -> None:
    data = png(samples.artwork(96, 64))
    a, b = (pixels(protect(data, model=tiny_model).data) for _ in range(2))
    original = pixels(data)
    assert (a != original).mean() > 0.5 and (b != original).mean() > 0.5
    assert (a != b).mean() > 0.2  # sign flips per 4×4 block and channel: about half differ


def test_same_seed_is_byte_identical_and_other_seeds_are_not(tiny_model: str) -> None:
    data = samples.jpeg_with_exif_and_icc()
    first = protect(data, model=tiny_model, seed=SEED).data
    assert protect(data, model=tiny_model, seed=SEED).data == first
    assert protect(data, model=tiny_model, seed=SEED + 1).data != first


def test_each_frame_gets_a_fresh_key(tiny_model: str) -> None:
    frame = samples.artwork(48, 40)
    second = frame.copy()
    second[0, 0] ^= 1  # not identical, or the APNG writer merges the two frames
    frames = [Image.fromarray(frame), Image.fromarray(second)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:], duration=100)
    out = Image.open(io.BytesIO(protect(buffer.getvalue(), model=tiny_model, seed=1).data))
    got = []
    for i in range(2):
        out.seek(i)
        got.append(np.asarray(out.convert("RGB"), dtype=np.int64))
    assert (got[0] != frame).mean() > 0.5
    assert (got[0] != got[1]).mean() > 0.2  # identical frames, different perturbations


def test_model_perturb_without_a_generator_draws_a_fresh_secret(tiny_model: str) -> None:
    model = load_model(tiny_model)
    px = samples.artwork(40, 32)
    assert model.keyed
    assert not np.array_equal(model.perturb(px, 1.0), model.perturb(px, 1.0))
    same = [model.perturb(px, 1.0, rng=np.random.default_rng(4)) for _ in range(2)]
    assert np.array_equal(*same)


def test_working_resolution_draws_its_key_at_the_working_size(model_dir: Path) -> None:
    path = build_tiny_model(model_dir, model_id="tiny-keyed-workres",
                            large_images={"mode": "working_resolution", "max_side": 64})
    data = png(samples.artwork(300, 200))
    a = protect(data, model=str(path), seed=6)
    assert a.data == protect(data, model=str(path), seed=6).data
    assert a.data != protect(data, model=str(path)).data
    assert 0 < np.abs(pixels(a.data) - pixels(data)).max() <= 5


def test_bad_seeds_are_refused(tiny_model: str) -> None:
    for seed in (-1, 1.5, "7", True):
        with pytest.raises(ValueError, match="seed"):
            protect(samples.grey_png(), model=tiny_model, seed=seed)  # type: ignore[arg-type]


# --- the secret is never written -----------------------------------------------------------------


def secret_forms(seed: int) -> list[bytes]:
    """Ways a seed could leak into a file: decimal, hex, and its 16 raw bytes either way round."""
    raw = seed.to_bytes(16, "big")
    return [str(seed).encode(), f"{seed:x}".encode(), f"{seed:X}".encode(), raw, raw[::-1]]


@pytest.mark.parametrize("name", ["png", "jpeg", "webp", "gif"])
def test_the_secret_is_absent_from_file_marker_and_report(tiny_model: str, name: str) -> None:
    data = {
        "png": samples.rgba_png(),
        "jpeg": samples.jpeg_with_exif_and_icc(),
        "webp": samples.webp_lossy(),
        "gif": samples.gif_3_frames(),
    }[name]
    model = load_model(tiny_model)
    out = protect(data, model=model, seed=SEED)
    width, height = out.report.width, out.report.height
    # the key field the engine drew for the first frame (one tile: the whole padded frame)
    key = np.random.default_rng(SEED).standard_normal(
        model.key.shape(*model.padded(height, width)), dtype=np.float32
    )
    leaks = secret_forms(SEED) + [key[0, 0, 0, :4].tobytes(), key[0, 0, 0, :4].byteswap().tobytes()]
    for leak in leaks:
        assert leak not in out.data
    marker = inspect_marker(out.data)
    assert marker is not None
    marker_text = json.dumps(dataclasses.asdict(marker)).encode()
    report_text = json.dumps(dataclasses.asdict(out.report), default=str).encode()
    for text in (marker_text, report_text):
        for leak in secret_forms(SEED)[:3] + [repr(float(key[0, 0, 0, 0]))[:10].encode()]:
            assert leak not in text
    assert "seed" not in report_text.decode() and "key" not in json.loads(marker_text)


# --- the replay attack (EVALUATION.md, "The attacker who owns the product") ---------------------


def replay(protected: bytes, model: str, runs: int = 4) -> np.ndarray:
    """x_r = quantise(x' − mean_k(protect_k(x') − x')) from the protected file's pixels only (its
    metadata stripped), at the strength its marker states, each run with a fresh secret."""
    marker = inspect_marker(protected)
    assert marker is not None
    xp = pixels(protected)
    stripped = png(xp.astype(np.uint8))  # pixels only: no marker, no metadata
    assert inspect_marker(stripped) is None
    changes = [pixels(protect(stripped, model=model, strength=marker.strength).data) - xp
               for _ in range(runs)]  # fmt: skip
    return np.clip(np.round(xp - np.mean(changes, axis=0)), 0, 255)


def test_replay_does_not_restore_the_original(tiny_model: str, model_dir: Path) -> None:
    x = samples.artwork(128, 96, seed=9)
    data = png(x)
    keyed = protect(data, model=tiny_model).data
    distance = np.linalg.norm(pixels(keyed) - x)
    restored = np.linalg.norm(replay(keyed, tiny_model) - x)
    # the replays' mean change is independent of x′'s secret: subtracting it adds noise
    # (expected distance √1.25 ≈ 1.12 × x′'s), it cannot take the perturbation out
    assert distance > 0 and restored >= 0.9 * distance
    # the same attack undoes a deterministic model (but where its change clipped at 0 or 255):
    # the test can tell the difference
    older = str(build_tiny_model(model_dir, model_id="tiny-replayable", keyed=False))
    plain = protect(data, model=older).data
    assert np.linalg.norm(pixels(plain) - x) > 0
    assert np.linalg.norm(replay(plain, older) - x) < 0.2 * np.linalg.norm(pixels(plain) - x)


# --- the contract: cards and ONNX must agree ------------------------------------------------------


def test_keyed_card_is_read(tiny_model: str) -> None:
    model = load_model(tiny_model)
    assert model.keyed and (model.key.channels, model.key.scale) == (2, 4)
    assert model.key.shape(*model.padded(157, 203)) == (1, 2, 40, 52)


def test_older_unkeyed_models_still_load_and_are_deterministic(model_dir: Path) -> None:
    path = str(build_tiny_model(model_dir, model_id="tiny-unkeyed", keyed=False))
    model = load_model(path)
    assert not model.keyed and "key" not in model.card["contract"]
    data = samples.rgba_png()
    out = protect(data, model=path)
    assert out.data == protect(data, model=path).data
    assert out.report.timings["key"] == 0
    assert (pixels(out.data)[..., :3] != pixels(data)[..., :3]).mean() > 0.3


@pytest.mark.parametrize(
    "keyed,card_key,message",
    [
        (True, None, "does not declare contract.key"),
        (False, key_block(), "does not have"),
        (True, key_block(channels=3), "card declares float32 \\[N,3,"),
        (True, key_block(scale=8), "does not run with the key its card declares"),
        (True, key_block(scale=2), "does not run with the key its card declares"),
        (True, {**key_block(), "channels": 0}, "channels must be an integer"),
        (True, {**key_block(), "channels": "2"}, "channels must be an integer"),
        (True, {**key_block(), "channels": 2.0}, "channels must be an integer"),
        (True, {**key_block(), "scale": 3}, "scale 3 must divide size_multiple 8"),
        (True, {**key_block(), "scale": -4}, "scale must be a positive integer"),
        (True, {**key_block(), "distribution": "uniform"}, "distribution must be"),
        (True, {**key_block(), "input": "noise"}, "input must be"),
        (True, "key", "invalid contract.key"),
    ],
)
def test_mismatched_or_invalid_key_contracts_are_refused(
    tmp_path: Path, keyed: bool, card_key: object, message: str
) -> None:
    path = build_tiny_model(tmp_path, keyed=keyed, card_key=card_key)  # type: ignore[arg-type]
    with pytest.raises(ModelUnavailable, match=message) as info:
        load_model(str(path))
    assert info.value.hint  # every refusal says what to do


def test_a_fresh_load_is_a_new_session(tiny_model: str) -> None:
    cached = load_model(tiny_model)
    fresh = load_model(tiny_model, fresh=True)
    assert fresh is not cached and fresh.session is not cached.session
    assert load_model(tiny_model) is cached


def test_drawing_ahead_yields_the_same_sequence() -> None:
    from perturb.models import KeyGenerator

    plain = np.random.default_rng(SEED)
    expected = [plain.standard_normal(s, dtype=np.float32) for s in ((1, 2, 8, 8), (1, 2, 4, 4))]
    keys = KeyGenerator(SEED)
    keys.draw_ahead((1, 2, 8, 8))
    got = [keys.standard_normal((1, 2, 8, 8)), keys.standard_normal((1, 2, 4, 4))]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)
    # a draw ahead of the wrong shape is dropped, and the stream stays deterministic
    one, two = KeyGenerator(SEED), KeyGenerator(SEED)
    one.draw_ahead((1, 1, 2, 2))
    two.draw_ahead((1, 1, 2, 2))
    shape = (1, 2, 3, 3)
    np.testing.assert_array_equal(one.standard_normal(shape), two.standard_normal(shape))
    assert not np.array_equal(KeyGenerator().standard_normal((1, 2, 8, 8)), expected[0])


@pytest.mark.parametrize("large_images", [
    {"mode": "tile", "tile": 64, "overlap": 16},
    {"mode": "working_resolution", "max_side": 64},
])
def test_the_key_drawn_ahead_has_the_shape_perturb_draws(
    model_dir: Path, large_images: dict
) -> None:
    # the engine draws the first frame's key while the frame decodes, from key_shape: a wrong
    # shape would silently waste that draw
    name = f"tiny-ahead-{large_images['mode']}"
    model = load_model(str(build_tiny_model(model_dir, model_id=name, large_images=large_images)))

    class Recording:
        shapes: list[tuple[int, ...]] = []

        def standard_normal(self, shape: tuple[int, ...], dtype: type) -> np.ndarray:
            self.shapes.append(tuple(shape))
            return np.zeros(shape, dtype)

    rng = Recording()
    model.perturb(samples.artwork(203, 157), 1.0, rng=rng)  # type: ignore[arg-type]
    assert rng.shapes == [model.key_shape(157, 203)]
