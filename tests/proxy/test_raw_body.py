"""raw_body: declared sizes and dimensions follow the new body; matching values stay as sent."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.uploads import header_fixes as raw_body

PARAMS = '{"media_type":1,"upload_id":"1700","upload_media_height":800,"upload_media_width":600}'


def test_entity_length_is_rewritten() -> None:
    fixes = raw_body.declared_header_fixes(
        {"x-entity-length": "1000", "x-instagram-rupload-params": PARAMS}, 1234, 600, 800
    )
    assert fixes == {"x-entity-length": "1234"}


def test_dimensions_are_rewritten_keeping_compact_json() -> None:
    fixed = raw_body.rupload_params_with_size(PARAMS, 640, 480)
    assert json.loads(fixed) == {
        **json.loads(PARAMS),
        "upload_media_width": 640,
        "upload_media_height": 480,
    }
    assert " " not in fixed


def test_unparseable_or_unknown_dimensions_leave_params_alone() -> None:
    assert raw_body.rupload_params_with_size("not json", 1, 2) == "not json"
    assert raw_body.rupload_params_with_size(PARAMS, None, None) == PARAMS
    assert raw_body.declared_header_fixes({}, 10, 1, 1) == {}


@settings(deadline=None)
@given(st.text(max_size=200), st.integers(1, 10000), st.integers(1, 10000))
def test_random_params_never_crash(params: str, width: int, height: int) -> None:
    raw_body.rupload_params_with_size(params, width, height)
