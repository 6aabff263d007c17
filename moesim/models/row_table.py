"""Reading a published table's `[[row]]` data file strictly: every field present with its type, no unknown
fields, errors naming the file and the row's field (tests/data/b200, tests/data/bridge_perf)."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path

from moesim.errors import SpecError


def read_rows(path: Path, what: str) -> list[dict]:
    """The `[[row]]` tables of `path` (`what` names the table in the error)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"cannot read {what}: {exc}", file=str(path)) from exc
    rows = raw.get("row")
    if not isinstance(rows, list) or not rows:
        raise SpecError("no [[row]] tables", file=str(path), field="row")
    return rows


def typed_fields(raw: dict, fields: dict[str, type], where: str, path: Path) -> dict:
    """`raw`'s values for exactly `fields` (name -> int, float, bool, str or list), lists as tuples, ints given
    for floats as floats; a missing, mistyped or unknown field is a SpecError naming `where`.name."""
    values = {}
    for name, kind in fields.items():
        if name not in raw:
            raise SpecError(f"{where} has no '{name}'", file=str(path), field=f"{where}.{name}")
        value = raw[name]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise SpecError(f"{where}.{name} must be {kind.__name__}", file=str(path), field=f"{where}.{name}",
                            value=value)
        values[name] = tuple(value) if kind is list else (float(value) if kind is float else value)
    extra = sorted(set(raw) - set(fields))
    if extra:
        raise SpecError(f"{where} has unknown fields {extra}", file=str(path), field=where, allowed=sorted(fields))
    return values


def row_fields(row_class) -> dict[str, type]:
    """A frozen row dataclass's fields as `typed_fields` reads them, in declaration order: each annotation's type,
    a `tuple[...]` field read as a TOML list."""
    hints = typing.get_type_hints(row_class)
    return {f.name: list if typing.get_origin(hints[f.name]) is tuple else hints[f.name]
            for f in dataclasses.fields(row_class)}
