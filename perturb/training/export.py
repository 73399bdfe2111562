"""Export a trained generator to ONNX with the engine's contract (docs/architecture.md).

Inputs `image` float32 N×3×H×W in [0, 1] (dynamic N, H, W), `strength` float32 scalar and `key`
float32 N×C×H/s×W/s (i.i.d. standard normal, drawn fresh by the engine per image and frame); output
`protected` float32 N×3×H×W in [0, 1]. Checks ONNX against PyTorch on val images (max abs diff
≤ a tenth of an 8-bit level) and the size limit (≤ 10 MB) before anything is written to
onnx_models/.
"""

from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from perturb.training.generator import GeneratorConfig, KeyedProtector

OPSET = 17
MAX_BYTES = 10 * 1024 * 1024
# a tenth of one 8-bit level: float32 convolutions summed in another order differ by ~1e-4 at
# strength 2, which changes a written pixel only at a rounding tie
MAX_ABS_DIFF = 0.1 / 255


class ExportError(RuntimeError):
    """The exported model does not meet the contract; the message says which check failed."""


class Contract(nn.Module):
    """(image, strength, key) → protected: `KeyedProtector.forward`, the engine's signature."""

    def __init__(self, model: KeyedProtector) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, strength: torch.Tensor, key: torch.Tensor
                ) -> torch.Tensor:
        return (image + strength * self.model.delta(image, key)).clamp(0, 1)


def load_model(path: Path) -> KeyedProtector:
    """The generator of a train.py checkpoint (model.pt or ckpt.pt)."""
    st = torch.load(path, map_location="cpu", weights_only=False)
    model = KeyedProtector(GeneratorConfig(**st["config"]["generator"]))
    model.load_state_dict(st["model"])
    return model.eval()


def to_onnx_bytes(model: KeyedProtector) -> bytes:
    """Serialise with dynamic N, H, W (TorchScript-based exporter: no onnxscript needed)."""
    t = model.size_multiple
    image = torch.rand(1, 3, 4 * t, 6 * t)  # any multiple of the size multiple: axes are dynamic
    key = model.draw_key(1, *image.shape[-2:])
    dims = {0: "N", 2: "H", 3: "W"}
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            Contract(model).eval(), (image, torch.tensor(1.0), key), buf,
            input_names=["image", "strength", "key"], output_names=["protected"],
            dynamic_axes={"image": dims, "key": {0: "N", 2: "KH", 3: "KW"}, "protected": dims},
            opset_version=OPSET, dynamo=False,
        )
    return buf.getvalue()


def check(model: KeyedProtector, onnx_bytes: bytes, images: list[torch.Tensor],
          strengths: tuple[float, ...] = (0.0, 1.0, 2.0)) -> float:
    """Max abs diff ONNX vs PyTorch over images and strengths; raises if over the limit."""
    import onnxruntime as ort

    if len(onnx_bytes) > MAX_BYTES:
        raise ExportError(f"model is {len(onnx_bytes)} bytes, over the {MAX_BYTES} limit")
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in images:
        x = x[None] if x.dim() == 3 else x
        key = model.draw_key(x.shape[0], *x.shape[-2:], torch.Generator().manual_seed(0))
        feed = {"image": x.numpy().astype(np.float32), "key": key.numpy()}
        for s in strengths:
            with torch.no_grad():
                ref = model(x, torch.tensor(s), key).numpy()
            feed["strength"] = np.array(s, dtype=np.float32)
            out = sess.run(["protected"], feed)[0]
            worst = max(worst, float(np.abs(out - ref).max()))
    if worst > MAX_ABS_DIFF:
        raise ExportError(f"ONNX differs from PyTorch by {worst:.2e} (limit {MAX_ABS_DIFF:.0e})")
    return worst


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    from perturb.training.data import list_images, load_rgb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="path of the .onnx to write")
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--val-images", type=int, default=6)
    a = ap.parse_args()
    torch.set_num_threads(2)
    model = load_model(a.checkpoint)
    data = to_onnx_bytes(model)
    imgs = [load_rgb(p, max_side=512, multiple=model.size_multiple)
            for p in list_images(a.shared, "val")[: a.val_images]]
    worst = check(model, data, imgs)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_bytes(data)
    print(f"wrote {a.out} ({len(data) / 1024:.1f} KiB, sha256 {sha256_bytes(data)}); "
          f"max |ONNX − PyTorch| on {len(imgs)} val images: {worst:.2e}")


if __name__ == "__main__":
    main()
