"""The shipped model (perturb.models.DEFAULT_MODEL) loads, verifies, and protects the sample set
faithfully. Skipped while no model is shipped; the rest of the suite uses the tiny test model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from perturb import inspect_marker, load_model, models, protect
from tests.engine import samples

pytestmark = pytest.mark.skipif(
    models.DEFAULT_MODEL is None
    or not (models.MODELS_DIR / f"{models.DEFAULT_MODEL}.onnx").exists(),
    reason="no shipped model in onnx_models/",
)


def test_shipped_model_loads_with_a_valid_card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFUMATO_MODEL", raising=False)
    monkeypatch.delenv("SFUMATO_MODELS_DIR", raising=False)
    model = load_model(None)
    assert model.id == models.DEFAULT_MODEL
    assert set(model.presets) >= {"low", "default", "high"}
    assert model.presets["low"] < model.presets["default"] < model.presets["high"]


@pytest.mark.parametrize("name", sorted(samples.sample_set()))
def test_sample_set_with_the_shipped_model(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFUMATO_MODEL", raising=False)
    monkeypatch.delenv("SFUMATO_MODELS_DIR", raising=False)
    data = samples.sample_set()[name]
    out = protect(data)
    before, after = Image.open(io.BytesIO(data)), Image.open(io.BytesIO(out.data))
    mode = "RGBA" if name == "palette.png" else before.mode  # 256 colours cannot hold it
    assert (after.format, after.size, after.mode) == (before.format, before.size, mode)
    for (a, _), (b, _) in zip(samples.frames_of(data), samples.frames_of(out.data), strict=True):
        assert np.array_equal(a[..., 3], b[..., 3])
    assert out.report.psnr > 30  # visibly unchanged
    assert inspect_marker(out.data).model_id == models.DEFAULT_MODEL
