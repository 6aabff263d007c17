"""Strict reading of one table (dict) from a data file.

Every data file is read through `Table`: missing keys, unknown keys, wrong types and renamed
keys are errors that name the file and the dotted key path. Nothing is silently ignored.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

from moesim.errors import SpecError
from moesim.specs.count_hint import integer_hint

_NUMBER = (int, float)
_MISSING = object()


def _type_name(kind: object) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list", dict: "table"}
    if isinstance(kind, tuple):
        return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kind))
    return names.get(kind, getattr(kind, "__name__", str(kind)))


# When a list, every key a loader asks for is appended as (file, table path, key, kind, default, allowed):
# docs/make_keys.py records the loaders reading the shipped files to generate the key reference.
RECORDER: list | None = None


def _record(table: "Table", key: str, kind: Any, default: Any, allowed: Any = None) -> None:
    if RECORDER is not None:
        path = "".join(c for c in table.path if not c.isdigit()).replace("[]", "")
        RECORDER.append((table.file, path, key, kind, default, allowed))


class Table:
    """A dict read strictly: every key must be consumed, known and of the right type."""

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        file: str,
        path: str = "",
        renamed: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"expected a table, got {type(data).__name__}", file=file, field=path or None)
        self.data = dict(data)
        self.file = file
        self.path = path
        self.renamed = dict(renamed or {})
        self._used: set[str] = set()
        self._asked: set[str] = set()  # keys the loader looked for (has()): allowed, even when absent

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | None, message: str, *, value: object = None, allowed: Any = None) -> SpecError:
        return SpecError(
            message, file=self.file, field=self.key_path(key) if key else (self.path or None),
            value=value, allowed=allowed,
        )

    def has(self, key: str) -> bool:
        self._asked.add(key)
        _record(self, key, None, _MISSING)
        return key in self.data

    def _get(self, key: str, kind: Any, default: Any) -> Any:
        self._used.add(key)
        _record(self, key, kind, default)
        if key not in self.data:
            if default is _MISSING:
                near = difflib.get_close_matches(key, [k for k in self.data if k not in self._used], n=1)
                hint = f" (is '{near[0]}' a misspelling?)" if near else ""
                raise self.error(key, f"required key is missing{hint}")
            return default
        value = self.data[key]
        if kind is float or kind == _NUMBER:
            ok = isinstance(value, _NUMBER) and not isinstance(value, bool)
            if ok and isinstance(value, int) and abs(value) > 2**1023:  # no float holds it (OverflowError)
                raise self.error(key, f"{float('inf') if value > 0 else float('-inf')}: too large for a number",
                                 value=value)
            value = float(value) if ok else value
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is bool:
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            hint = integer_hint(key, value) if kind is int else ""  # "32K": the integer it probably meant
            raise self.error(key, f"expected {_type_name(kind)}, got {value!r}{hint}", value=value)
        return value

    def req(self, key: str, kind: Any) -> Any:
        """A required value of type `kind` (float accepts integers)."""
        return self._get(key, kind, _MISSING)

    def opt(self, key: str, kind: Any, default: Any = None) -> Any:
        """An optional value of type `kind`, `default` when absent."""
        return self._get(key, kind, default)

    def choice(self, key: str, allowed: Iterable[str], default: Any = _MISSING) -> str:
        """A string that must be one of `allowed`."""
        allowed = tuple(allowed)
        _record(self, key, str, default, allowed)
        value = self._get(key, str, default)
        if value not in allowed and not (default is not _MISSING and value == default):
            raise self.error(key, f"'{value}' is not allowed", value=value, allowed=allowed)
        return value

    def sub(self, key: str, *, required: bool = True, renamed: Mapping[str, str] | None = None) -> "Table | None":
        """A nested table, read strictly in turn."""
        value = self._get(key, dict, _MISSING if required else None)
        if value is None:
            return None
        return Table(value, file=self.file, path=self.key_path(key), renamed=renamed)

    def sub_list(self, key: str, *, required: bool = True) -> list["Table"]:
        """A list of tables (TOML array of tables)."""
        value = self._get(key, list, _MISSING if required else [])
        tables = []
        for i, item in enumerate(value):
            tables.append(Table(item, file=self.file, path=f"{self.key_path(key)}[{i}]"))
        return tables

    def finish(self, allowed: Iterable[str] | None = None) -> None:
        """Fail on any key that was not read: unknown, misspelt or renamed. The error lists the keys this
        table allows (`allowed`, from the spec; default: every key the loader asked for) and the closest."""
        known = sorted(set(allowed) if allowed is not None else self._used | self._asked)
        for key in self.data:
            if key in self._used or (allowed is not None and key in known):
                continue
            if key in self.renamed:
                raise self.error(key, f"key '{key}' is now '{self.renamed[key]}'")
            near = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise self.error(key, f"unknown key{hint}", value=key, allowed=known or "no keys here")


# The keys that tell a data file's kind, and where each kind goes: a file given in another kind's place (a model where
# a scenario goes) is refused by what it is, not by the first key it lacks ("field 'model': required key is missing
# (is 'd_model' a misspelling?)").
FILE_KINDS = {
    "scenario": (("model", "hardware", "devices"), "a scenario goes to moesim estimate / search / simulate / report"),
    "model": (("architecture", "attention"), 'a model goes to moesim model, or to model = "FILE" in a scenario'),
    "hardware profile": (("chip", "interconnect"),
                         'a hardware profile goes to --hardware, or to hardware = "FILE" in a scenario'),
    # a checkpoint's config.json (moesim/models/hf.py reads it where a model goes; it has no schema_version)
    "HuggingFace model config": (("model_type",),
                                 'a config.json goes to moesim model, or to model = "FILE" in a scenario'),
}


def check_file_kind(table: Table, expected: str) -> None:
    """Refuse a whole file (not a nested table) that holds every key of another kind in FILE_KINDS and none of
    `expected`'s, naming what it is and where it goes."""
    if table.path:
        return
    own = FILE_KINDS[expected][0]  # called before check_schema_version: a config.json has none
    for kind, (keys, where) in FILE_KINDS.items():
        if kind != expected and all(k in table.data for k in keys) and not any(k in table.data for k in own):
            raise SpecError(f"is a {kind} file, not a {expected} file: {where}", file=table.file,
                            allowed=f"a {expected} file or a built-in {expected} name")


def check_schema_version(table: Table, supported: int) -> int:
    """Every data file carries `schema_version`; only `supported` is read."""
    version = table.req("schema_version", int)
    if version != supported:
        raise table.error("schema_version", f"version {version} is not supported", value=version,
                          allowed=(supported,))
    return version
