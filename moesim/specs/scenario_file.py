"""Reading a scenario file into a Scenario, strictly: its model and hardware (by name, path or inline),
[training], [layout], [search] and the routing keys of its own [moe] table; command-line overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from moesim.errors import SpecError
from moesim.specs.data_files import SCHEMA_VERSION, int_list, read_data_file, resolve_ref, str_list, with_file
from moesim.specs.dtypes import DTYPES
from moesim.specs.fields import Table, check_file_kind, check_schema_version
from moesim.specs.hardware_file import load_hardware
from moesim.specs.layout import CP_COMMS, STAGE_KEYS, parse_layout_text, split_layout_options
from moesim.specs.layout_options import apply_layout_options, layout_from_table, typed_option_keys
from moesim.specs.model import ModelSpec
from moesim.specs.model_file import load_model, model_from_table
from moesim.specs.scenario import Scenario, SearchSpace
from moesim.specs.system_facts import ALLOWED, SYSTEM_FACT_KEYS, with_system_facts
from moesim.specs.training import CUDA_GRAPH_SCOPES, PIPELINE_SCHEDULES, RECOMPUTE_MODULES, TrainingSpec

_FIELD_TYPES = {"int": int, "int | None": int, "float": float, "float | None": float, "bool": bool, "str": str,
                "tuple[str, ...]": list}


# The [training] lists of names and the names each holds: a value that is not a list names them
_LIST_ENTRIES = {"recompute_modules": RECOMPUTE_MODULES, "cuda_graph_scope": CUDA_GRAPH_SCOPES}


def training_from_table(t: Table) -> TrainingSpec:
    known = TrainingSpec.__dataclass_fields__
    for key, entries in _LIST_ENTRIES.items():
        if key in t.data and not isinstance(t.data[key], list):
            value = t.data[key]
            hint = f" (write [\"{value}\"])" if value in entries else ""
            raise t.error(key, f"expected a list of names, got {value!r}{hint}", value=value,
                          allowed=f"a list of {', '.join(entries)}")
    kwargs = {key: t.opt(key, _FIELD_TYPES[known[key].type]) for key in list(t.data) if key in known}
    t.req("global_batch_sequences", int)
    t.finish(allowed=known)
    return TrainingSpec.with_recipe(**kwargs)  # a named precision recipe under the table's own keys


def search_from_table(t: Table) -> SearchSpace:
    factors = t.opt("capacity_factors", list, [])
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in factors):
        raise t.error("capacity_factors", "expected a list of numbers", value=factors)
    orders = t.opt("orders", list, [])
    if any(not isinstance(o, str) for o in orders):
        raise t.error("orders", "expected a list of strings such as 'tp-ep-dp-pp'", value=orders)
    space = SearchSpace(
        capacity_factors=tuple(float(x) for x in factors),
        zero_stages=tuple(str_list(t, "zero_stages", (0, 1, 2, 3), [0, 1, 2, 3])),
        recompute_modes=tuple(str_list(t, "recompute_modes", ("none", "selective", "full"),
                                        ["none", "selective", "full"])),
        max_micro_batches=t.opt("max_micro_batches", int, 64),
        orders=tuple(tuple(o.split("-")) for o in orders),
        pipeline_schedules=tuple(str_list(t, "pipeline_schedules", PIPELINE_SCHEDULES, [])),
        virtual_stages=tuple(int_list(t, "virtual_stages", [2, 4, 8])),
        context_parallel=tuple(int_list(t, "context_parallel", [1])),
        cp_comms=tuple(str_list(t, "cp_comms", CP_COMMS, ["p2p"])),
        tensor_parallel=tuple(int_list(t, "tensor_parallel", [])),
        pipeline_parallel=tuple(int_list(t, "pipeline_parallel", [])),
        expert_parallel=tuple(int_list(t, "expert_parallel", [])),
    )
    t.finish()
    return space


# Keys a scenario's own [moe] table may set over the model's: how the framework of the published run
# groups and bounds tokens for routing. They are implementation choices, not architecture: Mesh-TF,
# T5X and GShard route the same model in routing groups of different sizes. router_dtype: the dtype the run's
# framework computes the router GEMM in (DeepSeek-V3 §3.3.1 keeps the gating modules in "BF16 or FP32"; which
# one is the run's, e.g. the BF16 cuBLAS GEMM of DeepSeek's H800 trace, docs/operators.md); router_bwd_dtype: the
# dtype of its backward GEMMs where the framework's differs from the forward's (left out: router_dtype).
SCENARIO_MOE_KEYS = ("group_size_tokens", "min_expert_capacity", "max_nodes_per_token")
SCENARIO_MOE_DTYPE_KEYS = ("router_dtype", "router_bwd_dtype")
# router_impl: the framework implementation whose router and dispatcher kernels the run launches
# (moesim/ops/mcore_moe.toml names them; unset, moesim's generic operators).
SCENARIO_MOE_IMPL_KEYS = ("router_impl",)


def scenario_moe(model: ModelSpec, t: Table) -> ModelSpec:
    """`model` with the routing keys of a scenario's [moe] table (SCENARIO_MOE_KEYS, SCENARIO_MOE_DTYPE_KEYS,
    SCENARIO_MOE_IMPL_KEYS) replaced."""
    changes = {key: value for key in SCENARIO_MOE_KEYS if (value := t.opt(key, int)) is not None}
    changes.update({key: value for key in SCENARIO_MOE_DTYPE_KEYS if (value := t.choice(key, DTYPES, None))})
    if any(key in t.data for key in SCENARIO_MOE_IMPL_KEYS):
        from moesim.ops.mcore_moe import impl_names  # read only where a scenario names one

        changes.update({key: value for key in SCENARIO_MOE_IMPL_KEYS
                        if (value := t.choice(key, impl_names(), None))})
    t.finish()
    if model.moe is None:
        raise t.error(None, f"model '{model.name}' has no mixture-of-experts layers to set")
    return dataclasses.replace(model, moe=dataclasses.replace(model.moe, **changes))


def scenario_system(hardware, t: Table):
    """`hardware` with the facts of a scenario's [system] table (host_cpu, gpu_nic_path: the cluster's own CPU and
    GPU-NIC PCIe path NCCL reads, specs/system_facts.py) set on its network levels."""
    facts = {key: value for key in SYSTEM_FACT_KEYS if (value := t.choice(key, ALLOWED[key][1:], None)) is not None}
    t.finish()
    try:
        return with_system_facts(hardware, facts)
    except SpecError as err:
        raise t.error(err.field, str(err).split(": ", 1)[-1].rsplit(" (allowed: ", 1)[0], value=err.value,
                      allowed=err.allowed) from None


def scenario_nccl_version(t: Table) -> str:
    """The [system] table's nccl_version: the NCCL release the run uses (collectives/nccl_tuning.check_version), ""
    where unset (today's tables)."""
    from moesim.collectives.nccl_tuning import check_version

    version = t.opt("nccl_version", str, "")
    try:
        return check_version(version)
    except SpecError as err:
        raise t.error("nccl_version", err.message, value=version, allowed=err.allowed) from None


def scenario_from_table(t: Table, *, base_dir: Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Build a Scenario; `overrides` (hardware, devices, layout text) come from the command line."""
    overrides = overrides or {}
    check_file_kind(t, "scenario")
    check_schema_version(t, SCHEMA_VERSION)
    name = t.req("name", str)
    model_ref = t.req("model", (str, dict))
    if isinstance(model_ref, dict):
        model = model_from_table(Table(model_ref, file=t.file, path="model"))
    else:
        model = load_model(model_ref, relative_to=base_dir)
    moe_t = t.sub("moe", required=False)
    if moe_t is not None:
        model = scenario_moe(model, moe_t)
    hardware = load_hardware(overrides.get("hardware") or t.req("hardware", str), relative_to=base_dir,
                             field="--hardware" if overrides.get("hardware") else "hardware")
    if overrides.get("hardware"):
        t.opt("hardware", str)
    system_t = t.sub("system", required=False)
    nccl_version = ""
    if system_t is not None:
        nccl_version = scenario_nccl_version(system_t)
        hardware = scenario_system(hardware, system_t)
    devices = overrides.get("devices") or t.req("devices", int)
    if overrides.get("devices"):
        t.opt("devices", int)
        try:  # a count the profile cannot hold is the flag's error, not the file's 'devices'
            hardware.check_devices(devices)
        except SpecError as err:
            raise err.with_field("--devices") from None
    training_t = t.sub("training")
    training = training_from_table(training_t)
    layout_t = t.sub("layout", required=False)
    layout_given = layout_from_table(layout_t) if layout_t is not None else {}
    layout_given, options = split_layout_options(layout_given)
    training = apply_layout_options(training, model, options, explicit=training_t.data, source="layout",
                                    typed=typed_option_keys(layout_t.data) if layout_t is not None else None)
    if overrides.get("layout"):
        layout_given, options = split_layout_options(parse_layout_text(overrides["layout"]))
        training = apply_layout_options(training, model, options, explicit={}, source="--layout")
    elif overrides.get("devices") and overrides["devices"] != t.data.get("devices"):
        # another device count: dp and ep (edp) refit it; a profile alone (--hardware) keeps every degree given
        kept = ("tp", "pp", "etp", "order", "vp", "cp", "cp_comm") + STAGE_KEYS
        layout_given = {k: v for k, v in layout_given.items() if k in kept}
    search_t = t.sub("search", required=False)
    search = search_from_table(search_t) if search_t is not None else SearchSpace()
    scenario = Scenario(
        name=name, model=model, hardware=hardware, devices=devices, training=training,
        layout_given=layout_given, search=search, description=t.opt("description", str, ""),
        source=t.opt("source", str, ""), file=t.file, nccl_version=nccl_version,
    )
    t.finish()
    return scenario


def load_scenario(ref: str | Path, **overrides: Any) -> Scenario:
    """A scenario by built-in name or path; keyword overrides: hardware, devices, layout."""
    path = resolve_ref(ref, "scenarios")
    return with_file(path, lambda: scenario_from_table(Table(read_data_file(path), file=str(path)),
                                                        base_dir=path.parent, overrides=overrides))
