"""bench/resize_sweep.py scores transforms platform_transforms knows, 0.75 as `resize-jpeg`."""

import importlib.util
import sys
from pathlib import Path

import numpy as np

from perturb.training import platform_transforms as pt

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("resize_sweep", ROOT / "bench" / "resize_sweep.py")
resize_sweep = importlib.util.module_from_spec(spec)
sys.modules["resize_sweep"] = resize_sweep
spec.loader.exec_module(resize_sweep)


def test_every_swept_factor_is_a_transform_of_its_own_size() -> None:
    names = resize_sweep.transform_names(resize_sweep.FACTORS)
    assert names[0] == "jpeg85" and "resize-jpeg" in names and len(set(names)) == len(names)
    img = np.full((90, 120, 3), 128, np.uint8)
    for f, name in zip(resize_sweep.FACTORS, names[1:], strict=True):
        out = pt.apply(name, img)
        assert (out.shape[1], out.shape[0]) == pt.resized_size(120, 90, f)
