"""Tiny, contract-conforming ONNX models built on the fly, so tests never need the real model.

The graph follows the model contract of docs/architecture.md: inputs `image` float32 N×3×H×W in
[0, 1] and `strength` float32 scalar; output `protected` = clip(image + strength · amplitude ·
checkerboard, 0, 1). The checkerboard ((-1)^(x+y), from Cos(π·(x+y)) over the pixel index) is
high-frequency, deterministic, and has period 2, so tiles whose origins sit on multiples of the size
multiple see exactly the same pattern as the whole image: tiled and untiled inference agree.

When `size_multiple` > 1 the graph also *requires* H and W to be multiples of it (a Reshape into
blocks of that size fails otherwise), so a test catches an engine that forgets to pad.
`fail=True` yields a graph that loads but fails at run time (fault injection).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # accepted by every onnxruntime >= 1.14

DEFAULT_LARGE_IMAGES: dict[str, Any] = {"mode": "tile", "tile": 1024, "overlap": 64}
PRESETS = {"low": 0.5, "default": 1.0, "high": 1.6}


def _const(name: str, value: Any, dtype: Any = np.float32) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
    )


def _graph(*, amplitude: float, size_multiple: int, fail: bool) -> onnx.GraphProto:
    nodes: list[onnx.NodeProto] = [
        _const("zero_i", 0, np.int64),
        _const("one_i", 1, np.int64),
        _const("two_i", 2, np.int64),
        _const("three_i", 3, np.int64),
        _const("pi", math.pi),
        _const("amp", amplitude),
        _const("lo", 0.0),
        _const("hi", 1.0),
        helper.make_node("Shape", ["image"], ["shape"]),
        helper.make_node("Gather", ["shape", "two_i"], ["h"], axis=0),
        helper.make_node("Gather", ["shape", "three_i"], ["w"], axis=0),
        helper.make_node("Range", ["zero_i", "h", "one_i"], ["ys_i"]),
        helper.make_node("Range", ["zero_i", "w", "one_i"], ["xs_i"]),
        helper.make_node("Cast", ["ys_i"], ["ys"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["xs_i"], ["xs"], to=TensorProto.FLOAT),
        _const("col_shape", [-1, 1], np.int64),
        helper.make_node("Reshape", ["ys", "col_shape"], ["ys_col"]),
        helper.make_node("Add", ["ys_col", "xs"], ["idx"]),  # [H, W] = y + x
        helper.make_node("Mul", ["idx", "pi"], ["phase"]),
        helper.make_node("Cos", ["phase"], ["pattern"]),  # (-1)^(x+y)
        helper.make_node("Mul", ["pattern", "amp"], ["scaled"]),
        helper.make_node("Mul", ["scaled", "strength"], ["delta"]),
    ]
    source = "image"
    if size_multiple > 1:
        # Reshape W (and, transposed, H) into blocks of size_multiple: fails unless divisible.
        nodes += [
            _const("blocks", [0, 0, 0, -1, size_multiple], np.int64),
            helper.make_node("Reshape", ["image", "blocks"], ["w_blocks"]),
            helper.make_node("Reshape", ["w_blocks", "shape"], ["w_checked"]),
            helper.make_node("Transpose", ["w_checked"], ["t"], perm=[0, 1, 3, 2]),
            helper.make_node("Reshape", ["t", "blocks"], ["h_blocks"]),
            helper.make_node("Shape", ["t"], ["t_shape"]),
            helper.make_node("Reshape", ["h_blocks", "t_shape"], ["h_checked"]),
            helper.make_node("Transpose", ["h_checked"], ["checked"], perm=[0, 1, 3, 2]),
        ]
        source = "checked"
    if fail:
        nodes += [
            _const("impossible", [7, 11, 13], np.int64),
            helper.make_node("Reshape", [source, "impossible"], ["broken"]),
        ]
        source = "broken"
    nodes += [
        helper.make_node("Add", [source, "delta"], ["raw"]),
        helper.make_node("Clip", ["raw", "lo", "hi"], ["protected"]),
    ]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    strength = helper.make_tensor_value_info("strength", TensorProto.FLOAT, [])
    out = helper.make_tensor_value_info(
        "protected", TensorProto.FLOAT, None if fail else ["N", 3, "H", "W"]
    )
    return helper.make_graph(nodes, "sfumato_tiny", [image, strength], [out])


def build_tiny_model(
    directory: Path,
    *,
    model_id: str = "tiny-test",
    size_multiple: int = 8,
    large_images: dict[str, Any] | None = None,
    amplitude: float = 4 / 255,
    fail: bool = False,
    coverage: dict[str, float] | None = None,
) -> Path:
    """Write `<model_id>.onnx` and its model card `<model_id>.json` into `directory`.

    Returns the path of the .onnx. `large_images` defaults to tiles of 1024 with 64 px overlap;
    `coverage` is the card's rule for transparent images (absent: strength is not scaled).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = helper.make_model(
        _graph(amplitude=amplitude, size_multiple=size_multiple, fail=fail),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="sfumato-tests",
    )
    model.ir_version = IR_VERSION
    if not fail:
        onnx.checker.check_model(model)
    onnx_path = directory / f"{model_id}.onnx"
    onnx_path.write_bytes(model.SerializeToString())
    card = {
        "id": model_id,
        "version": "0.0.1",
        "file": onnx_path.name,
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "contract": {
            "inputs": {"image": "float32 [N,3,H,W] sRGB in [0,1]", "strength": "float32 scalar"},
            "outputs": {"protected": "float32 [N,3,H,W] in [0,1]"},
            "size_multiple": size_multiple,
            "large_images": dict(large_images or DEFAULT_LARGE_IMAGES),
        },
        "presets": dict(PRESETS),
        **({"coverage": coverage} if coverage is not None else {}),
        "training": {"note": "test fixture: fixed checkerboard, not trained"},
        "data": {},
        "surrogates": [],
        "metrics": {},
    }
    (directory / f"{model_id}.json").write_text(json.dumps(card, indent=2) + "\n")
    return onnx_path
