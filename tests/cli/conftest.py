from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_model import build_tiny_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(model_dir: Path) -> str:
    """Path of the default tiny model (tiles of 1024, size multiple 8, amplitude 4/255)."""
    return str(build_tiny_model(model_dir))


@pytest.fixture(scope="session")
def small_tile_model(model_dir: Path) -> str:
    return str(build_tiny_model(model_dir, model_id="tiny-tiles",
                                large_images={"mode": "tile", "tile": 64, "overlap": 16}))


@pytest.fixture(scope="session")
def failing_model(model_dir: Path) -> str:
    return str(build_tiny_model(model_dir, model_id="tiny-broken", fail=True))
