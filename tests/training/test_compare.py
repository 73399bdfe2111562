"""compare.py: a checkpoint runs like the engine (padded to its size multiple, cropped back,
8-bit), with a fixed key so that comparisons repeat."""

import numpy as np
import torch
from PIL import Image

from perturb.training.compare import load_images, perturb_fn
from perturb.training.generator import GeneratorConfig, KeyedProtector


def test_perturb_fn_pads_crops_and_scales_with_strength() -> None:
    torch.manual_seed(0)
    model = KeyedProtector(GeneratorConfig(hidden=8)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.6)
    run = perturb_fn(model)
    rgb = np.full((40, 50, 3), 128, np.uint8)  # not a multiple of the size multiple
    weak, strong = run(rgb, 0.2), run(rgb, 1.0)
    assert weak.shape == rgb.shape and weak.dtype == np.uint8
    assert np.array_equal(run(rgb, 0.0), rgb)
    assert np.array_equal(run(rgb, 1.0), strong)  # the same key every call
    assert not np.array_equal(perturb_fn(model, seed=1)(rgb, 1.0), strong)
    d_weak = np.abs(weak.astype(int) - 128).mean()
    assert 0 < d_weak < np.abs(strong.astype(int) - 128).mean()


def test_load_images_every_nth_downscaled_to_multiples_of_8(tmp_path) -> None:
    for i in range(6):
        Image.fromarray(np.full((500, 300, 3), i * 40, np.uint8)).save(tmp_path / f"{i}.png")
    imgs = load_images(tmp_path, every=5, side=384)
    assert len(imgs) == 2 and imgs[1][0, 0, 0] == 200
    assert all(max(x.shape[:2]) <= 384 and x.shape[0] % 8 == 0 == x.shape[1] % 8 for x in imgs)
