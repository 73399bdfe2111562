"""Fixtures for the extension's end-to-end test, written into DIR (argv[1]); prints their paths
as JSON. A tiny contract-conforming model (so the test does not depend on the trained one), an
artwork PNG, and a "broken" PNG: a valid signature and header followed by garbage, which the
engine must refuse."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from PIL import Image

from tests.support.tiny_model import build_tiny_model


def artwork(width: int = 96, height: int = 64) -> bytes:
    image = Image.new("RGB", (width, height))
    image.putdata(
        [((x * 255) // width, (y * 255) // height, ((x ^ y) * 7) % 256) for y in range(height) for x in range(width)]
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def painting(width: int = 480, height: int = 320) -> bytes:
    """A busier picture for the preview screenshot: soft gradients plus seeded brush noise."""
    import random

    rnd = random.Random(7)
    image = Image.new("RGB", (width, height))
    image.putdata(
        [
            (
                min(255, 90 + (x * 120) // width + rnd.randint(0, 25)),
                min(255, 60 + (y * 140) // height + rnd.randint(0, 25)),
                min(255, 150 - (x * 60) // width + rnd.randint(0, 25)),
            )
            for y in range(height)
            for x in range(width)
        ]
    )
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()


def main() -> None:
    root = Path(sys.argv[1])
    model = build_tiny_model(root / "model", model_id="tiny-e2e")
    png = artwork()
    (root / "artwork.png").write_bytes(png)
    (root / "preview.jpg").write_bytes(painting())
    # Signature + IHDR intact (so it sniffs as PNG), then bytes that are no valid chunk.
    (root / "broken.png").write_bytes(png[:33] + bytes(range(256)) * 8)
    print(json.dumps({"model": str(model), "artwork": str(root / "artwork.png"), "broken": str(root / "broken.png"), "preview": str(root / "preview.jpg")}))


if __name__ == "__main__":
    main()
