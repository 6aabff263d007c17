"""Sweep configuration: frozen dataclasses and a strict TOML parser (no torch here).

A sweep file has an optional ``[defaults]`` table (applied to every ``[[layer]]`` entry), any number
of ``[[layer]]`` entries and any number of ``[[collective]]`` entries. In a ``[[layer]]`` entry the
fields listed in :data:`LAYER_LIST_FIELDS` may be lists; the entry then expands to the Cartesian
product. Every error names the file, the entry and the field. See ``validate/README.md``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the tomli backport (a moesim dependency there)
    import tomli as tomllib

DTYPES = ("float32", "bfloat16")
CAPACITY_RULES = ("switch", "megatron")
COLLECTIVE_OPS = ("all_to_all_single", "all_reduce", "all_gather", "reduce_scatter")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


@dataclass(frozen=True)
class LayerConfig:
    """One Switch MoE layer measurement (one JSONL ``switch_layer`` record)."""

    name: str
    tokens_per_rank: int
    d_model: int
    d_ff: int
    experts_per_rank: int
    world_size: int
    top_k: int = 1
    capacity_factor: float = 1.25
    capacity_rule: str = "switch"
    min_capacity: int = 1
    ep_size: int | None = None
    dtype: str = "float32"
    normalize_gates: bool = False
    aux_loss_coef: float = 0.01
    warmup: int = 2
    repeats: int = 10
    seed: int = 0

    @property
    def ep(self) -> int:
        """Expert-parallel degree (defaults to the whole world)."""
        return self.world_size if self.ep_size is None else self.ep_size

    @property
    def dp(self) -> int:
        """Data-parallel degree of the experts: world = ep * dp."""
        return self.world_size // self.ep

    @property
    def num_experts(self) -> int:
        """Total experts E = ep * experts_per_rank (expert e lives on ep-rank e // experts_per_rank)."""
        return self.ep * self.experts_per_rank

    @property
    def capacity(self) -> int:
        """Per-expert capacity per source rank (see :func:`expert_capacity`)."""
        return expert_capacity(self.tokens_per_rank, self.top_k, self.capacity_factor,
                               self.num_experts, self.capacity_rule, self.min_capacity)


@dataclass(frozen=True)
class CollectiveConfig:
    """One collective micro-benchmark: one op over a sweep of message sizes."""

    name: str
    op: str
    sizes_bytes: tuple[int, ...]
    dtype: str = "float32"
    warmup: int = 3
    repeats: int = 10
    world_size: int | None = None


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file."""

    path: str
    layers: tuple[LayerConfig, ...]
    collectives: tuple[CollectiveConfig, ...]


def expert_capacity(tokens_per_rank: int, top_k: int, capacity_factor: float, num_experts: int,
                    rule: str = "switch", min_capacity: int = 1) -> int:
    """Expert capacity per source rank, capped at ``tokens_per_rank``.

    ``switch``: floor(T*k*CF/E) -- Switch Eq. 3 / App. F per-core ``tokens_per_core*CF/E``
    (Mesh-TF ``int(...)``); ``megatron``: ceil(T*k*CF/E) -- Megatron-Core ``get_capacity``.
    The factor is taken as an exact decimal so that e.g. 1.1 does not floor to one slot less.
    """
    if rule not in CAPACITY_RULES:
        raise ValueError(f"capacity rule must be one of {CAPACITY_RULES}, got {rule!r}")
    raw = Fraction(tokens_per_rank * top_k) * Fraction(str(capacity_factor)) / num_experts
    cap = math.floor(raw) if rule == "switch" else math.ceil(raw)
    return min(tokens_per_rank, max(cap, min_capacity))


def collective_sizes(min_bytes: int, max_bytes: int) -> tuple[int, ...]:
    """Powers-of-two message sizes from ``min_bytes`` to ``max_bytes`` inclusive."""
    sizes, s = [], min_bytes
    while s <= max_bytes:
        sizes.append(s)
        s *= 2
    return tuple(sizes)


# --------------------------------------------------------------------------------------------
# parsing helpers

LAYER_LIST_FIELDS = ("tokens_per_rank", "d_model", "d_ff", "experts_per_rank", "top_k",
                     "capacity_factor", "dtype", "world_size", "ep_size", "capacity_rule")
_LAYER_FIELDS = {f.name for f in fields(LayerConfig)}
_LAYER_REQUIRED = ("tokens_per_rank", "d_model", "d_ff", "experts_per_rank", "world_size")
_COLLECTIVE_KEYS = ("name", "ops", "min_bytes", "max_bytes", "sizes_bytes", "dtype", "warmup",
                    "repeats", "world_size")


class _Where:
    """Formats 'file: [[layer]] #i (name): field' prefixes for error messages."""

    def __init__(self, path: str, table: str, index: int | None = None, name: str | None = None):
        self.prefix = f"{path}: [{table}]" if index is None else f"{path}: [[{table}]] #{index}"
        if name:
            self.prefix += f" ({name!r})"

    def err(self, field: str, msg: str) -> ValueError:
        return ValueError(f"{self.prefix}: field '{field}' {msg}")


def _int(where: _Where, field: str, value: Any, lo: int, hi: int | None = None) -> int:
    if type(value) is not int:
        raise where.err(field, f"must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise where.err(field, f"must be {rng}, got {value}")
    return value


def _choice(where: _Where, field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise where.err(field, f"must be one of {list(allowed)}, got {value!r}")
    return value


def _positive_float(where: _Where, field: str, value: Any, allow_zero: bool = False) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise where.err(field, f"must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise where.err(field, f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)


def _check_layer(where: _Where, raw: dict[str, Any]) -> LayerConfig:
    """Validate one fully expanded layer entry (scalars only) and build a LayerConfig."""
    for req in _LAYER_REQUIRED:
        if req not in raw:
            raise where.err(req, "is required")
    name = raw.get("name", "layer")
    if not isinstance(name, str) or not name:
        raise where.err("name", f"must be a non-empty string, got {name!r}")
    world = _int(where, "world_size", raw["world_size"], 1)
    ep = raw.get("ep_size")
    if ep is not None:
        ep = _int(where, "ep_size", ep, 1, world)
        if world % ep:
            raise where.err("ep_size", f"must divide world_size={world}, got {ep}")
    epr = _int(where, "experts_per_rank", raw["experts_per_rank"], 1)
    num_experts = (world if ep is None else ep) * epr
    nz = raw.get("normalize_gates", False)
    if not isinstance(nz, bool):
        raise where.err("normalize_gates", f"must be true or false, got {nz!r}")
    cfg = LayerConfig(
        name=name,
        tokens_per_rank=_int(where, "tokens_per_rank", raw["tokens_per_rank"], 1),
        d_model=_int(where, "d_model", raw["d_model"], 1),
        d_ff=_int(where, "d_ff", raw["d_ff"], 1),
        experts_per_rank=epr,
        world_size=world,
        top_k=_int(where, "top_k", raw.get("top_k", 1), 1, num_experts),
        capacity_factor=_positive_float(where, "capacity_factor", raw.get("capacity_factor", 1.25)),
        capacity_rule=_choice(where, "capacity_rule", raw.get("capacity_rule", "switch"),
                              CAPACITY_RULES),
        min_capacity=_int(where, "min_capacity", raw.get("min_capacity", 1), 0),
        ep_size=ep,
        dtype=_choice(where, "dtype", raw.get("dtype", "float32"), DTYPES),
        normalize_gates=nz,
        aux_loss_coef=_positive_float(where, "aux_loss_coef", raw.get("aux_loss_coef", 0.01),
                                      allow_zero=True),
        warmup=_int(where, "warmup", raw.get("warmup", 2), 0),
        repeats=_int(where, "repeats", raw.get("repeats", 10), 1),
        seed=_int(where, "seed", raw.get("seed", 0), 0, 2**31 - 1),
    )
    return cfg


def _expand_layer(path: str, index: int, entry: Any, defaults: dict[str, Any]) -> list[LayerConfig]:
    name = entry.get("name") if isinstance(entry, dict) else None
    where = _Where(path, "layer", index, name)
    if not isinstance(entry, dict):
        raise ValueError(f"{where.prefix}: must be a table, got {entry!r}")
    merged = {**defaults, **entry}
    for key in merged:
        if key not in _LAYER_FIELDS:
            raise where.err(key, f"is not a layer field; allowed: {sorted(_LAYER_FIELDS)}")
    swept = []
    for key, value in merged.items():
        if isinstance(value, list):
            if key not in LAYER_LIST_FIELDS:
                raise where.err(key, f"may not be a list; list-valued fields: {list(LAYER_LIST_FIELDS)}")
            if not value:
                raise where.err(key, "is an empty list")
            swept.append(key)
    out = []
    for combo in itertools.product(*(merged[k] for k in swept)):
        raw = dict(merged)
        raw.update(zip(swept, combo))
        if swept:
            base = raw.get("name", "layer")
            raw["name"] = base + "[" + ",".join(f"{k}={v}" for k, v in zip(swept, combo)) + "]"
        out.append(_check_layer(where, raw))
    return out


def _parse_collective(path: str, index: int, entry: Any) -> list[CollectiveConfig]:
    name = entry.get("name") if isinstance(entry, dict) else None
    where = _Where(path, "collective", index, name)
    if not isinstance(entry, dict):
        raise ValueError(f"{where.prefix}: must be a table, got {entry!r}")
    for key in entry:
        if key not in _COLLECTIVE_KEYS:
            raise where.err(key, f"is not a collective field; allowed: {list(_COLLECTIVE_KEYS)}")
    name = entry.get("name", "collectives")
    if not isinstance(name, str) or not name:
        raise where.err("name", f"must be a non-empty string, got {name!r}")
    ops = entry.get("ops", list(COLLECTIVE_OPS))
    if not isinstance(ops, list) or not ops:
        raise where.err("ops", f"must be a non-empty list from {list(COLLECTIVE_OPS)}, got {ops!r}")
    for op in ops:
        _choice(where, "ops", op, COLLECTIVE_OPS)
    if "sizes_bytes" in entry:
        if "min_bytes" in entry or "max_bytes" in entry:
            raise where.err("sizes_bytes", "cannot be combined with min_bytes/max_bytes")
        sizes = entry["sizes_bytes"]
        if not isinstance(sizes, list) or not sizes:
            raise where.err("sizes_bytes", f"must be a non-empty list of integers, got {sizes!r}")
        sizes = tuple(_int(where, "sizes_bytes", s, 1) for s in sizes)
    else:
        lo = _int(where, "min_bytes", entry.get("min_bytes", 1024), 1)
        hi = _int(where, "max_bytes", entry.get("max_bytes", 16 * 2**20), lo)
        sizes = collective_sizes(lo, hi)
    world = entry.get("world_size")
    worlds = world if isinstance(world, list) else [world]
    out = []
    for w in worlds:
        for op in ops:
            out.append(CollectiveConfig(
                name=name if len(worlds) == 1 else f"{name}[world_size={w}]",
                op=op,
                sizes_bytes=sizes,
                dtype=_choice(where, "dtype", entry.get("dtype", "float32"), DTYPES),
                warmup=_int(where, "warmup", entry.get("warmup", 3), 0),
                repeats=_int(where, "repeats", entry.get("repeats", 10), 1),
                world_size=None if w is None else _int(where, "world_size", w, 1),
            ))
    return out


def parse_sweep(text: str, path: str = "<string>") -> Sweep:
    """Parse sweep TOML text; ``path`` is used in error messages only."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    allowed = ("defaults", "layer", "collective")
    for key in doc:
        if key not in allowed:
            raise ValueError(f"{path}: unknown top-level key {key!r}; allowed: {list(allowed)}")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ValueError(f"{path}: [defaults] must be a table")
    for key in defaults:
        if key not in _LAYER_FIELDS or key == "name":
            raise _Where(path, "defaults").err(key, f"is not a layer field; allowed: "
                                                    f"{sorted(_LAYER_FIELDS - {'name'})}")
    for key in ("layer", "collective"):
        if key in doc and not isinstance(doc[key], list):
            raise ValueError(f"{path}: '{key}' must be an array of tables ([[{key}]])")
    layers: list[LayerConfig] = []
    for i, entry in enumerate(doc.get("layer", [])):
        layers.extend(_expand_layer(path, i, entry, defaults))
    collectives: list[CollectiveConfig] = []
    for i, entry in enumerate(doc.get("collective", [])):
        collectives.extend(_parse_collective(path, i, entry))
    if not layers and not collectives:
        raise ValueError(f"{path}: no [[layer]] or [[collective]] entries")
    seen: dict[Any, str] = {}
    for cfg in (*layers, *collectives):
        if cfg in seen:
            raise ValueError(f"{path}: duplicate configuration {cfg.name!r} "
                             f"(identical to an earlier entry); give it a different name or seed")
        seen[cfg] = cfg.name
    return Sweep(path=path, layers=tuple(layers), collectives=tuple(collectives))


def load_sweep(path: str | Path) -> Sweep:
    """Read and parse a sweep TOML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{p}: cannot read sweep file: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: sweep file is not UTF-8 text (byte {exc.start})") from None
    return parse_sweep(text, str(p))
