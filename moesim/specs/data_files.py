"""Reading data files: parsing TOML / YAML / JSON, resolving built-in names to files, naming the file in errors.

The plumbing every spec reader shares (moesim/specs/model_file.py, hardware_file.py, scenario_file.py):
the schema version they check, the suffixes they read, and the strict list readers for keys whose
values come from a fixed set.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from moesim.errors import SpecError
from moesim.paths import builtin_dir, builtin_names, path_problem, read_text_file
from moesim.specs.fields import Table

SCHEMA_VERSION = 1
DATA_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def read_data_file(path: Path) -> dict[str, Any]:
    """Parse a TOML, YAML or JSON file into a dict; syntax errors become SpecErrors naming the file."""
    text = read_text_file(path)
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise SpecError(f"unknown file type '{path.suffix}'", file=str(path), allowed=DATA_SUFFIXES)
    except SpecError:
        raise
    except RecursionError:
        raise SpecError(f"not valid {path.suffix[1:].upper()} here: nested too deeply", file=str(path)) from None
    except Exception as err:  # every parser's syntax error, reported with the file name, on one line
        message = " ".join(str(err).split())
        raise SpecError(f"not valid {path.suffix[1:].upper()}: {message}", file=str(path)) from None
    if not isinstance(data, dict):
        raise SpecError("the file must hold a table of keys at the top level", file=str(path))
    return data


def resolve_ref(ref: str | Path, kind: str, *, relative_to: Path | None = None, field: str | None = None) -> Path:
    """A built-in name of `kind` (models, hardware_profiles, scenarios) or a path to a file."""
    ref_text = str(ref)
    candidate = Path(ref_text)
    problem = path_problem(candidate)
    if problem:
        raise SpecError(f"cannot read: {problem}", file=ref_text[:80] + ("..." if len(ref_text) > 80 else ""),
                        field=field or _key(kind))
    near = None
    if relative_to is not None and not candidate.is_absolute():
        near = relative_to / candidate
        if near.suffix in DATA_SUFFIXES and near.is_file():
            return near
    if candidate.suffix in DATA_SUFFIXES or "/" in ref_text or candidate.is_file():
        if candidate.is_file():
            return candidate
        if near is not None and not (field or "").startswith("--") and not near.exists() and not candidate.exists():
            # a path a file names (a scenario's model or hardware): the error is that file's, at its key
            raise SpecError(f"no such file '{ref_text}' (looked for {os.path.abspath(near)}, beside this file, "
                            "and in the current folder)", field=field or _key(kind))
        read_text_file(candidate, field=field or _key(kind))  # names the problem: a directory, no such file
        raise SpecError(f"no such file: {ref_text}", file=ref_text, field=field)
    directory = builtin_dir(kind)
    for suffix in DATA_SUFFIXES:
        path = directory / f"{ref_text}{suffix}"
        if path.is_file():
            return path
    if candidate.is_dir():  # no built-in of that name, a folder of it (a HuggingFace checkpoint): the read names it
        read_text_file(candidate, field=field or _key(kind))
    near = closest_name(ref_text, builtin_names(kind))
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise SpecError(f"unknown {kind.rstrip('s').replace('_', ' ')} '{ref_text}'{hint}", field=field or _key(kind),
                    value=ref_text, allowed=builtin_names(kind) or "none shipped")


def _key(kind: str) -> str:
    """The key a file or the command line names a `kind` by: model, hardware, scenario (never 'hardware_profile')."""
    return {"hardware_profiles": "hardware"}.get(kind, kind.rstrip("s"))


def closest_name(typed: str, names) -> list[str]:
    """The built-in name to suggest for `typed`: the shortest that starts with it ('h100' -> 'h100-sxm', 'gb200' ->
    'gb200-nvl72', where difflib's ratio says 'h800' / 'b200'), else difflib's closest; [] if none is close."""
    started = sorted((n for n in names if typed and n.lower().startswith(typed.lower())), key=lambda n: (len(n), n))
    return started[:1] or difflib.get_close_matches(typed, list(names), n=1)


def with_file(path: Path, build):
    """Run `build`; a SpecError without a file gets this one."""
    try:
        return build()
    except SpecError as err:
        raise err.in_file(str(path)) from None


def str_list(t: Table, key: str, allowed: tuple, default: list) -> list:
    """The list at `key` (default `default`); an entry outside `allowed` is an error naming it."""
    values = t.opt(key, list, default)
    for v in values:
        if v not in allowed:
            raise t.error(key, f"'{v}' is not allowed", value=v, allowed=allowed)
    return values


def int_list(t: Table, key: str, default: list) -> list:
    """The list of integers at `key` (default `default`); anything else (a bool included) is an error."""
    values = t.opt(key, list, default)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise t.error(key, "expected a list of integers", value=values)
    return values
