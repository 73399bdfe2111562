"""Fixtures for the proxy tests: tiny models (working, failing, slow), test images, and the
end-to-end parts (a test PKI, the upload server impersonating the sites, a real mitmproxy)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from proxy.outcome import Outcome
from tests.proxy.e2e_support import (
    ALL_SITES,
    ProxyHarness,
    UploadServer,
    make_test_pki,
    start_proxy,
)
from tests.support.tiny_model import build_tiny_model


def image_bytes(width: int, height: int, fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A noisy test image (noise makes every protected pixel change show)."""
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 20, (height, width, 3)).astype(np.float32)
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def build_slow_model(directory: Path, kernel: int = 31) -> Path:
    """A contract-conforming model whose inference is slow (timeout fault injection): two
    large, useless convolutions whose result is multiplied by zero. On a 2-core machine one
    1024 px tile takes about 2 s; `slow_image` has 16 tiles, so it overruns a 1 s deadline on
    much faster machines too, while the engine stops at the next tile once the deadline passed."""
    onnx_path = build_tiny_model(directory, model_id="slow-test", keyed=False)
    weights = numpy_helper.from_array(np.full((3, 3, kernel, kernel), 1e-4, dtype=np.float32), "w")
    pad = kernel // 2
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["c1"], pads=[pad] * 4),
        helper.make_node("Conv", ["c1", "w"], ["c2"], pads=[pad] * 4),
        helper.make_node("Mul", ["c2", "strength"], ["c3"]),
        helper.make_node("Sub", ["c3", "c3"], ["zero"]),
        # a uniform +4/255 on top: the engine refuses to mark an image its model left unchanged
        helper.make_node("Constant", [], ["nudge"],
                         value=numpy_helper.from_array(np.array(4 / 255, np.float32), "nudge")),
        helper.make_node("Add", ["zero", "nudge"], ["delta"]),
        helper.make_node("Add", ["image", "delta"], ["protected"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"]),
            helper.make_tensor_value_info("strength", TensorProto.FLOAT, []),
        ],
        [helper.make_tensor_value_info("protected", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx_path.write_bytes(model.SerializeToString())
    card_path = onnx_path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card))
    return onnx_path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def failing_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("failing"), model_id="failing", fail=True)


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory) -> Path:
    return build_slow_model(tmp_path_factory.mktemp("slow"))


@pytest.fixture(scope="session")
def slow_image() -> bytes:
    """3072 x 3072: 16 tiles of the model's 1024 px tiling."""
    return image_bytes(3072, 3072, "JPEG", seed=7)


@pytest.fixture(scope="session")
def jpeg() -> bytes:
    return image_bytes(320, 240, "JPEG", seed=1)


@pytest.fixture(scope="session")
def png() -> bytes:
    return image_bytes(200, 160, "PNG", seed=2)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[Path, Path, Path]:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstream(pki) -> AsyncIterator[UploadServer]:
    server = UploadServer()
    await server.start(pki[1], pki[2])
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxy(tmp_path_factory, pki, upstream, tiny_model) -> AsyncIterator[ProxyHarness]:
    """A real mitmproxy with the addon, every built-in site enabled; `outcomes` collects the
    addon's outcomes."""
    harness = await start_proxy(
        tmp_path_factory.mktemp("mitmproxy"),
        pki[0],
        upstream.port,
        sfumato_sites=ALL_SITES,
        sfumato_model=str(tiny_model),
        sfumato_workers=2,
    )
    harness.outcomes: list[Outcome] = []  # type: ignore[misc]
    harness.sfumato.outcome_listeners.append(harness.outcomes.append)
    yield harness
    await harness.stop()


@pytest.fixture(autouse=True)
def restore_options(request, tiny_model):
    """Tests may change the proxy's options; the next test starts from the defaults."""
    yield
    if "proxy" in request.fixturenames:
        proxy = request.getfixturevalue("proxy")
        proxy.configure(
            sfumato_sites=ALL_SITES,
            sfumato_model=str(tiny_model),
            sfumato_timeout=20,
            sfumato_body_limit=64 * 1024 * 1024,
            sfumato_buffer_budget=256 * 1024 * 1024,
            sfumato_pixel_budget=100,
        )


@pytest_asyncio.fixture(loop_scope="module")
async def client(proxy) -> AsyncIterator[aiohttp.ClientSession]:
    """A fresh client (no pooled tunnels) trusting only mitmproxy's CA."""
    async with aiohttp.ClientSession() as session:
        yield session
