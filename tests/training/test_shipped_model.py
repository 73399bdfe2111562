"""The shipped model: its card is complete and honest, and the engine protects with it."""

import hashlib
import io
import json

import numpy as np
import onnx
import pytest
from PIL import Image

import perturb
from perturb.models import DEFAULT_MODEL, MODELS_DIR
from perturb.training.export import MAX_ABS_DIFF


@pytest.fixture(scope="module")
def card() -> dict:
    assert DEFAULT_MODEL, "perturb.models.DEFAULT_MODEL is not set"
    return json.loads((MODELS_DIR / f"{DEFAULT_MODEL}.json").read_text())


def test_card_fields_and_hash(card: dict) -> None:
    assert card["id"] == DEFAULT_MODEL
    assert card["file"] == f"{DEFAULT_MODEL}.onnx"
    data = (MODELS_DIR / card["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == card["sha256"]
    assert len(data) <= 10 * 1024 * 1024
    c = card["contract"]
    assert set(c["inputs"]) == {"image", "strength", "key"} and set(c["outputs"]) == {"protected"}
    key = c["key"]
    assert key["input"] == "key" and key["distribution"] == "standard_normal"
    assert c["size_multiple"] % key["scale"] == 0
    # issue 11: the card says how much secret reaches each 64 × 64 block, and it is a lot
    assert card["secret"]["values_per_64px_block"] == (64 // key["scale"]) ** 2 * key["channels"]
    assert card["secret"]["values_per_64px_block"] >= 256
    assert c["size_multiple"] >= 8 and c["size_multiple"] % 8 == 0
    assert c["large_images"]["mode"] == "tile"
    assert c["large_images"]["tile"] % c["size_multiple"] == 0
    p = card["presets"]
    assert 0 < p["low"] < p["default"] < p["high"]
    assert card["training"]["config"]["generator"]["scale"] == key["scale"]
    assert card["training"]["config"]["generator"]["key_channels"] == key["channels"]
    assert card["data"]["train_images"] > 0 and card["data"]["val_images"] > 0
    for s in card["surrogates"]:
        assert s["files"] and all(len(h) == 64 for h in s["files"].values())
    m = card["metrics"]
    assert m["split"] == "val"
    assert m["onnx_max_abs_diff_vs_pytorch"] <= MAX_ABS_DIFF
    vis = m["ssimulacra2_at_presets"]
    assert vis["low"]["median"] > vis["default"]["median"] > vis["high"]["median"]


def test_onnx_opset_and_names(card: dict) -> None:
    m = onnx.load(MODELS_DIR / card["file"])
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in m.graph.input] == ["image", "strength", "key"]
    assert [o.name for o in m.graph.output] == ["protected"]


def painting(w: int = 320, h: int = 256, seed: int = 3) -> Image.Image:
    """A synthetic artwork: smooth colour fields, soft shapes, and brush-like texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    img = np.stack([0.5 + 0.3 * np.sin(3 * xx + 1), 0.4 + 0.3 * yy, 0.6 - 0.3 * xx], -1)
    for _ in range(12):
        cy, cx, r = rng.random(), rng.random(), 0.05 + 0.15 * rng.random()
        blob = np.exp(-(((yy - cy * h / max(w, h)) ** 2 + (xx - cx) ** 2) / r**2))
        img += blob[..., None] * (rng.random(3) - 0.5) * 0.6
    strokes = np.sin(60 * xx + 20 * np.sin(9 * yy)) * np.cos(45 * yy)
    img += 0.08 * strokes[..., None] + 0.02 * rng.standard_normal((h, w, 3))
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def test_engine_protects_within_the_card_visibility_range(card: dict) -> None:
    from ssimulacra2 import compute_ssimulacra2

    src = painting()
    buf = io.BytesIO()
    src.save(buf, "PNG")
    result = perturb.protect(buf.getvalue(), strength="default")
    assert result.format == "PNG" and result.report.model_id == card["id"]
    out = Image.open(io.BytesIO(result.data)).convert("RGB")
    assert out.size == src.size
    diff = np.abs(np.asarray(out, np.int16) - np.asarray(src, np.int16))
    assert diff.max() > 0
    buf.seek(0)
    score = compute_ssimulacra2(buf, io.BytesIO(result.data))
    # a synthetic painting is not a val artwork: it must land inside the range the card reports
    # across its presets (from the most visible image at `high` to the least visible at `low`),
    # and at `default` be clearly perturbed but not destroyed
    vis = card["metrics"]["ssimulacra2_at_presets"]
    assert vis["high"]["min"] - 5 <= score <= vis["low"]["max"] + 5, (score, vis)
