"""openapi.yaml: a valid OpenAPI 3.1 document whose paths and methods are the apps' routes."""

from __future__ import annotations

import re
from typing import Any

import yaml
from openapi_spec_validator import validate

from mailpixel.api.app import create_api_app
from mailpixel.config import Settings
from mailpixel.pixel.app import create_app
from tests.conftest import ROOT


def spec() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    return data


def test_openapi_file_is_valid_openapi_3_1():
    document = spec()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_openapi_paths_and_methods_match_the_flask_routes():
    # Building the apps makes clients but calls nothing: no server is needed to list routes.
    settings = Settings(endpoint_url="http://127.0.0.1:9")
    routes: dict[str, set[str]] = {}
    rules = [*create_app(settings).url_map.iter_rules(), *create_api_app(settings).url_map.iter_rules()]
    for rule in rules:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)  # `<id:email_id>` is `{email_id}`
        routes.setdefault(path, set()).update(
            m.lower() for m in (rule.methods or ()) if m not in ("OPTIONS",)
        )
    documented = {
        path: {m for m in item if m in ("get", "head", "post", "put", "delete", "patch")}
        for path, item in spec()["paths"].items()
    }
    assert set(routes) == set(documented)
    for path, methods in routes.items():
        # Flask answers HEAD for every GET route; only routes that mean something by it document it.
        assert documented[path] == methods - ({"head"} if "head" not in documented[path] else set()), path
    for path, item in spec()["paths"].items():
        secured = path.startswith("/api/")
        for operation in (item[m] for m in documented[path]):
            assert (operation.get("security") != []) is secured, path
            names = {p.get("name") or p["$ref"].rsplit("/", 1)[-1] for p in operation.get("parameters", [])}
            for part in path.split("/"):
                if part.startswith("{"):
                    assert part[1:-1].replace("_id", "Id") in names or part[1:-1] in names, (path, part)
