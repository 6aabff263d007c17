"""Scenario fields a what-if sweep may vary: key names, value parsing, and applying a point.

Keys are dotted paths into the scenario (`training.seq_len`, `model.moe.num_experts`,
`hardware.price_per_device_hour_usd`), the whole-object keys `hardware` (a profile name or
file), `model` (a model name or file) and `devices`, `search.max_micro_batches`, the [search] lists
`search.context_parallel`, `search.pipeline_schedules`, `search.virtual_stages`, `search.cp_comms` and the degrees
`search.tensor_parallel`, `search.pipeline_parallel`, `search.expert_parallel`, the
training lists `training.cuda_graph_scope` and `training.recompute_modules` and the model's
`model.attention.layer_pattern` (one entry per value, several joined by '+', `none` the empty training list, no
pattern or every degree), or a short alias.
Options the layout search chooses itself become restrictions of its space at that point:
`training.zero_stage` and `training.recompute` pin the stage or mode, and
`training.capacity_factor` replaces any capacity factors the scenario's [search] lists.
`training.precision_recipe` sets the recipe's precision keys, as naming it in the file does (a key the
scenario sets beside its recipe keeps its value).
"""

from __future__ import annotations

import dataclasses

from moesim.errors import SpecError
from moesim.specs.count_hint import integer_hint
from moesim.specs.hardware import HardwareProfile
from moesim.specs.layout import CP_COMMS
from moesim.specs.model import ATTENTION_MASKS, AttentionSpec, ModelSpec, MoESpec
from moesim.specs.scenario import Scenario, SearchSpace
from moesim.specs.training import (CUDA_GRAPH_SCOPES, PIPELINE_SCHEDULES, PRECISION_KEYS, RECOMPUTE_MODULES,
                                   TrainingSpec)

ALIASES = {
    "experts": "model.moe.num_experts",
    "capacity_factor": "training.capacity_factor",
    "hardware": "hardware",
    "devices": "devices",
    "seq_len": "training.seq_len",
    "batch": "training.global_batch_sequences",
}
# Descriptive fields that change no figure; micro_batches is chosen by the search (vary
# search.max_micro_batches instead).
_SKIPPED = {"name", "source", "notes", "family", "description", "price_source", "calibrated_from", "device_kind",
            "micro_batches"}
_SCALAR_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "float | None": float, "int | None": int}
_GROUPS = {"model": ModelSpec, "model.moe": MoESpec, "model.attention": AttentionSpec, "training": TrainingSpec,
           "hardware": HardwareProfile}


def _scalar_fields(cls) -> dict[str, str]:
    return {f.name: f.type for f in dataclasses.fields(cls) if f.type in _SCALAR_TYPES and f.name not in _SKIPPED}


FIELD_TYPES: dict[str, str] = {"devices": "int", "hardware": "profile", "model": "model",
                               "search.max_micro_batches": "int"}
# The [search] lists a sweep may vary (whyrank, session 20): a value is one entry, or several joined by '+'
# (`search.context_parallel=1,2+4`: a point searching cp 1 only, then one searching cp 2 and 4); entries are checked
# against the values the scenario file allows (scenario_file.search_from_table) and SearchSpace's ranges.
LIST_ENTRIES: dict[str, tuple | type] = {"search.context_parallel": int, "search.virtual_stages": int,
                                         "search.pipeline_schedules": PIPELINE_SCHEDULES, "search.cp_comms": CP_COMMS,
                                         "search.tensor_parallel": int, "search.pipeline_parallel": int,
                                         "search.expert_parallel": int,
                                         "training.cuda_graph_scope": CUDA_GRAPH_SCOPES,
                                         "training.recompute_modules": RECOMPUTE_MODULES,
                                         "model.attention.layer_pattern": ATTENTION_MASKS}
LIST_JOIN = "+"
# The training lists (session 21's keys), the layer pattern and the [search] degree lists may be empty: this value is
# the empty list (no CUDA graph, no module, every layer the model's one mask, every degree the devices allow: the
# degree lists' default, session 23 newuser6)
EMPTY_LIST = "none"
EMPTY_ALLOWED = ("training.cuda_graph_scope", "training.recompute_modules", "model.attention.layer_pattern",
                 "search.tensor_parallel", "search.pipeline_parallel", "search.expert_parallel")
FIELD_TYPES.update({k: "list" for k in LIST_ENTRIES})
for _prefix, _cls in _GROUPS.items():
    FIELD_TYPES.update({f"{_prefix}.{name}": kind for name, kind in _scalar_fields(_cls).items()})
ALLOWED_KEYS = tuple(ALIASES) + tuple(k for k in FIELD_TYPES if k not in ALIASES)


def canonical_key(key: str) -> str:
    """The dotted field path of `key` (an alias or a path); SpecError naming the allowed keys."""
    path = ALIASES.get(key, key)
    if path not in FIELD_TYPES:
        hint = " (the search chooses micro_batches; vary search.max_micro_batches)" if "micro_batches" in key else ""
        raise SpecError(f"cannot vary '{key}'{hint}", field="--vary", value=key, allowed=ALLOWED_KEYS)
    return path


def parse_value(key: str, text: str) -> object:
    """`text` as a value of the field `key` names (int, float, bool, str; 'none' for optional numbers)."""
    path = canonical_key(key)
    kind = FIELD_TYPES[path]
    text = text.strip()
    where = {"field": f"--vary {key}", "value": text}
    if kind in ("profile", "model", "str"):
        if not text:
            raise SpecError("empty value", **where)
        if path == "model.moe.router_impl":  # checked here, not first where the layer is priced (mcore_moe.toml)
            from moesim.ops.mcore_moe import impl_names

            if text not in impl_names():
                raise SpecError(f"'{text}' is not allowed", **where, allowed=impl_names())
        return text
    if kind == "list":
        return _list_value(path, text, where)
    if kind.endswith("| None") and text.lower() in ("none", "null"):
        return None
    if kind == "bool":
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise SpecError(f"'{text}' is not true or false", **where, allowed=("true", "false"))
        return lowered in ("true", "1", "yes")
    try:
        return int(text) if _SCALAR_TYPES[kind] is int else float(text)
    except ValueError:
        # "32K": the integer it probably meant
        hint = integer_hint(f"--vary {key}", text, "=") if _SCALAR_TYPES[kind] is int else ""
        raise SpecError(f"'{text}' is not {'an integer' if _SCALAR_TYPES[kind] is int else 'a number'}{hint}",
                        **where) from None


def _list_value(path: str, text: str, where: dict) -> tuple:
    """`text` as the entries of the list `path` (LIST_ENTRIES): integers, or names from its allowed ones; EMPTY_LIST
    the empty list where the field may be empty (EMPTY_ALLOWED)."""
    if path in EMPTY_ALLOWED and text == EMPTY_LIST:
        return ()
    entries = [e.strip() for e in text.split(LIST_JOIN)]
    if not all(entries):
        raise SpecError(f"'{text}' has an empty entry (join several with '{LIST_JOIN}')", **where)
    allowed = LIST_ENTRIES[path]
    if allowed is int:
        try:
            return tuple(int(e) for e in entries)
        except ValueError:
            raise SpecError(f"'{text}' is not an integer (join several with '{LIST_JOIN}')", **where) from None
    for e in entries:
        if e not in allowed:
            raise SpecError(f"'{e}' is not allowed", **where,
                            allowed=allowed + ((EMPTY_LIST,) if path in EMPTY_ALLOWED else ()))
    return tuple(entries)


def value_text(value) -> str:
    """A parsed value as a sweep prints it (a [search] list's entries joined by '+')."""
    return (LIST_JOIN.join(map(str, value)) or EMPTY_LIST) if isinstance(value, tuple) else str(value)


def _replace(obj, key: str, **changes):
    try:
        return dataclasses.replace(obj, **changes)
    except SpecError as err:
        raise SpecError(f"{', '.join(f'{k}={v!r}' for k, v in changes.items())} is invalid: {err}",
                        field=f"--vary {key}", value=next(iter(changes.values()))) from None


def apply_point(scenario: Scenario, point: dict[str, object]) -> Scenario:
    """`scenario` with the fields of `point` ({key: parsed value}) replaced; SpecError naming the key."""
    from moesim.specs.load import load_hardware, load_model

    parts: dict[str, object] = {"model": scenario.model, "hardware": scenario.hardware, "devices": scenario.devices,
                                "training": scenario.training, "search": scenario.search}
    # Whole profiles and models first, then a precision recipe, so that the fields varied alongside apply on top.
    first = ("hardware", "model", "training.precision_recipe")
    model_changes: dict[str, dict[str, tuple]] = {}  # model table ("" the model, "moe", "attention") -> its fields
    for key, value in sorted(point.items(), key=lambda item: first.index(p) if (p := canonical_key(item[0])) in first
                             else len(first)):
        path = canonical_key(key)
        head, _, rest = path.partition(".")
        if path == "hardware":
            parts["hardware"] = _loaded(load_hardware, value, key)
        elif path == "model":
            parts["model"] = _loaded(load_model, value, key)
        elif path == "devices":
            parts["devices"] = value
        elif head == "search":
            parts["search"] = _replace(parts["search"], key, **{rest: value})
        elif head == "hardware":
            parts["hardware"] = _replace(parts["hardware"], key, **{rest: value})
        elif path == "training.precision_recipe":
            parts["training"] = _with_recipe(parts["training"], key, value)
        elif head == "training":
            parts["training"] = _replace(parts["training"], key, **{rest: value})
            parts["search"] = _restrict_search(parts["search"], rest, value)
        else:  # one table's fields at once: a mask and the width it needs (review22)
            group, _, name = rest.rpartition(".")
            model_changes.setdefault(group, {})[name] = (key, value)
    for group, changes in model_changes.items():
        parts["model"] = _model_with(parts["model"], ", ".join(k for k, _ in changes.values()), group,
                                     {name: value for name, (_, value) in changes.items()})
    moe = parts["model"].moe
    if any(canonical_key(k) == "training.capacity_factor" for k in point) and (moe is None or moe.dropless):
        raise SpecError(f"model {parts['model'].name} is {'dense' if moe is None else 'dropless'}: it has no capacity "
                        "factor to vary", field="--vary", value=_point_text(point))
    try:
        # the point's GEMMs need a peak on the point's chip (HardwareProfile.peak_for): said here, naming the point,
        # not from a worker mid-sweep (an FP8 recipe on TPU v3)
        parts["hardware"].chip.peak_for(parts["training"].dtype_for("gemm"))
        return dataclasses.replace(scenario, **parts)
    except SpecError as err:
        raise SpecError(f"{_point_text(point)} is invalid: {err}", field="--vary", value=_point_text(point)) from None


def _point_text(point: dict[str, object]) -> str:
    return ",".join(f"{k}={value_text(v)}" for k, v in point.items())


def _loaded(loader, ref, key: str):
    try:
        return loader(ref)
    except SpecError as err:
        raise SpecError(str(err), field=f"--vary {key}", value=ref) from None


def _with_recipe(training: TrainingSpec, key: str, name: str) -> TrainingSpec:
    """`training` under precision recipe `name`, as the loader builds it (TrainingSpec.with_recipe): a precision key
    holding what the current recipe (or, where it sets none, the TrainingSpec default) gives takes the new recipe's
    value (or the default); a key the scenario set over its recipe keeps its value."""
    from moesim.precision import recipe_values

    try:
        old, new = (recipe_values(training.precision_recipe) if training.precision_recipe else {}), recipe_values(name)
    except SpecError as err:
        raise SpecError(str(err), field=f"--vary {key}", value=name) from None
    defaults = {f.name: f.default for f in dataclasses.fields(TrainingSpec) if f.name in PRECISION_KEYS}
    changes = {k: new.get(k, defaults[k]) for k in PRECISION_KEYS if getattr(training, k) == old.get(k, defaults[k])}
    return _replace(training, key, precision_recipe=name, **changes)


def _restrict_search(space: SearchSpace, name: str, value) -> SearchSpace:
    """Pin the search to a training option the sweep sets (see the module docstring)."""
    if name == "zero_stage":
        return dataclasses.replace(space, zero_stages=(value,))
    if name == "recompute":
        return dataclasses.replace(space, recompute_modes=(value,))
    if name == "capacity_factor":
        return dataclasses.replace(space, capacity_factors=())
    return space


def _model_with(model: ModelSpec, key: str, group: str, changes: dict[str, object]) -> ModelSpec:
    """`model` with the fields `changes` of its table `group` ("" the model itself) replaced together, so that fields
    checked together (a sliding_window mask and its window_tokens) may be varied together; `key` names them."""
    if not group:
        return _replace(model, key, **changes)
    sub = getattr(model, group)
    if sub is None:
        raise SpecError(f"model {model.name} has no [{group}] table to vary", field=f"--vary {key}",
                        value=next(iter(changes.values())))
    return _replace(model, key, **{group: _replace(sub, key, **changes)})
