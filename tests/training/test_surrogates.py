"""The surrogate module: TAEF2 architecture loads its own state dict strictly; open specs load."""

from pathlib import Path

import pytest
import torch

from perturb.training.surrogates import (
    SurrogateError,
    load_state,
    load_surrogate,
    load_taef2,
    taef2_decoder,
    taef2_encoder,
)


def test_encoder_shapes_and_strict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = taef2_encoder()
    z = enc(torch.rand(1, 3, 32, 48))
    assert z.shape == (1, 32, 4, 6)
    path = tmp_path / "enc.pth"
    torch.save({k: v.half() for k, v in enc.state_dict().items()}, path)  # stored like ../shared
    loaded = load_state(taef2_encoder(), path)
    assert next(loaded.parameters()).dtype == torch.float32
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x), enc.half().float()(x), atol=1e-5)


def test_decoder_restores_resolution() -> None:
    dec = taef2_decoder()
    assert dec(torch.randn(2, 32, 3, 5)).shape == (2, 3, 24, 40)


def test_strict_load_rejects_a_foreign_state_dict(tmp_path: Path) -> None:
    sd = taef2_encoder().state_dict()
    sd.pop("14.bias")
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(RuntimeError, match="14.bias"):
        load_state(taef2_encoder(), path)


def test_shared_folder_layout_and_hashes(tmp_path: Path) -> None:
    folder = tmp_path / "surrogates"
    folder.mkdir()
    torch.save(taef2_encoder().state_dict(), folder / "taef2_encoder.pth")
    torch.save(taef2_decoder().state_dict(), folder / "taef2_decoder.pth")
    s = load_taef2(tmp_path)
    assert s.name == "taef2" and s.decoder is not None
    assert set(s.sha256) == {"taef2_encoder.pth", "taef2_decoder.pth"}
    assert all(len(h) == 64 for h in s.sha256.values())
    feats = s.features(torch.rand(1, 3, 32, 32))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 4]
    assert feats[-1].shape[1] == 32


def test_missing_weights_say_where_to_look(tmp_path: Path) -> None:
    with pytest.raises(SurrogateError, match="--shared"):
        load_surrogate("taef2", tmp_path)


def test_torchscript_file_spec(tmp_path: Path) -> None:
    enc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1))
    path = tmp_path / "other_encoder.pt"
    torch.jit.save(torch.jit.script(enc), str(path))
    s = load_surrogate(str(path))
    assert s.name == "other_encoder" and s.decoder is None
    assert s.features(torch.rand(1, 3, 8, 8))[0].shape == (1, 4, 4, 4)
    assert list(s.sha256) == ["other_encoder.pt"]


def test_factory_spec_and_unknown_specs() -> None:
    s = load_surrogate("perturb.training.surrogates:taef2_encoder")
    assert s.encoder(torch.rand(1, 3, 16, 16)).shape == (1, 32, 2, 2)
    with pytest.raises(SurrogateError, match="cannot import"):
        load_surrogate("no_such_module_xyz:make")
    with pytest.raises(SurrogateError, match="unknown surrogate"):
        load_surrogate("sd-vae")
