"""docs/api.openapi.yaml describes exactly the routes the server has, and is self-consistent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from proxy.control_api import PUBLIC_ROUTES, ControlContext, create_app

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return YAML(typ="safe").load(DOC.read_text())


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    ctx = ControlContext(store=None, data_dir=tmp_path, builtin_sites={})  # type: ignore[arg-type]
    routes = set()
    for route in create_app(ctx).router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD":
            routes.add((route.method.lower(), path))
    return routes


def test_documents_exactly_the_served_routes(spec, tmp_path):
    documented = {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }
    assert documented == app_routes(tmp_path)


def test_public_routes_are_the_ones_without_security(spec):
    public = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS and op.get("security") == []
    }
    assert public == set(PUBLIC_ROUTES)
    assert spec["openapi"].startswith("3.1")
    assert spec["security"] == [{"bearer": []}]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves_and_operation_ids_are_unique(spec):
    for ref in _refs(spec):
        assert ref.startswith("#/"), ref
        node: Any = spec
        for part in ref[2:].split("/"):
            node = node[part]
    ops = [
        op["operationId"]
        for item in spec["paths"].values()
        for method, op in item.items()
        if method in METHODS
    ]
    assert len(ops) == len(set(ops))
    for path, item in spec["paths"].items():
        params = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            if method not in METHODS:
                continue
            declared = {p["name"] for p in item.get("parameters", []) + op.get("parameters", [])}
            assert params <= declared, (method, path)
            assert op["responses"], (method, path)
