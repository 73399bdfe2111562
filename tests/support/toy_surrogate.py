"""A small random TAEF2-shaped surrogate (encoder and decoder), for running the efficacy benchmark
end to end in tests without the shared weights: `--surrogate tests.support.toy_surrogate:build`."""

from __future__ import annotations


def build():
    """(encoder, decoder): TAEF2's layout at width 8, fixed random weights scaled to stay tame."""
    import torch

    from perturb.training.surrogates import taef2_decoder, taef2_encoder

    torch.manual_seed(0)
    enc, dec = taef2_encoder(n=8).eval(), taef2_decoder(n=8).eval()
    with torch.no_grad():
        for p in [*enc.parameters(), *dec.parameters()]:
            p.mul_(0.5)
    return enc, dec
