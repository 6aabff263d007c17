"""The NCCL constants of moesim/collectives/nccl_tuning.toml, read once (nccl.py and its helper modules read them
through `tuning()`; nccl.tuning is the same function).

The NCCL version as a fact of the run (issue 11, session 12 ncclver): inside `at_version("2.26.2")` (TopologyModel
prices every collective of a model with nccl_version set inside it) `tuning()` is the file's tables with each
[versioned."path"] table's row for that release put at `path`; unset ("") it is the file as it stands (today's
tables, bit-identical). The rows are generated from NVIDIA/nccl at each release tag by
scripts/nccl_version_inventory.py --rows (docs/collectives-history.md "Session 12 (ncclver)")."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

from moesim.errors import SpecError
from moesim.paths import read_versioned_toml

_TUNING = Path(__file__).with_name("nccl_tuning.toml")
_VERSION: ContextVar[str] = ContextVar("moesim_nccl_version", default="")
ABSENT = "absent"  # a row's value where the release has no such constant: the file's own value is kept


@lru_cache(maxsize=1)
def _file() -> dict:
    return read_versioned_toml(_TUNING)


def tuning() -> dict:
    """The NCCL constants (nccl_tuning.toml, checked for its schema version once), at the NCCL version in force
    (at_version; unset: the file's own tables)."""
    version = _VERSION.get()
    return _file() if not version else _at(version)


def releases() -> tuple[str, ...]:
    """The NCCL releases a version may name (nccl_tuning.toml [versions] releases: every tag read), oldest first."""
    return tuple(_file()["versions"]["releases"])


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def check_version(version: str, field: str = "nccl_version") -> str:
    """`version` ("2.26.2") if it is one of releases(), else one SpecError naming the allowed releases; "" = unset."""
    if version == "":
        return version
    known = releases()
    if not isinstance(version, str) or version not in known:
        raise SpecError(f"unsupported NCCL version {version!r}: moesim's version-keyed tables hold the NCCL releases "
                        f"{known[0]} - {known[-1]} (x.y.z, a release tag)", field=field, value=version, allowed=known)
    return version


def row_for(path: str, version: str):
    """The value of [versioned."path"] at `version` (a release), ABSENT where that release lacks the constant, None
    where `path` is not version-keyed."""
    table = _file()["versioned"].get(path)
    if table is None:
        return None
    v = _key(version)
    for first, last, value in table["rows"]:
        if _key(first) <= v <= _key(last):
            return value
    raise SpecError(f"nccl_tuning.toml [versioned.\"{path}\"]: no row holds NCCL {version}", field="nccl_version",
                    value=version)


@lru_cache(maxsize=None)
def _at(version: str) -> dict:
    """The file's tables with every version-keyed row of `version` in place (a copy; the file's dict untouched)."""
    check_version(version)
    t = copy.deepcopy(_file())
    for path in t["versioned"]:
        value = row_for(path, version)
        if value == ABSENT:
            continue
        *parents, leaf = path.split(".")
        node = t
        for name in parents:
            node = node[name]
        node[leaf] = value
    return t


def active_version() -> str:
    """The NCCL version in force ("" = the file's own tables): a key for caches of values read from tuning()."""
    return _VERSION.get()


@contextmanager
def at_version(version: str):
    """Price at NCCL `version` (a release, checked) for the duration; "" leaves the file's own tables."""
    token = _VERSION.set(check_version(version))
    try:
        yield
    finally:
        _VERSION.reset(token)
