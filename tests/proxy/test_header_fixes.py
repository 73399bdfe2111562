"""header_fixes: declared sizes and dimensions follow the new body; matching values stay as
sent."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.uploads import header_fixes

PARAMS = '{"media_type":1,"upload_id":"1700","upload_media_height":800,"upload_media_width":600}'


def test_entity_length_is_rewritten() -> None:
    headers = {"x-entity-length": "1000", "x-instagram-rupload-params": PARAMS}
    assert header_fixes.entity_length_fix(headers, 1234) == {"x-entity-length": "1234"}
    assert header_fixes.entity_length_fix(headers, 1000) == {}
    assert header_fixes.rupload_params_fix(headers, 600, 800) == {}


def test_dimensions_are_rewritten_keeping_compact_json() -> None:
    fixed = header_fixes.rupload_params_with_size(PARAMS, 640, 480)
    assert json.loads(fixed) == {
        **json.loads(PARAMS),
        "upload_media_width": 640,
        "upload_media_height": 480,
    }
    assert " " not in fixed


def test_unparseable_or_unknown_dimensions_leave_params_alone() -> None:
    assert header_fixes.rupload_params_with_size("not json", 1, 2) == "not json"
    assert header_fixes.rupload_params_with_size(PARAMS, None, None) == PARAMS
    assert header_fixes.entity_length_fix({}, 10) == {}
    assert header_fixes.rupload_params_fix({}, 1, 1) == {}


@settings(deadline=None)
@given(st.text(max_size=200), st.integers(1, 10000), st.integers(1, 10000))
def test_random_params_never_crash(params: str, width: int, height: int) -> None:
    header_fixes.rupload_params_with_size(params, width, height)
