"""Hostile images through a real `mitmdump -s proxy/addon.py` (issue cases 1, 2 and 8): what the
site receives is either nothing or an image whose decoded pixels differ from the original, whose
marker matches its pixels, and which holds no original thumbnail bytes."""

from __future__ import annotations

import asyncio
import io
import ssl
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

import perturb
from perturb.containers import jpeg_insert_segments, png_chunk, png_insert_before_idat
from tests.engine import samples
from tests.engine.test_previews import (
    exif_with_raw_thumbnail,
    exif_with_thumbnail,
    fingerprints,
    jpeg_of,
    photoshop_app13,
)
from tests.proxy.e2e_support import UploadServer, free_port, make_test_pki
from tests.proxy.helpers import MULTIPART_CT, file_field, multipart_body, split_multipart

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
DA_UPLOAD = "https://www.deviantart.com/_puppy/dashared/deviation/submit/upload/deviation"
PNGSUITE = REPO.parent / "shared" / "data" / "pngsuite"


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
async def mitmdump(upstream, pki, tiny_model, tmp_path_factory) -> AsyncIterator[tuple[int, Path]]:
    """(port, CA file) of a mitmdump running the addon for DeviantArt, as users start it."""
    confdir = tmp_path_factory.mktemp("mitmdump")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("mitmdump")), "-q", "--listen-host", "127.0.0.1",
        "-p", str(port), "-s", str(REPO / "proxy" / "addon.py"),
        "-s", str(REPO / "tests/proxy/redirect_script.py"),
        "--set", "sfumato_sites=deviantart", "--set", f"sfumato_model={tiny_model}",
        "--set", f"confdir={confdir}", "--set", "connection_strategy=lazy",
        "--set", f"ssl_verify_upstream_trusted_ca={pki[0]}",
        "--set", f"test_upstream_port={upstream.port}",
        cwd=confdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            if (confdir / "mitmproxy-ca-cert.pem").exists():
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    pass
            if proc.returncode is not None:
                raise AssertionError((await proc.stdout.read()).decode())
            await asyncio.sleep(0.05)
        yield port, confdir / "mitmproxy-ca-cert.pem"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def upload(
    mitmdump, upstream: UploadServer, name: str, mime: str, data: bytes
) -> bytes | None:
    """Upload one file through the proxy; the image the site received (None: refused)."""
    port, ca = mitmdump
    token = uuid.uuid4().hex[:12]
    body = multipart_body(file_field("upload_file", name, mime, data))
    context = ssl.create_default_context(cafile=str(ca))
    async with aiohttp.ClientSession() as session, session.post(
        f"{DA_UPLOAD}?t={token}", data=body, headers={"Content-Type": MULTIPART_CT},
        proxy=f"http://127.0.0.1:{port}", ssl=context,
    ) as response:
        await response.read()
        status = response.status
    received = upstream.matching(token)
    if not received:
        assert status >= 400, "nothing reached the site, so the client must see a refusal"
        return None
    (got,) = received
    parts = split_multipart(got.body, got.headers["Content-Type"].split("boundary=")[1])
    return parts[0][1]


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"), dtype=np.int16)


def assert_protected(original: bytes, sent: bytes) -> None:
    assert sent != original
    assert perturb.inspect_marker(sent) is not None, "the marker must match the pixels sent"
    before, after = pixels(original), pixels(sent)
    assert before.shape == after.shape
    visible = before[..., 3] > 0
    assert np.any(before[..., :3] != after[..., :3], axis=2)[visible].mean() > 0.25


async def test_case1_a_copied_marker_does_not_let_the_original_through(
    mitmdump, upstream, tiny_model
) -> None:
    original = samples.encode(Image.fromarray(samples.artwork(200, 150, 21)), "JPEG", quality=90)
    protected = perturb.protect(original, model=str(tiny_model)).data
    start = protected.index(b"<?xpacket begin")
    packet = protected[start : protected.index(b"<?xpacket end") + 19]
    kept_by_editor = samples.encode(Image.open(io.BytesIO(original)), "JPEG", quality=90,
                                    xmp=packet)
    for forged in (original + packet, kept_by_editor):
        assert b"sfumato:PixelDigest" in forged
        sent = await upload(mitmdump, upstream, "art.jpg", "image/jpeg", forged)
        assert sent is not None
        assert_protected(forged, sent)
    # a file really protected before uploading passes unchanged (no second perturbation)
    assert await upload(mitmdump, upstream, "art.jpg", "image/jpeg", protected) == protected


async def test_case2_no_original_thumbnail_reaches_the_site(mitmdump, upstream) -> None:
    exif_thumb, ps_new, ps_old = jpeg_of((160, 120)), jpeg_of((128, 96)), jpeg_of((112, 84))
    image = Image.fromarray(samples.artwork(320, 240, 22))
    original = samples.encode(image, "JPEG", quality=90, exif=exif_with_thumbnail(exif_thumb))
    original = jpeg_insert_segments(original, [photoshop_app13(ps_new, ps_old)])
    sent = await upload(mitmdump, upstream, "art.jpg", "image/jpeg", original)
    assert sent is not None
    assert_protected(original, sent)
    for thumb in (exif_thumb, ps_new, ps_old):
        for window in fingerprints(thumb):
            assert window not in sent, "bytes of an original thumbnail reached the site"


def scan_windows(image: bytes, size: int = 256) -> list[bytes]:
    """Runs of a whole image's compressed pixel data: one in what the site got means a copy of
    it went through (long runs: a protected image may share short ones with its original)."""
    start = image.rindex(b"\xff\xda") + 14 if image[:2] == b"\xff\xd8" else image.index(b"IDAT") + 4
    pixels = image[start:]
    return [pixels[int(len(pixels) * f) :][:size] for f in (0.2, 0.4, 0.6, 0.8)]


async def test_case1_and_2_a_protected_file_carrying_the_original_is_protected_again(
    mitmdump, upstream, tiny_model
) -> None:
    """The marker vouches for the pixels only: a really protected file with the original's
    thumbnail or a copy of the original added afterwards does not pass as it is."""
    art = Image.fromarray(samples.artwork(320, 240, 24))
    original = samples.encode(art, "JPEG", quality=90)
    original_png = samples.encode(art, "PNG")
    thumb = samples.encode(art.resize((80, 60)), "JPEG", quality=90)
    protected = perturb.protect(original, model=str(tiny_model)).data
    protected_png = perturb.protect(original_png, model=str(tiny_model)).data
    exif = exif_with_thumbnail(thumb)
    raw = art.resize((80, 60)).tobytes()
    raw_exif = exif_with_raw_thumbnail(raw, (80, 60))

    def app1(payload: bytes) -> bytes:
        return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload

    forged = {  # what, (file, its type, runs of the original that must not reach the site)
        "original after EOI": (protected + original, "image/jpeg", scan_windows(original)),
        "EXIF thumbnail": (
            jpeg_insert_segments(protected, [app1(exif)]), "image/jpeg", fingerprints(thumb)
        ),
        "uncompressed EXIF thumbnail": (
            jpeg_insert_segments(protected, [app1(raw_exif)]), "image/jpeg", raw_windows(raw)
        ),
        "Photoshop thumbnail": (
            jpeg_insert_segments(protected, [photoshop_app13(thumb, thumb)]),
            "image/jpeg",
            fingerprints(thumb),
        ),
        "PNG private chunk": (
            png_insert_before_idat(protected_png, png_chunk(b"prVw", thumb)),
            "image/png",
            fingerprints(thumb),
        ),
        "PNG after IEND": (protected_png + original_png, "image/png", scan_windows(original_png)),
    }
    for what, (data, mime, windows) in forged.items():
        assert perturb.inspect_marker(data) is not None, what  # the marker still matches
        sent = await upload(mitmdump, upstream, "art", mime, data)
        assert sent is not None, what
        assert_protected(original if mime == "image/jpeg" else original_png, sent)
        for window in windows:
            assert window not in sent, f"{what}: bytes of the original reached the site"


def raw_windows(raw: bytes, size: int = 48) -> list[bytes]:
    return [raw[at : at + size] for at in range(0, len(raw) - size, size)]


async def test_case2_an_uncompressed_exif_thumbnail_does_not_reach_the_site(
    mitmdump, upstream
) -> None:
    """Raw RGB strips in IFD1 (older cameras, TIFF-EP writers): erased, not only unlinked."""
    art = Image.fromarray(samples.artwork(320, 240, 25))
    raw = art.resize((80, 60)).tobytes()
    exif = exif_with_raw_thumbnail(raw, (80, 60), ">", strips=4)
    original = samples.encode(art, "JPEG", quality=90, exif=exif)
    assert raw[:48] in original
    sent = await upload(mitmdump, upstream, "art.jpg", "image/jpeg", original)
    assert sent is not None
    assert_protected(original, sent)
    for window in raw_windows(raw):
        assert window not in sent, "bytes of the original thumbnail reached the site"


def small_palette_pngs() -> list[tuple[str, bytes]]:
    files = [(n, (PNGSUITE / n).read_bytes()) for n in ("s32n3p04.png", "tm3n3p02.png")
             if (PNGSUITE / n).exists()]
    four = Image.fromarray(samples.artwork(64, 48, 23)).quantize(4)
    return files + [("four-colours.png", samples.encode(four, "PNG"))]


@pytest.mark.parametrize("name,original", small_palette_pngs(), ids=lambda v: str(v)[:20])
async def test_case8_small_palettes_are_really_changed(mitmdump, upstream, name, original) -> None:
    sent = await upload(mitmdump, upstream, name, "image/png", original)
    assert sent is not None
    assert_protected(original, sent)
    assert Image.open(io.BytesIO(sent)).mode in ("RGB", "RGBA")  # the palette could not hold it
