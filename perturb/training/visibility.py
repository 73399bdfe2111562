"""Differentiable SSIMULACRA 2 in PyTorch, for training at a fixed visibility.

The product is scored at equal SSIMULACRA 2 against noise (EVALUATION.md), so the generator should
spend its visibility where SSIMULACRA 2 is blind and the encoder is not. This is a port of the
`ssimulacra2` package (PyPI, BSD-3-Clause; itself a port of libjxl's tool): XYB, 6 scales of SSIM
and edge-difference maps, the same weights and final polynomial. Padding follows the package (mirror
horizontally, zeros vertically); the test suite checks agreement with the package.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_M = torch.tensor([[0.30, 1 - 0.078 - 0.30, 0.078],
                   [0.23, 1 - 0.078 - 0.23, 0.078],
                   [0.24342268924547819, 0.20476744424496821,
                    1 - 0.24342268924547819 - 0.20476744424496821]])
_B = 0.0037930732552754493
_C2 = 0.0009
SCALES = 6
# weights[c][scale][n] = (ssim, artifact, detail_lost), in the package's order
_W = [0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0, 0.0, 0.0004371155730107379,
      0.0, 1.1041726426657346, 0.00066284834129271, 0.00015231632783718752, 0.0,
      0.0016406437456599754, 0.0, 1.8422455520539298, 11.441172603757666, 0.0,
      0.0007989109436015163, 0.000176816438078653, 0.0, 1.8787594979546387, 10.94906990605142, 0.0,
      0.0007289346991508072, 0.9677937080626833, 0.0, 0.00014003424285435884, 0.9981766977854967,
      0.00031949755934435053, 0.0004550992113792063, 0.0, 0.0, 0.0013648766163243398, 0.0, 0.0,
      0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262, 0.0006235601634041466, 0.0, 0.0,
      6.683678146179332, 0.00037724407979611296, 1.027889937768264, 225.20515300849274, 0.0, 0.0,
      19.213238186143016, 0.0011401524586618361, 0.001237755635509985, 176.39317598450694, 0.0,
      0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408, 0.0, 0.0, 0.0,
      34.77906344483772, 44.835625328877896, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
      0.0008680556573291698, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0005313191874358747, 0.0,
      0.00016533814161379112, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0004179171803251336,
      0.0017290828234722833, 0.0, 0.0020827005846636437, 0.0, 0.0, 8.826982764996862,
      23.19243343998926, 0.0, 95.1080498811086, 0.9863978034400682, 0.9834382792465353,
      0.0012286405048278493, 171.2667255897307, 0.9807858872435379, 0.0, 0.0, 0.0,
      0.0005130064588990679, 0.0, 0.00010854057858411537]  # fmt: skip


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_xyb(lin: torch.Tensor) -> torch.Tensor:
    """N×3×H×W linear RGB → 'positive' XYB as SSIMULACRA 2 uses it."""
    mixed = torch.einsum("ij,njhw->nihw", _M.to(lin), lin) + _B
    # cbrt with a finite gradient at 0
    mixed = (mixed.clamp_min(0) + 1e-12) ** (1 / 3) - _B ** (1 / 3)
    x = 0.5 * (mixed[:, 0] - mixed[:, 1])
    y = 0.5 * (mixed[:, 0] + mixed[:, 1])
    b = mixed[:, 2]
    return torch.stack([x * 14.0 + 0.42, y + 0.01, (b - y) + 0.55], 1)


def _gauss_kernel(sigma: float = 1.5, truncate: float = 3.33) -> torch.Tensor:
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


_K = _gauss_kernel()


def blur(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian σ=1.5: symmetric (scipy 'reflect') along W, zeros along H."""
    c = x.shape[1]
    k = _K.to(x)
    r = k.numel() // 2
    if x.shape[-1] < r:  # tiny widths: repeat the symmetric extension
        reps = -(-r // x.shape[-1]) + 1
        x_ext = torch.cat([x, x.flip(-1)] * reps, -1)
        left = x_ext.flip(-1)[..., -r:]
        xp = torch.cat([x_ext.flip(-1)[..., :0], left, x, x_ext[..., x.shape[-1]:][..., :r]], -1)
    else:
        xp = torch.cat([x[..., :r].flip(-1), x, x[..., -r:].flip(-1)], -1)
    y = F.conv2d(xp, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)


def _downsample2(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2, 2, ceil_mode=True)


def ssimulacra2(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Per-image SSIMULACRA 2 score of `dist` against `ref` (N×3×H×W sRGB in [0, 1])."""
    lin1, lin2 = srgb_to_linear(ref.clamp(0, 1)), srgb_to_linear(dist.clamp(0, 1))
    terms = []  # [scale] -> N×3×(ssim L1, ssim L4, art L1, art L4, det L1, det L4)
    for scale in range(SCALES):
        if min(lin1.shape[-2:]) < 8:
            break
        if scale:
            lin1, lin2 = _downsample2(lin1), _downsample2(lin2)
            if min(lin1.shape[-2:]) < 8:
                break
        i1, i2 = linear_to_xyb(lin1), linear_to_xyb(lin2)
        mu1, mu2 = blur(i1), blur(i2)
        s11, s22, s12 = blur(i1 * i1), blur(i2 * i2), blur(i1 * i2)
        num_m = 1.0 - (mu1 - mu2) ** 2
        num_s = 2.0 * (s12 - mu1 * mu2) + _C2
        den_s = (s11 - mu1 * mu1) + (s22 - mu2 * mu2) + _C2
        d = F.relu(1.0 - num_m * num_s / den_s)
        d1 = (1.0 + (i2 - mu2).abs()) / (1.0 + (i1 - mu1).abs()) - 1.0
        art, det = F.relu(d1), F.relu(-d1)

        def norms(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return m.mean((-2, -1)), ((m**4).mean((-2, -1)) + 1e-20) ** 0.25

        terms.append((*norms(d), *norms(art), *norms(det)))
    total = ref.new_zeros(ref.shape[0])
    i = 0
    for c in range(3):
        for s in range(len(terms)):
            for n in range(2):
                sm, art, det = terms[s][n], terms[s][2 + n], terms[s][4 + n]
                total = total + _W[i] * sm[:, c] + _W[i + 1] * art[:, c] + _W[i + 2] * det[:, c]
                i += 3
    # the package skips the weights of missing scales the same way (index runs over present ones)
    v = total * 0.9562382616834844
    v = 2.326765642916932 * v - 0.020884521182843837 * v**2 + 6.248496625763138e-05 * v**3
    return torch.where(v > 0, 100.0 - 10.0 * v.clamp_min(1e-9) ** 0.6276336467831387,
                       torch.full_like(v, 100.0))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return -10 * torch.log10(mse) + 0 * math.pi
