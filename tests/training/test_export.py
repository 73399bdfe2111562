"""The ONNX export contract: names, dtypes, dynamic shapes, strength 0 = identity, range [0, 1]."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from perturb.training.export import ExportError, check, to_onnx_bytes
from perturb.training.generator import GeneratorConfig, PatternProtector, macs_per_pixel


@pytest.fixture(scope="module")
def exported() -> tuple[PatternProtector, bytes]:
    torch.manual_seed(0)
    model = PatternProtector(GeneratorConfig(patterns=4, hidden=8)).eval()
    with torch.no_grad():  # make the untrained net non-trivial: random selector, amplitude ~1
        for p in model.selector.parameters():
            p.normal_(0, 0.5)
    return model, to_onnx_bytes(model)


def run(data: bytes, x: np.ndarray, s: float) -> np.ndarray:
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(["protected"], {"image": x, "strength": np.array(s, np.float32)})[0]


def test_graph_signature(exported) -> None:
    _, data = exported
    m = onnx.load_from_string(data)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ins = {i.name: i for i in m.graph.input}
    assert list(ins) == ["image", "strength"]
    assert [o.name for o in m.graph.output] == ["protected"]
    image_dims = [d.dim_param or d.dim_value for d in ins["image"].type.tensor_type.shape.dim]
    assert image_dims[1] == 3 and all(isinstance(d, str) for d in image_dims[::2] + image_dims[3:])
    assert len(ins["strength"].type.tensor_type.shape.dim) == 0
    for v in (*m.graph.input, *m.graph.output):
        assert v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert len(data) < 10 * 1024 * 1024


# H and W are multiples of the tile (32), the card's size_multiple: the engine pads to it.
@pytest.mark.parametrize(
    "shape", [(1, 3, 32, 32), (2, 3, 64, 96), (1, 3, 160, 32), (1, 3, 96, 224)]
)
def test_dynamic_shapes_match_pytorch(exported, shape) -> None:
    model, data = exported
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    out = run(data, x, 1.5)
    assert out.shape == shape and out.dtype == np.float32
    with torch.no_grad():
        ref = model(torch.from_numpy(x), torch.tensor(1.5)).numpy()
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


def test_check_rejects_a_mismatching_model(exported) -> None:
    model, data = exported
    other = PatternProtector(GeneratorConfig(patterns=4, hidden=8)).eval()
    with torch.no_grad():
        other.patterns.mul_(-1)
    with pytest.raises(ExportError, match="differs"):
        check(other, data, [torch.rand(3, 64, 64)])


def test_compute_budget() -> None:
    assert macs_per_pixel(GeneratorConfig()) < 1000


@pytest.mark.parametrize("mask_floor", [1.0, 0.4])
def test_single_pattern_exports_without_the_selector(mask_floor) -> None:
    """One pattern at full amplitude skips the selector net (and, with floor 1, the mask): the
    graph is a broadcast add, and it still matches PyTorch, on a tile of 64 as well."""
    torch.manual_seed(3)
    cfg = GeneratorConfig(patterns=1, amplitude=False, mask_floor=mask_floor, tile=64)
    model = PatternProtector(cfg).eval()
    data = to_onnx_bytes(model)
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert "Conv" not in ops and "Softmax" not in ops
    assert ("AveragePool" in ops) == (mask_floor < 1)
    x = np.random.default_rng(4).random((2, 3, 128, 192), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x), torch.tensor(0.7)).numpy()
    assert np.abs(run(data, x, 0.7) - ref).max() <= 1e-4
    # context-free without the mask: every tile-aligned block gets the same perturbation
    if mask_floor == 1.0:
        flat = np.full((1, 3, 128, 128), 0.5, np.float32)
        d = run(data, flat, 1.0) - flat
        assert np.allclose(d[..., :64, :64], d[..., 64:, 64:], atol=1e-6)
        assert np.abs(d).max() > 0.01


def test_single_pattern_costs_almost_nothing() -> None:
    assert macs_per_pixel(GeneratorConfig(patterns=1, amplitude=False, mask_floor=1.0)) < 20
