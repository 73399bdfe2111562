"""Tiny, contract-conforming ONNX models built on the fly, so tests never need the real model.

The graph follows the model contract of docs/architecture.md: inputs `image` float32 N×3×H×W in
[0, 1], `strength` float32 scalar and (keyed, the default) `key` float32 N×C×H/s×W/s; output
`protected` = clip(image + strength · amplitude · checkerboard · sign(conv1×1(upsample(key)))).
The checkerboard ((-1)^(x+y), from Cos(π·(x+y)) over the pixel index) has period 2; the key's sign
flips it per s×s block, so every protection with a fresh key differs, while the
amplitude stays exactly `amplitude` (tests count levels). Everything is per pixel, so tiles whose
origins sit on multiples of the size multiple, given their slice of one key field, see exactly
what the whole image sees: tiled and untiled inference agree. `keyed=False` gives the older,
deterministic model (no key input), which must keep working.

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
KEY_CHANNELS = 2
KEY_SCALE = 4
KEY_DESCRIPTION = "float32 [N,C,H/s,W/s] i.i.d. standard normal, fresh per image and frame"


def key_block(channels: int = KEY_CHANNELS, scale: int = KEY_SCALE) -> dict[str, Any]:
    """The card's `contract.key` for a key of `channels` at 1/`scale` resolution."""
    return {"input": "key", "channels": channels, "scale": scale,
            "distribution": "standard_normal"}  # fmt: skip


def _const(name: str, value: Any, dtype: Any = np.float32) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
    )


def _key_sign(channels: int, scale: int) -> list[onnx.NodeProto]:
    """`key_sign` [N,1,H,W] = sign(1×1 conv mixing the key's channels, nearest-upsampled by s)."""
    rng = np.random.default_rng(7)
    # one sign for all three colour channels: the luminance moves by the full amplitude, so a
    # re-encoded JPEG keeps the change (per-channel signs would cancel in luma and vanish)
    weights = rng.uniform(0.5, 1.5, (1, channels, 1, 1)) * rng.choice([-1, 1], (1, channels, 1, 1))
    return [
        _const("key_scales", [1.0, 1.0, float(scale), float(scale)]),
        _const("key_weights", weights),
        helper.make_node(
            "Resize", ["key", "", "key_scales"], ["key_up"], mode="nearest",
            coordinate_transformation_mode="asymmetric", nearest_mode="floor",
        ),
        helper.make_node("Conv", ["key_up", "key_weights"], ["key_mixed"]),
        helper.make_node("Sign", ["key_mixed"], ["key_sign"]),
    ]


def _graph(
    *, amplitude: float, size_multiple: int, fail: bool, key: tuple[int, int] | None
) -> onnx.GraphProto:
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
        helper.make_node("Mul", ["scaled", "strength"], ["unkeyed_delta"]),
    ]
    if key is None:
        nodes.append(helper.make_node("Identity", ["unkeyed_delta"], ["delta"]))
    else:
        nodes += _key_sign(*key)
        nodes.append(helper.make_node("Mul", ["unkeyed_delta", "key_sign"], ["delta"]))
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
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"]),
        helper.make_tensor_value_info("strength", TensorProto.FLOAT, []),
    ]
    if key is not None:
        inputs.append(
            helper.make_tensor_value_info("key", TensorProto.FLOAT, ["N", key[0], "Hk", "Wk"])
        )
    out = helper.make_tensor_value_info(
        "protected", TensorProto.FLOAT, None if fail else ["N", 3, "H", "W"]
    )
    return helper.make_graph(nodes, "sfumato_tiny", inputs, [out])


def build_tiny_model(
    directory: Path,
    *,
    model_id: str = "tiny-test",
    size_multiple: int = 8,
    large_images: dict[str, Any] | None = None,
    amplitude: float = 4 / 255,
    fail: bool = False,
    coverage: dict[str, float] | None = None,
    keyed: bool | None = None,
    key_channels: int = KEY_CHANNELS,
    key_scale: int = KEY_SCALE,
    card_key: dict[str, Any] | None | str = "matching",
) -> Path:
    """Write `<model_id>.onnx` and its model card `<model_id>.json` into `directory`.

    Returns the path of the .onnx. `large_images` defaults to tiles of 1024 with 64 px overlap;
    `coverage` is the card's rule for transparent images (absent: strength is not scaled).
    `keyed` (default: yes, unless `fail`) adds the `key` input of `key_channels` at
    1/`key_scale` resolution; `card_key` is the card's `contract.key`: "matching" declares what
    the ONNX takes, None declares nothing, a dict is written as given (contract tests).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    keyed = not fail if keyed is None else keyed
    key = (key_channels, key_scale) if keyed else None
    model = helper.make_model(
        _graph(amplitude=amplitude, size_multiple=size_multiple, fail=fail, key=key),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="sfumato-tests",
    )
    model.ir_version = IR_VERSION
    if not fail:
        onnx.checker.check_model(model)
    onnx_path = directory / f"{model_id}.onnx"
    onnx_path.write_bytes(model.SerializeToString())
    if card_key == "matching":
        card_key = key_block(key_channels, key_scale) if keyed else None
    inputs = {"image": "float32 [N,3,H,W] sRGB in [0,1]", "strength": "float32 scalar"}
    if card_key is not None:
        inputs["key"] = KEY_DESCRIPTION
    card = {
        "id": model_id,
        "version": "0.0.1",
        "file": onnx_path.name,
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "contract": {
            "inputs": inputs,
            "outputs": {"protected": "float32 [N,3,H,W] in [0,1]"},
            **({"key": card_key} if card_key is not None else {}),
            "size_multiple": size_multiple,
            "large_images": dict(large_images or DEFAULT_LARGE_IMAGES),
        },
        "presets": dict(PRESETS),
        **({"coverage": coverage} if coverage is not None else {}),
        "training": {"note": "test fixture: checkerboard signed by the key, not trained"},
        "data": {},
        "surrogates": [],
        "metrics": {},
    }
    (directory / f"{model_id}.json").write_text(json.dumps(card, indent=2) + "\n")
    return onnx_path
