"""mkdocs hook: pages made at build time from files that live outside docs/.

- `stats/api-reference.md`, the API reference, rendered from `openapi.yaml` into Markdown, so
  the site shows the API without Swagger UI or ReDoc (both load their code from a CDN, and the
  site must work offline). The YAML file stays the one source: the page is never written to disk.
- `openapi.yaml` itself, copied as it is, for clients and code generators.
- `BENCHMARKS.md`, the benchmark record, which stays at the top of the repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    spec_text = (ROOT / "openapi.yaml").read_text(encoding="utf-8")
    spec = yaml.safe_load(spec_text)
    files.append(File.generated(config, "stats/api-reference.md", content=render(spec)))
    files.append(File.generated(config, "openapi.yaml", content=spec_text))
    benchmarks = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "BENCHMARKS.md", content=benchmarks))
    return files


def cell(text: Any) -> str:
    """One table cell: no line breaks, no stray pipes."""
    return " ".join(str(text).split()).replace("|", "\\|") if text is not None else ""


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (`#/components/...`) to what it names."""
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref.startswith("#/components/schemas/") else None


def type_of(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    """A short, readable type: `string`, `integer (1–1000)`, [`Counts`](#schema-counts), ..."""
    name = ref_name(schema)
    if name:
        return f"[`{name}`](#schema-{name.lower()})"
    for combinator in ("oneOf", "anyOf", "allOf"):
        if combinator in schema:
            joiner = " and " if combinator == "allOf" else " or "
            return joiner.join(type_of(spec, s) for s in schema[combinator])
    kind = schema.get("type", "object" if "properties" in schema else "")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "object" and 0 < len(schema.get("properties", {})) <= 6:
        kind = "object with " + ", ".join(f"`{name}`" for name in schema["properties"])
    if kind == "array" and "items" in schema:
        kind = f"array of {type_of(spec, schema['items'])}"
    extras = []
    if "enum" in schema:
        extras.append(", ".join(f"`{json.dumps(v)}`" for v in schema["enum"]))
    if "format" in schema:
        extras.append(schema["format"])
    if "minimum" in schema and "maximum" in schema:
        extras.append(f"{schema['minimum']}–{schema['maximum']}")
    elif "minimum" in schema:
        extras.append(f"≥ {schema['minimum']}")
    elif "maximum" in schema:
        extras.append(f"≤ {schema['maximum']}")
    if "maxLength" in schema:
        extras.append(f"at most {schema['maxLength']} characters")
    if "default" in schema:
        extras.append(f"default `{json.dumps(schema['default'])}`")
    return f"{kind} ({'; '.join(extras)})" if extras else str(kind)


def render(spec: dict[str, Any]) -> str:
    info = spec["info"]
    out = [
        "# API reference",
        "",
        f"Rendered at build time from [`openapi.yaml`](../openapi.yaml) (OpenAPI {spec['openapi']},"
        f" version {info['version']}), the file a test keeps in step with the app's routes. The"
        " [query API](query-api.md) page says how to call it.",
        "",
        info.get("description", "").strip(),
        "",
    ]
    for scheme_name, scheme in spec.get("components", {}).get("securitySchemes", {}).items():
        how = cell(scheme.get("description", scheme.get("scheme", "")))
        out += [f"**Authentication** (`{scheme_name}`): {how}", ""]
    out += ["## Operations", "", "| method | path | summary |", "| --- | --- | --- |"]
    operations = [
        (path, method, item[method])
        for path, item in spec["paths"].items()
        for method in METHODS
        if method in item
    ]
    for path, method, op in operations:
        link = f"[`{path}`](#{anchor(method, path)})"
        out.append(f"| `{method.upper()}` | {link} | {cell(op.get('summary'))} |")
    out.append("")
    for path, method, op in operations:
        out += operation(spec, path, method, op, spec["paths"][path])
    out += ["## Schemas", ""]
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        out += schema_section(spec, name, schema)
    return "\n".join(out).rstrip() + "\n"


def anchor(method: str, path: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in path.lower()).strip("-")
    return f"{method}-{slug}"


def operation(
    spec: dict[str, Any], path: str, method: str, op: dict[str, Any], item: dict[str, Any]
) -> list[str]:
    out = [f"### `{method.upper()} {path}` {{ #{anchor(method, path)} }}", ""]
    if op.get("summary"):
        out += [op["summary"], ""]
    if op.get("description"):
        out += [op["description"].strip(), ""]
    secured = op.get("security", spec.get("security"))
    out += ["*Authentication:* " + ("a bearer API key." if secured else "none."), ""]
    params = [resolve(spec, p) for p in item.get("parameters", []) + op.get("parameters", [])]
    if params:
        out += ["| parameter | in | type | required | description |", "| --- | --- | --- | --- | --- |"]
        for p in params:
            required = "yes" if p.get("required") else ""
            kind = type_of(spec, p.get("schema", {}))
            out.append(f"| `{p['name']}` | {p['in']} | {kind} | {required} | {cell(p.get('description'))} |")
        out.append("")
    body = op.get("requestBody")
    if body:
        body = resolve(spec, body)
        for media, content in body.get("content", {}).items():
            kind = type_of(spec, content.get("schema", {}))
            out += [f"*Request body* (`{media}`): {kind}. {cell(body.get('description'))}", ""]
    out += ["| status | response | body |", "| --- | --- | --- |"]
    for status, response in op.get("responses", {}).items():
        response = resolve(spec, response)
        bodies = [
            f"`{media}`: {type_of(spec, content['schema'])}" if "schema" in content else f"`{media}`"
            for media, content in response.get("content", {}).items()
        ]
        out.append(f"| `{status}` | {cell(response.get('description'))} | {'; '.join(bodies)} |")
    out.append("")
    # An answer's fields when its schema is written inline rather than named under schemas.
    for status, response in op.get("responses", {}).items():
        for media, content in resolve(spec, response).get("content", {}).items():
            schema = content.get("schema", {})
            if "properties" in schema:
                out += [f"`{status}` body (`{media}`):", ""] + fields(spec, schema)
    return out


def fields(spec: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """A table of an object schema's properties."""
    required = set(schema.get("required", []))
    out = ["| field | type | required | description |", "| --- | --- | --- | --- |"]
    for prop, prop_schema in schema.get("properties", {}).items():
        flag = "yes" if prop in required else ""
        kind = type_of(spec, prop_schema)
        out.append(f"| `{prop}` | {kind} | {flag} | {cell(prop_schema.get('description'))} |")
    return [*out, ""]


def schema_section(spec: dict[str, Any], name: str, schema: dict[str, Any]) -> list[str]:
    out = [f"### `{name}` {{ #schema-{name.lower()} }}", ""]
    if schema.get("description"):
        out += [schema["description"].strip(), ""]
    parts = schema.get("allOf", [schema])
    properties: dict[str, Any] = {}
    required: set[str] = set()
    for part in parts:
        if ref_name(part):
            out += [f"Everything in {type_of(spec, part)}, and:", ""]
            continue
        properties.update(part.get("properties", {}))
        required.update(part.get("required", []))
    if properties:
        out += fields(spec, {"properties": properties, "required": sorted(required)})
    elif "allOf" not in schema:
        out += [f"Type: {type_of(spec, schema)}.", ""]
    return out
