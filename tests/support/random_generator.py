"""A small keyed generator with random weights large enough to change an image visibly, for tests of
the training tools that need a model but not a trained one."""

from __future__ import annotations


def random_generator(seed: int):
    import torch

    from perturb.training.generator import GeneratorConfig, KeyedProtector

    torch.manual_seed(seed)
    model = KeyedProtector(GeneratorConfig(hidden=8)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.6)
    return model
