"""Fixtures for the server tests: a data dir with a CA, the store, a tiny model, an API client."""

from __future__ import annotations

import io
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from proxy.certificate_authority import ensure_ca
from proxy.control_api import ControlContext, create_app
from proxy.data_dir import database_path
from proxy.live_settings import builtin_sites
from proxy.pairing import PairingThrottle, issue_code
from proxy.settings_store import SettingsStore
from tests.support.tiny_model import build_tiny_model


def png_bytes(width: int = 48, height: int = 32, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def ca_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CA per session (RSA key generation is slow); each test gets a private copy."""
    directory = tmp_path_factory.mktemp("ca") / "data"
    ensure_ca(directory)
    return directory


@pytest.fixture
def data_dir(tmp_path: Path, ca_template: Path) -> Path:
    directory = tmp_path / "data"
    shutil.copytree(ca_template, directory)
    ensure_ca(directory)  # re-applies the modes
    return directory


@pytest.fixture
def store(data_dir: Path) -> Iterator[SettingsStore]:
    s = SettingsStore.open(database_path(data_dir))
    yield s
    s.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def applied() -> list[int]:
    """Counts calls of apply_settings (the server's push to the running proxy)."""
    return []


@pytest.fixture
def ctx(
    store: SettingsStore, data_dir: Path, tiny_model: Path, clock: Clock, applied: list[int]
) -> ControlContext:
    return ControlContext(
        store=store,
        data_dir=data_dir,
        builtin_sites=builtin_sites(),
        apply_settings=lambda: applied.append(1),
        proxy_status=lambda: {"address": "127.0.0.1:8080", "state": "running"},
        model_info=lambda: {"id": "tiny-test", "metrics": {}},
        model=lambda: str(tiny_model),
        throttle=PairingThrottle(max_failures=5, window=60, clock=clock),
    )


@pytest.fixture
async def client(ctx: ControlContext) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(ctx))) as c:
        yield c


async def pair(client: TestClient, store: SettingsStore, name: str = "test") -> str:
    code, _ = issue_code(store)
    response = await client.post("/v1/pair", json={"code": code, "client": name})
    assert response.status == 201, await response.text()
    return (await response.json())["token"]


@pytest.fixture
async def auth(client: TestClient, store: SettingsStore) -> dict[str, str]:
    return {"Authorization": f"Bearer {await pair(client, store)}"}
