"""cell_filters.py: each filter does to a cell what its name says, is folded into the model without
changing anything else, and keeps the perturbation odd in the key."""

import pytest
import torch

from perturb.training.cell_filters import cell_filter, filtered
from perturb.training.compare import main as compare_main
from perturb.training.transforms import DCT8, RGB_TO_YCC
from tests.support.random_generator import random_generator


def ycc_planes(cell: torch.Tensor) -> torch.Tensor:
    """3 × 8 × 8 YCbCr of a cell given as 192 values in pixel-shuffle order."""
    return torch.einsum("cd,dij->cij", RGB_TO_YCC.double(), cell.view(3, 8, 8))


def basis(u: int, v: int, colour: tuple[float, float, float]) -> torch.Tensor:
    """A cell holding the DCT basis pattern (u, v) in the given RGB direction."""
    pattern = torch.outer(DCT8[u], DCT8[v]).double()
    return (torch.tensor(colour).double()[:, None, None] * pattern).reshape(-1)


def test_a_zero_power_is_the_model_itself() -> None:
    assert torch.allclose(
        cell_filter("jpeg-weight@0"), torch.eye(192, dtype=torch.float64), atol=1e-5
    )


def test_chroma_pool_averages_cb_cr_over_2x2_and_keeps_luma() -> None:
    cell = torch.randn(192, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    before, after = ycc_planes(cell), ycc_planes(cell_filter("chroma-pool") @ cell)
    assert torch.allclose(after[0], before[0], atol=1e-9)
    pooled = torch.nn.functional.avg_pool2d(before[1:][None], 2)[0]
    assert torch.allclose(
        after[1:], pooled.repeat_interleave(2, 1).repeat_interleave(2, 2), atol=1e-9
    )


@pytest.mark.parametrize("colour", [(1.0, 1.0, 1.0), (0.0, 0.0, 1.0)])
def test_jpeg_weighting_fades_what_jpeg_quantises_coarsely_and_a_negative_power_boosts_it(
    colour,
) -> None:
    fine, coarse = basis(0, 1, colour), basis(7, 7, colour)  # small and large quantiser steps
    for power, fades in ((1.0, True), (-0.5, False)):
        f = cell_filter(f"jpeg-weight@{power}")
        ratio = (f @ coarse).norm() / (f @ fine).norm()  # both patterns have unit-energy planes
        assert (ratio < 0.5) if fades else (ratio > 1.5)


def test_a_filtered_model_is_odd_in_the_key_and_differs_only_in_its_last_layer() -> None:
    model = random_generator(3)
    x = torch.rand(1, 3, 32, 40)
    key = model.draw_key(1, 32, 40, torch.Generator().manual_seed(1))
    low = filtered(model, "jpeg-weight@1")
    assert torch.allclose(low.delta(x, -key), -low.delta(x, key), atol=1e-6)
    assert not torch.allclose(low.delta(x, key), model.delta(x, key), atol=1e-4)
    same = {k for k, v in model.state_dict().items() if torch.equal(v, low.state_dict()[k])}
    assert set(model.state_dict()) - same == {"out.weight"}
    assert torch.allclose(
        filtered(model, "jpeg-weight@0").delta(x, key), model.delta(x, key), atol=1e-5
    )


@pytest.mark.parametrize("spec", ["jpeg-weight@", "jpeg-weight@x", "blur", ""])
def test_a_bad_filter_is_refused_with_the_forms_named(spec) -> None:
    with pytest.raises(ValueError, match="jpeg-weight@P"):
        cell_filter(spec)


def test_compare_refuses_a_bad_filter_or_an_onnx_file_before_loading_anything(
    tmp_path, capsys
) -> None:
    for args in (["m.pt", "--cell-filter", "blur"], ["m.onnx", "--cell-filter", "chroma-pool"]):
        with pytest.raises(SystemExit) as e:
            compare_main([*args, "--shared", str(tmp_path / "missing")])
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown cell filter 'blur'" in err and "not .onnx files" in err
