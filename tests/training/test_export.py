"""The ONNX export contract: names, dtypes, dynamic shapes, the key input, strength 0 = identity,
range [0, 1]."""

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from perturb.training.export import ExportError, check, to_onnx_bytes
from perturb.training.generator import GeneratorConfig, KeyedProtector, macs_per_pixel

CFG = GeneratorConfig(key_channels=3, scale=8, hidden=8)


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "cell-detail"])
def exported(request) -> tuple[KeyedProtector, bytes]:
    torch.manual_seed(0)
    model = KeyedProtector(replace(CFG, cell_detail=request.param)).eval()
    with torch.no_grad():  # make the untrained net non-trivial: every layer non-linear
        for p in model.parameters():
            p.normal_(0, 0.6)
    return model, to_onnx_bytes(model)


def key_for(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    n, _, h, w = shape
    return np.random.default_rng(seed).standard_normal(
        (n, CFG.key_channels, h // CFG.scale, w // CFG.scale), dtype=np.float32)


def run(data: bytes, x: np.ndarray, s: float, key: np.ndarray | None = None) -> np.ndarray:
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    key = key_for(x.shape) if key is None else key
    return sess.run(["protected"], {"image": x, "strength": np.array(s, np.float32),
                                    "key": key})[0]


def test_graph_signature(exported) -> None:
    _, data = exported
    m = onnx.load_from_string(data)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ins = {i.name: i for i in m.graph.input}
    assert list(ins) == ["image", "strength", "key"]
    assert [o.name for o in m.graph.output] == ["protected"]
    image_dims = [d.dim_param or d.dim_value for d in ins["image"].type.tensor_type.shape.dim]
    assert image_dims[1] == 3 and all(isinstance(d, str) for d in image_dims[::2] + image_dims[3:])
    key_dims = [d.dim_param or d.dim_value for d in ins["key"].type.tensor_type.shape.dim]
    assert key_dims[1] == CFG.key_channels and all(isinstance(d, str) for d in key_dims[2:])
    assert len(ins["strength"].type.tensor_type.shape.dim) == 0
    for v in (*m.graph.input, *m.graph.output):
        assert v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert len(data) < 10 * 1024 * 1024


# H and W are multiples of the size multiple (8), to which the engine pads.
@pytest.mark.parametrize(
    "shape", [(1, 3, 8, 8), (2, 3, 64, 96), (1, 3, 160, 32), (1, 3, 96, 224)]
)
def test_dynamic_shapes_match_pytorch(exported, shape) -> None:
    model, data = exported
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    key = key_for(shape, 2)
    out = run(data, x, 1.5, key)
    assert out.shape == shape and out.dtype == np.float32
    with torch.no_grad():
        ref = model(torch.from_numpy(x), torch.tensor(1.5), torch.from_numpy(key)).numpy()
    assert np.abs(out - ref).max() <= 1e-4


def test_strength_zero_is_identity_and_output_in_range(exported) -> None:
    _, data = exported
    x = np.random.default_rng(2).random((1, 3, 64, 64), dtype=np.float32)
    x[..., :8, :8] = 0.0
    x[..., -8:, -8:] = 1.0
    assert np.array_equal(run(data, x, 0.0), x)
    for s in (1.0, 5.0):
        y = run(data, x, s)
        assert y.min() >= 0.0 and y.max() <= 1.0
        assert np.abs(y - x).max() > 0.001
    d1 = np.abs(run(data, x, 1.0) - x).mean()
    d2 = np.abs(run(data, x, 2.0) - x).mean()
    assert d2 > 1.5 * d1  # strength scales the perturbation


def test_the_key_decides_the_perturbation(exported) -> None:
    _, data = exported
    x = np.full((1, 3, 64, 64), 0.5, np.float32)
    k = key_for(x.shape, 3)
    a, b, c = run(data, x, 1.0, k), run(data, x, 1.0, key_for(x.shape, 4)), run(data, x, 1.0, -k)
    assert np.abs(a - b).mean() > 0.2 * np.abs(a - x).mean()
    np.testing.assert_allclose(c - x, -(a - x), atol=1e-5)  # odd in the key


def test_check_rejects_a_mismatching_model(exported) -> None:
    model, data = exported
    other = KeyedProtector(model.cfg).eval()
    with torch.no_grad():
        for p, q in zip(other.parameters(), model.parameters(), strict=True):
            p.copy_(-q)
    with pytest.raises(ExportError, match="differs"):
        check(other, data, [torch.rand(3, 64, 64)])


def test_compute_budget() -> None:
    """Convolutions at 1/8 resolution: a few hundred multiply-adds per pixel at most."""
    assert macs_per_pixel(GeneratorConfig()) < 500
