"""The keyed generator: odd in its key (replays cancel nothing), keyed, shaped by the image."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perturb.training.generator import GeneratorConfig, KeyedProtector, widen_into


def trained_looking(cfg: GeneratorConfig, seed: int = 0) -> KeyedProtector:
    """An untrained net with weights large enough that every layer is non-linear."""
    torch.manual_seed(seed)
    model = KeyedProtector(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.6)
    return model


@settings(max_examples=20, deadline=None)
@given(scale=st.sampled_from([2, 4, 8]), channels=st.integers(1, 4), cells=st.integers(1, 4),
       seed=st.integers(0, 1000), detail=st.booleans())
def test_the_perturbation_is_odd_in_the_key(scale: int, channels: int, cells: int,
                                            seed: int, detail: bool) -> None:
    cfg = GeneratorConfig(key_channels=channels, scale=scale, hidden=6, cell_detail=detail)
    model = trained_looking(cfg, seed)
    side = scale * cells * 2
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(seed))
    key = model.draw_key(2, side, side, torch.Generator().manual_seed(seed + 1))
    assert key.shape == (2, channels, side // scale, side // scale)
    with torch.no_grad():
        d, d_neg = model.delta(x, key), model.delta(x, -key)
    assert d.shape == x.shape
    assert float(d.abs().max()) > 1e-3  # not trivially zero
    torch.testing.assert_close(d_neg, -d, rtol=0, atol=1e-6)
    assert float(d.abs().max()) <= model.cfg.eps + 1e-6


def test_keys_change_the_perturbation_and_images_shape_it() -> None:
    model = trained_looking(GeneratorConfig(hidden=8))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    k1, k2 = (model.draw_key(1, 64, 64, torch.Generator().manual_seed(s)) for s in (4, 5))
    with torch.no_grad():
        a, b = model.delta(x, k1), model.delta(x, k2)
        c = model.delta(torch.flip(x, (-1,)), k1)
    assert float((a - b).abs().mean()) > 0.2 * float(a.abs().mean())
    assert float((a - c).abs().mean()) > 0.05 * float(a.abs().mean())


def test_cell_detail_starts_as_the_same_function_then_reads_detail_inside_cells() -> None:
    plain = trained_looking(GeneratorConfig(hidden=8), seed=4)
    detailed = KeyedProtector(GeneratorConfig(hidden=8, cell_detail=True)).eval()
    missing, unexpected = detailed.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["detail.weight"] and not unexpected
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    key = plain.draw_key(1, 32, 32, torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(detailed.delta(x, key), plain.delta(x, key))  # warm start
        detailed.detail.weight.normal_(0, 0.6)
        # the same cell means and the same contrast, the detail inside each 8x8 cell mirrored
        mirrored = x.reshape(1, 3, 4, 8, 4, 8).flip(3, 5).reshape(1, 3, 32, 32)
        torch.testing.assert_close(plain.delta(mirrored, key), plain.delta(x, key))
        assert float((detailed.delta(mirrored, key) - detailed.delta(x, key)).abs().max()) > 1e-3


@settings(max_examples=10, deadline=None)
@given(narrow=st.integers(1, 6), extra=st.integers(0, 6), detail=st.booleans(),
       seed=st.integers(0, 1000))
def test_widening_starts_as_the_same_function_and_the_new_channels_can_learn(
        narrow: int, extra: int, detail: bool, seed: int) -> None:
    small = trained_looking(GeneratorConfig(hidden=narrow, scale=4, cell_detail=detail), seed)
    wide = trained_looking(GeneratorConfig(hidden=narrow + extra, scale=4, cell_detail=detail),
                           seed + 1)
    widen_into(wide, small.state_dict())
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(seed))
    key = small.draw_key(2, 16, 24, torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        torch.testing.assert_close(wide.delta(x, key), small.delta(x, key))
    wide.delta(x, key).square().sum().backward()
    if extra:  # the output's new columns get a gradient from the first step
        assert float(wide.out.weight.grad[:, narrow:].abs().max()) > 0


def test_a_model_cannot_be_narrowed() -> None:
    with pytest.raises(ValueError, match="cannot widen 8 hidden channels to 4"):
        widen_into(KeyedProtector(GeneratorConfig(hidden=4)),
                   KeyedProtector(GeneratorConfig(hidden=8)).state_dict())


def test_subtracting_replays_leaves_the_protection() -> None:
    """EVALUATION.md's replay: x' − mean_k(protect_k(x') − x') with fresh keys stays protected."""
    model = trained_looking(GeneratorConfig(hidden=8), seed=2)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6)) * 0.6 + 0.2
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        xp = model(x, 0.5, model.draw_key(1, 64, 64, g))
        changes = [model(xp, 0.5, model.draw_key(1, 64, 64, g)) - xp for _ in range(4)]
    xr = xp - torch.stack(changes).mean(0)
    assert float((xr - x).norm()) > 0.9 * float((xp - x).norm())
