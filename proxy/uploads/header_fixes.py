"""Fixes a site profile names for requests whose body is one image: the headers that declare
the body's size and dimensions, rewritten to match the protected image.

Instagram checks `X-Entity-Length` (byte count, fix "entity-length") and the width/height inside
the JSON of `X-Instagram-Rupload-Params` (fix "rupload-params") against the body; its resumed
uploads carry an `Offset` (fix "resumable-offset": refused, the tail of a file cannot be
protected). Values that still match are left byte-for-byte as they were.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

ENTITY_LENGTH = "x-entity-length"
OFFSET = "offset"
RUPLOAD_PARAMS = "x-instagram-rupload-params"


def entity_length_fix(headers: Mapping[str, str], length: int) -> dict[str, str]:
    """`X-Entity-Length` to set so the declared size matches the new body (if declared)."""
    declared = headers.get(ENTITY_LENGTH)
    if declared is not None and declared.strip() != str(length):
        return {ENTITY_LENGTH: str(length)}
    return {}


def rupload_params_fix(
    headers: Mapping[str, str], width: int | None, height: int | None
) -> dict[str, str]:
    """`X-Instagram-Rupload-Params` to set so the declared dimensions match (if declared)."""
    params = headers.get(RUPLOAD_PARAMS)
    if params:
        fixed = rupload_params_with_size(params, width, height)
        if fixed != params:
            return {RUPLOAD_PARAMS: fixed}
    return {}


def rupload_params_with_size(params: str, width: int | None, height: int | None) -> str:
    """The rupload params JSON with every integer `*width*`/`*height*` field set to the image's.

    Unparseable params are returned unchanged (Instagram then judges them, as it would have).
    """
    if width is None or height is None:
        return params
    try:
        data = json.loads(params)
    except ValueError:
        return params
    if not isinstance(data, dict):
        return params
    changed = False
    for key, value in list(data.items()):
        lowered = key.lower()
        target = width if "width" in lowered else height if "height" in lowered else None
        if target is None or isinstance(value, bool):
            continue
        if isinstance(value, int) and value != target:
            data[key] = target
            changed = True
        elif isinstance(value, str) and value.isdigit() and int(value) != target:
            data[key] = str(target)
            changed = True
    if not changed:
        return params
    compact = ", " not in params and ": " not in params
    return json.dumps(data, separators=(",", ":") if compact else (", ", ": "))


def resumed_offset(headers: Mapping[str, str]) -> int:
    """The byte offset of a resumed Instagram upload (`Offset` header), 0 for a whole file.

    A resumed request carries only the tail of a file, which cannot be protected on its own.
    An unreadable value counts as resumed (fail closed).
    """
    value = (headers.get(OFFSET) or "0").strip()
    if not value.isdigit():
        return -1
    return int(value)
