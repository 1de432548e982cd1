"""The tree is the architecture: each deployed function's package imports only shared code,
never another function's package nor `ops/` (which is not in the zip)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "mailpixel"
FUNCTIONS = ("pixel", "api", "enrich", "drain", "webhooks")
SHARED = ("model", "ddb", "config", "files", "logs", "aws", "secrets", "signing", "web")
WEB_STACK = ("flask", "werkzeug", "serverless_wsgi", "jinja2")


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def part_of(module: str) -> str | None:
    """`pixel` for mailpixel.pixel.app, `model` for mailpixel.model.keys, `config` for ..."""
    parts = module.split(".")
    return parts[1] if parts[0] == "mailpixel" and len(parts) > 1 else None


def files_of(part: str) -> list[Path]:
    folder = PACKAGE / part
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{part}.py"]


@pytest.mark.parametrize("part", FUNCTIONS + SHARED)
def test_shipped_code_imports_only_what_its_function_may(part):
    allowed = {part, *SHARED, "__version__", "py"}
    for path in files_of(part):
        for module in imports_of(path):
            other = part_of(module)
            assert other is None or other in allowed, f"{path.relative_to(ROOT)} imports {module}"


def test_every_module_belongs_to_a_function_shared_code_or_ops():
    known = set(FUNCTIONS + SHARED + ("ops",))
    for path in PACKAGE.iterdir():
        if path.name in ("__init__.py", "py.typed", "__pycache__"):
            continue
        assert path.stem in known, f"mailpixel/{path.name} is neither a function, shared code nor ops"


def test_the_zip_leaves_out_ops_and_nothing_else_by_name():
    text = (ROOT / "serverless.yml").read_text()
    patterns = text.split("package:", 1)[1].split("functions:", 1)[0]
    assert "'!mailpixel/ops/**'" in patterns
    assert patterns.count("'!mailpixel/") == 2  # ops/ and __pycache__: no hand-kept list of files
