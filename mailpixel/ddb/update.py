"""UpdateItem / TransactWriteItems `Update` builders: placeholders for every name and value, so
attribute names chosen by data (counters such as `client:Apple Mail`) are always safe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def update(
    table: str,
    key: Mapping[str, Any],
    *,
    sets: Mapping[str, dict[str, Any]] = {},  # noqa: B006 - read only
    set_if_missing: Mapping[str, dict[str, Any]] = {},  # noqa: B006 - read only
    adds: Sequence[str] | Mapping[str, int] = (),
    removes: Sequence[str] = (),
    condition: str | None = None,
    condition_names: Mapping[str, str] = {},  # noqa: B006 - read only
    condition_values: Mapping[str, dict[str, Any]] = {},  # noqa: B006 - read only
) -> dict[str, Any]:
    """Arguments of one update: SET each of `sets`, SET each of `set_if_missing` unless present,
    ADD 1 to each of `adds` (or, given a mapping, its amount), REMOVE each of `removes`, under
    `condition` (which may use its own `#`/`:` placeholders, given in `condition_names` /
    `condition_values`)."""
    names: dict[str, str] = dict(condition_names)
    values: dict[str, Any] = dict(condition_values)
    set_parts: list[str] = []
    for i, (name, value) in enumerate(sets.items()):
        names[f"#s{i}"], values[f":s{i}"] = name, value
        set_parts.append(f"#s{i} = :s{i}")
    for i, (name, value) in enumerate(set_if_missing.items()):
        names[f"#m{i}"], values[f":m{i}"] = name, value
        set_parts.append(f"#m{i} = if_not_exists(#m{i}, :m{i})")
    clauses = [f"SET {', '.join(set_parts)}"] if set_parts else []
    if adds:
        amounts = adds if isinstance(adds, Mapping) else dict.fromkeys(adds, 1)
        add_parts = []
        for i, (name, amount) in enumerate(amounts.items()):
            names[f"#a{i}"], values[f":a{i}"] = name, {"N": str(amount)}
            add_parts.append(f"#a{i} :a{i}")
        clauses.append("ADD " + ", ".join(add_parts))
    if removes:
        for i, name in enumerate(removes):
            names[f"#r{i}"] = name
        clauses.append("REMOVE " + ", ".join(f"#r{i}" for i in range(len(removes))))
    args: dict[str, Any] = {
        "TableName": table,
        "Key": dict(key),
        "UpdateExpression": " ".join(clauses),
        "ExpressionAttributeNames": names,
    }
    if values:
        args["ExpressionAttributeValues"] = values
    if condition:
        args["ConditionExpression"] = condition
    return args
