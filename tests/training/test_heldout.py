"""Held-out encoders: the TAEF2 sibling re-initialises only its last stage; both train and save as
TorchScript files that load_surrogate takes."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from perturb.training.data import CropSampler
from perturb.training.heldout import (
    REINIT_DECODER_UNTIL,
    REINIT_ENCODER_FROM,
    reinit_name,
    save,
    sdlike,
    taef2_reinit,
    train_autoencoder,
)
from perturb.training.surrogates import load_surrogate, taef2_decoder, taef2_encoder


def fake_shared(tmp_path: Path) -> Path:
    folder = tmp_path / "surrogates"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(taef2_encoder().state_dict(), folder / "taef2_encoder.pth")
    torch.save(taef2_decoder().state_dict(), folder / "taef2_decoder.pth")
    return tmp_path


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pa, pb = list(a.parameters()), list(b.parameters())
    return all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True))


def test_taef2_sibling_keeps_early_layers_and_resets_the_rest(tmp_path: Path) -> None:
    shared = fake_shared(tmp_path)
    base_enc = taef2_encoder()
    base_enc.load_state_dict(torch.load(shared / "surrogates" / "taef2_encoder.pth"))
    base_dec = taef2_decoder()
    base_dec.load_state_dict(torch.load(shared / "surrogates" / "taef2_decoder.pth"))
    enc, dec = taef2_reinit(shared)
    for i, layer in enumerate(enc):
        if list(layer.parameters()):
            assert same(layer, base_enc[i]) == (i < REINIT_ENCODER_FROM), i
            # only the re-initialised stages train; the kept ones stay as pretrained
            assert all(p.requires_grad == (i >= REINIT_ENCODER_FROM) for p in layer.parameters())
    for i, layer in enumerate(dec):
        if list(layer.parameters()):
            assert same(layer, base_dec[i]) == (i >= REINIT_DECODER_UNTIL), i
            assert all(p.requires_grad == (i < REINIT_DECODER_UNTIL) for p in layer.parameters())


def test_another_seed_is_a_different_sibling_with_the_same_early_layers(tmp_path: Path) -> None:
    shared = fake_shared(tmp_path)
    (enc1, dec1), (enc7, dec7) = taef2_reinit(shared, seed=1), taef2_reinit(shared, seed=7)
    for i, (a, b) in enumerate(zip(enc1, enc7, strict=True)):
        if list(a.parameters()):
            assert same(a, b) == (i < REINIT_ENCODER_FROM), i
    for i, (a, b) in enumerate(zip(dec1, dec7, strict=True)):
        if list(a.parameters()):
            assert same(a, b) == (i >= REINIT_DECODER_UNTIL), i
    assert reinit_name(1) == "taef2-reinit"
    assert reinit_name(7) == "taef2-reinit-seed7"


def test_sdlike_trains_and_saves_as_a_surrogate(tmp_path: Path) -> None:
    enc, dec = sdlike(latent=8, widths=(8, 16, 16))
    x = torch.rand(1, 3, 64, 48)
    assert enc(x).shape == (1, 8, 8, 6) and dec(enc(x)).shape == x.shape
    rng = np.random.default_rng(0)
    img = tmp_path / "a.png"
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(img)
    before = [p.detach().clone() for p in enc.parameters()]
    psnr = train_autoencoder(enc, dec, CropSampler([img]), minutes=5, batch=2, size=32,
                             max_steps=3)
    assert np.isfinite(psnr)
    assert any(not torch.equal(a, b) for a, b in zip(before, enc.parameters(), strict=True))
    path = save(enc, dec, tmp_path / "out", "tiny")
    loaded = load_surrogate(str(path))
    with torch.no_grad():
        torch.testing.assert_close(loaded.encoder(x), enc.eval()(x))
        # the decoder saved beside it comes along, so ΔC can be measured on the held-out encoder
        assert loaded.decoder is not None
        torch.testing.assert_close(loaded.decoder(enc(x)), dec.eval()(enc(x)))
    assert sorted(loaded.sha256) == ["tiny-decoder.pt", "tiny-encoder.pt"]
