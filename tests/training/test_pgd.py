"""The PGD baseline respects its L∞ budget, stays on the 8-bit grid, and raises the latent shift."""

import numpy as np
import pytest
import torch

from perturb.training.pgd import PGDError, latent_shift, pgd_encoder_attack, step_size
from perturb.training.surrogates import taef2_encoder


def small_encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return taef2_encoder(n=8).eval()


def image8(h: int = 32, w: int = 40, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    arr = rng.integers(30, 225, (1, 3, h, w)).astype(np.float32) / 255
    return torch.from_numpy(arr)


@pytest.mark.parametrize("budget", [2, 8])
def test_budget_grid_and_range(budget: int) -> None:
    x = image8()
    res = pgd_encoder_attack(small_encoder(), x, budget / 255, steps=8)
    d = (res.x_adv - x).abs().max().item() * 255
    assert d <= budget + 1e-4
    assert d > budget - 1  # the attack uses its budget
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    q = res.x_adv * 255
    assert torch.allclose(q, q.round(), atol=1e-4)  # 8-bit, like a file
    assert res.steps == 8 and res.seconds > 0


def test_budget_holds_near_the_clip_edges() -> None:
    x = torch.zeros(1, 3, 16, 16)
    x[..., 8:] = 1.0
    res = pgd_encoder_attack(small_encoder(), x, 4 / 255, steps=3)
    assert (res.x_adv - x).abs().max().item() <= 4 / 255 + 1e-6
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_float_input_off_the_grid_still_respects_the_budget() -> None:
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(3))
    res = pgd_encoder_attack(small_encoder(), x, 3 / 255, steps=3)
    assert (res.x_adv - x).abs().max().item() <= 3 / 255 + 1e-6


def test_attack_raises_the_latent_shift_beyond_random_noise() -> None:
    enc, x, eps = small_encoder(), image8(), 4 / 255
    with torch.no_grad():
        z = enc(x)
        gen = torch.Generator().manual_seed(5)
        signs = torch.randint(0, 2, x.shape, generator=gen).float() * 2 - 1
        noise_shift = latent_shift(enc((x + eps * signs).clamp(0, 1)), z).item()
    short = pgd_encoder_attack(enc, x, eps, steps=1)
    res = pgd_encoder_attack(enc, x, eps, steps=20)
    assert res.shift > 2 * noise_shift
    assert res.shift >= short.shift
    with torch.no_grad():  # the reported shift is the returned image's
        assert res.shift == pytest.approx(latent_shift(enc(res.x_adv), z).item(), rel=1e-4)


def test_latent_shift_formula() -> None:
    z_ref = torch.tensor([[[[3.0, 4.0]]]])
    z = torch.tensor([[[[3.0, 1.0]]]])
    assert latent_shift(z, z_ref).item() == pytest.approx(9 / 25)


def test_step_size_decays_from_a_quarter_budget() -> None:
    eps = 8 / 255
    sizes = [step_size(t, 100, eps) for t in range(100)]
    assert sizes[0] == pytest.approx(eps / 4)
    assert sizes[-1] == pytest.approx(eps / 100)
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False))


@pytest.mark.parametrize(
    ("shape", "budget", "steps", "match"),
    [
        ((3, 16, 16), 4 / 255, 5, "1×3×H×W"),
        ((1, 3, 15, 16), 4 / 255, 5, "multiples of 8"),
        ((1, 3, 16, 16), 0.0, 5, "budget"),
        ((1, 3, 16, 16), 4 / 255, 0, "steps"),
    ],
)
def test_bad_arguments_raise_typed_errors(shape, budget, steps, match) -> None:
    with pytest.raises(PGDError, match=match):
        pgd_encoder_attack(small_encoder(), torch.rand(*shape), budget, steps=steps)


def test_a_mask_confines_the_attack_to_visible_pixels() -> None:
    x = image8(32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :, :16] = 1.0  # left half opaque
    mask[..., :, 16:24] = 0.5  # a half-transparent band
    res = pgd_encoder_attack(small_encoder(), x, 8 / 255, steps=4, mask=mask)
    d = (res.x_adv - x).abs() * 255
    assert d[..., 24:].max() == 0  # transparent: unchanged
    assert d[..., 16:24].max() <= 4 + 1e-4  # half alpha: half the budget, rounded
    assert d[..., :16].max() > 7  # opaque: the whole budget is used
    with pytest.raises(PGDError, match="mask"):
        pgd_encoder_attack(small_encoder(), x, 8 / 255, steps=1, mask=torch.ones(1, 3, 32, 32))
