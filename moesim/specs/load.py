"""Loading specs from data files: TOML (and YAML/JSON for scenarios), strict, with units converted.

Built-in names resolve to the files shipped with moesim: models in `moesim/models/library/`,
hardware profiles in `hardware_profiles/`, scenarios in `scenarios/`. Anything else is read as a
path. Every file carries `schema_version`; unknown and missing keys are errors naming the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from pathlib import Path
from typing import Any

from moesim import units
from moesim.errors import SpecError
from moesim.paths import builtin_dir, builtin_names, path_problem, read_text_file
from moesim.specs.fields import Table, check_schema_version
from moesim.specs.file_units import to_file_error
from moesim.specs.hardware import (
    DTYPES, ChipSpec, ComputeEfficiency, EfficiencyTable, HardwareProfile, InterconnectLevel, TOPOLOGIES,
    WRAPAROUND_RULES, DEVICE_KINDS, OP_DIMS, OP_KINDS, OP_PASSES, OP_STATUS, OpTable,
)
from moesim.specs.layout import CP_COMMS, STAGE_KEYS, parse_layout_text, split_layout_options
from moesim.specs.layout_options import apply_layout_options, layout_from_table
from moesim.specs.model import (
    ARCHITECTURES, ATTENTION_KINDS, CAPACITY_RULES, FFN_KINDS, MOE_STACKS, NORM_KINDS, POSITION_KINDS,
    ROUTER_SCORES, AttentionSpec, ModelSpec, MoESpec,
)
from moesim.specs.scenario import Scenario, SearchSpace
from moesim.specs.training import PIPELINE_SCHEDULES, TrainingSpec

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
                        field=kind.rstrip("s"))
    if relative_to is not None and not candidate.is_absolute():
        near = relative_to / candidate
        if near.suffix in DATA_SUFFIXES and near.is_file():
            return near
    if candidate.suffix in DATA_SUFFIXES or "/" in ref_text or candidate.is_file():
        if candidate.is_file():
            return candidate
        read_text_file(candidate)  # names the problem: too long a path, a directory, no such file
        raise SpecError(f"no such file: {ref_text}", file=ref_text)
    directory = builtin_dir(kind)
    for suffix in DATA_SUFFIXES:
        path = directory / f"{ref_text}{suffix}"
        if path.is_file():
            return path
    near = difflib.get_close_matches(ref_text, builtin_names(kind), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise SpecError(f"unknown {kind.rstrip('s').replace('_', ' ')} '{ref_text}'{hint}", field=field or kind.rstrip("s"),
                    value=ref_text, allowed=builtin_names(kind) or "none shipped")


# --- models -------------------------------------------------------------------------------

def model_from_table(t: Table) -> ModelSpec:
    """Build a ModelSpec from a strict table (a model file, or a scenario's inline [model])."""
    check_schema_version(t, SCHEMA_VERSION)
    arch = t.choice("architecture", ARCHITECTURES)
    att_t = t.sub("attention")
    attention = AttentionSpec(
        kind=att_t.choice("kind", ATTENTION_KINDS, "mha"),
        num_heads=att_t.req("num_heads", int),
        head_dim=att_t.req("head_dim", int),
        num_kv_heads=att_t.opt("num_kv_heads", int, 0),
        qkv_bias=att_t.opt("qkv_bias", bool, False),
        out_bias=att_t.opt("out_bias", bool, False),
        q_lora_rank=att_t.opt("q_lora_rank", int, 0),
        kv_lora_rank=att_t.opt("kv_lora_rank", int, 0),
        qk_rope_head_dim=att_t.opt("qk_rope_head_dim", int, 0),
        v_head_dim=att_t.opt("v_head_dim", int, 0),
        mask=att_t.opt("mask", str, ""),
        window_tokens=att_t.opt("window_tokens", int, 0),
        sparse_stride_tokens=att_t.opt("sparse_stride_tokens", int, 0),
        sparse_summary_tokens=att_t.opt("sparse_summary_tokens", int, 0),
    )
    att_t.finish()
    moe = None
    moe_t = t.sub("moe", required=False)
    if moe_t is not None:
        rule = moe_t.choice("capacity_rule", CAPACITY_RULES, "switch")
        dropless = rule == "dropless"
        cf_train = moe_t.opt("capacity_factor_train", float, None)
        cf_eval = moe_t.opt("capacity_factor_eval", float, None)
        if not dropless and cf_train is None:
            raise moe_t.error("capacity_factor_train", "required unless capacity_rule = 'dropless'")
        moe = MoESpec(
            num_experts=moe_t.req("num_experts", int),
            top_k=moe_t.opt("top_k", int, 1),
            expert_d_ff=moe_t.req("expert_d_ff", int),
            layer_freq=moe_t.opt("layer_freq", int, 1),
            leading_dense_layers=moe_t.opt("leading_dense_layers", int, 0),
            stacks=tuple(_str_list(moe_t, "stacks", MOE_STACKS, default=list(MOE_STACKS))),
            num_shared_experts=moe_t.opt("num_shared_experts", int, 0),
            shared_expert_d_ff=moe_t.opt("shared_expert_d_ff", int, 0),
            shared_expert_gate=moe_t.opt("shared_expert_gate", bool, False),
            capacity_factor_train=None if dropless else cf_train,
            capacity_factor_eval=cf_eval,
            capacity_rule=rule,
            min_expert_capacity=moe_t.opt("min_expert_capacity", int, 0),
            group_size_tokens=moe_t.opt("group_size_tokens", int, 0),
            router_score=moe_t.choice("router_score", ROUTER_SCORES, "softmax"),
            router_dtype=moe_t.opt("router_dtype", str, "float32"),
            router_bias=moe_t.opt("router_bias", bool, False),
            max_nodes_per_token=moe_t.opt("max_nodes_per_token", int, 0),
        )
        moe_t.finish()
    if arch == "encoder_decoder":
        enc, dec = t.req("encoder_layers", int), t.req("decoder_layers", int)
    else:
        enc, dec = 0, t.req("layers", int)
    spec = ModelSpec(
        name=t.req("name", str),
        family=t.opt("family", str, ""),
        aliases=tuple(t.opt("aliases", list, [])),
        architecture=arch,
        d_model=t.req("d_model", int),
        encoder_layers=enc,
        decoder_layers=dec,
        vocab_size=t.req("vocab_size", int),
        tied_embeddings=t.req("tied_embeddings", bool),
        ffn_kind=t.choice("ffn_kind", FFN_KINDS),
        d_ff=t.req("d_ff", int),
        ffn_bias=t.opt("ffn_bias", bool, False),
        attention=attention,
        norm_kind=t.choice("norm_kind", NORM_KINDS, "rmsnorm"),
        position_embedding=t.choice("position_embedding", POSITION_KINDS, "rope"),
        relative_attention_num_buckets=t.opt("relative_attention_num_buckets", int, 32),
        max_position_embeddings=t.opt("max_position_embeddings", int, 0),
        moe=moe,
        mtp_depth=t.opt("mtp_depth", int, 0),
        default_seq_len=t.opt("default_seq_len", int, 2048),
        default_decoder_seq_len=t.opt("default_decoder_seq_len", int, 0),
        source=t.req("source", str),
        notes=t.opt("notes", str, ""),
    )
    t.finish()
    return spec


def load_model(ref: str | Path, *, relative_to: Path | None = None) -> ModelSpec:
    """A model by built-in name (e.g. `switch-c-2048`), or from a model TOML or HF `config.json`."""
    path = resolve_ref(ref, "models", relative_to=relative_to)
    if path.name == "config.json" or (path.suffix == ".json" and "model_type" in read_data_file(path)):
        from moesim.models.hf import model_from_hf_config

        return model_from_hf_config(path)
    return _with_file(path, lambda: model_from_table(Table(read_data_file(path), file=str(path))))


# --- hardware -----------------------------------------------------------------------------

def _efficiency(t: Table, key: str, default: float | None = None) -> EfficiencyTable:
    value = t.opt(key, (int, float, list), default)
    if value is None:
        raise t.error(key, "required key is missing")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return EfficiencyTable.constant(float(value))
    try:
        points = tuple((float(p[0]), float(p[1])) for p in value)
        if any(len(p) != 2 for p in value):
            raise ValueError
    except (TypeError, ValueError, IndexError):
        raise t.error(key, "expected a number or a list of [size, efficiency] pairs", value=value) from None
    try:
        return EfficiencyTable(points)
    except SpecError as err:
        raise t.error(key, str(err), value=value) from None


def _op_table(t: Table) -> OpTable:
    """One [[efficiency.op_table]]: kind, dtype, pass, op, status, measured_on, source, dims, points."""
    kind = t.choice("kind", OP_KINDS)
    dims = t.opt("dims", list, list(OP_DIMS[kind]))
    if tuple(dims) != OP_DIMS[kind]:
        raise t.error("dims", f"a {kind} table lists its points as {list(OP_DIMS[kind])} + [efficiency]",
                      value=dims, allowed=list(OP_DIMS[kind]))
    raw = t.req("points", list)
    try:
        points = tuple(tuple(float(x) for x in p) for p in raw)
    except (TypeError, ValueError):
        raise t.error("points", "expected a list of [coordinates..., efficiency] lists", value=raw[:3]) from None
    try:
        return OpTable(kind=kind, dtype=t.choice("dtype", DTYPES), pass_=t.choice("pass", OP_PASSES, "any"),
                       op=t.opt("op", str, "any"), status=t.choice("status", OP_STATUS, "measured"),
                       measured_on=t.req("measured_on", str), source=t.req("source", str), points=points)
    except SpecError as err:
        raise t.error("points", str(err), value=err.value) from None


def _level_from_table(t: Table, devices_per_chip: int) -> InterconnectLevel:
    bw_keys = [k for k in ("link_gb_per_s_unidir", "link_gbit_per_s_unidir") if t.has(k)]
    if len(bw_keys) != 1:
        raise t.error("link_gb_per_s_unidir", "give exactly one of link_gb_per_s_unidir (GB/s, one direction) "
                      "or link_gbit_per_s_unidir (Gbit/s, one direction)")
    if bw_keys[0] == "link_gb_per_s_unidir":
        bw = units.gb_per_s_to_bytes_per_s(t.req("link_gb_per_s_unidir", float))
    else:
        bw = units.gbit_per_s_to_bytes_per_s(t.req("link_gbit_per_s_unidir", float))
    if t.has("domain_chips"):
        domain = t.req("domain_chips", int) * devices_per_chip
    else:
        domain = t.req("domain_devices", int)
    kwargs = dict(
        name=t.req("name", str),
        topology=t.choice("topology", TOPOLOGIES),
        domain_devices=domain,
        link_bw_bytes_per_s=bw,
        latency_s=units.us_to_s(t.req("latency_us", float)),
        dims=tuple(t.opt("dims", list, [])),
        wraparound=t.choice("wraparound", WRAPAROUND_RULES, "always"),
        links_per_chip=t.opt("links_per_chip", int, 0),
        bw_efficiency=_efficiency(t, "bw_efficiency", 1.0),
        oversubscription=t.opt("oversubscription", float, 1.0),
        switch_radix=t.opt("switch_radix", int, 0),
        rails=t.opt("rails", int, 1),
        nvls_efficiency=t.opt("nvls_efficiency", float, 0.0),
        nvlstree_efficiency=t.opt("nvlstree_efficiency", float, None),
        nvlstree_net_factor=t.opt("nvlstree_net_factor", float, None),
        p2p_factor=t.opt("p2p_factor", float, None),
        nccl_arch=t.opt("nccl_arch", str, ""),
        sharp=t.opt("sharp", bool, False),
        collective_overhead_s=units.us_to_s(t.opt("collective_overhead_us", float, 0.0)),
        source=t.req("source", str),
    )
    try:
        return InterconnectLevel(**kwargs)
    except SpecError as err:  # report the level by its position in the file, as the loader does
        key = (err.field or "").rsplit(".", 1)[-1] or None
        message = str(err).split(": ", 1)[-1].rsplit(" (allowed: ", 1)[0]
        raise t.error(key, message, value=err.value, allowed=err.allowed) from None


def hardware_from_table(t: Table) -> HardwareProfile:
    """Build a HardwareProfile; per-chip figures become per-device, human units become SI. A range error on
    an SI field names the file's own key and range in its unit (moesim/specs/file_units.py)."""
    try:
        return _hardware_from_table(t)
    except SpecError as err:
        raise to_file_error(err, t.data) from None


def _hardware_from_table(t: Table) -> HardwareProfile:
    check_schema_version(t, SCHEMA_VERSION)
    chip_t = t.sub("chip")
    per_chip = chip_t.opt("devices_per_chip", int, 1)
    if per_chip < 1:
        raise chip_t.error("devices_per_chip", "must be >= 1", value=per_chip)
    peaks_t = chip_t.sub("peak_tflops_per_chip")
    peaks = {dtype: units.tflops_to_flops_per_s(peaks_t.req(dtype, float)) / per_chip
             for dtype in list(peaks_t.data)}
    peaks_t.finish(allowed=DTYPES)
    hbm_keys = [k for k in ("hbm_gib_per_chip", "hbm_gb_per_chip") if chip_t.has(k)]
    if len(hbm_keys) != 1:
        raise chip_t.error("hbm_gib_per_chip", "give exactly one of hbm_gib_per_chip or hbm_gb_per_chip")
    hbm_bytes = (units.gib_to_bytes(chip_t.req("hbm_gib_per_chip", float)) if hbm_keys[0] == "hbm_gib_per_chip"
                 else units.gb_to_bytes(chip_t.req("hbm_gb_per_chip", float)))
    chip = ChipSpec(
        name=chip_t.req("name", str),
        devices_per_chip=per_chip,
        peak_flops_per_s=peaks,
        hbm_bytes=hbm_bytes / per_chip,
        hbm_bw_bytes_per_s=units.gb_per_s_to_bytes_per_s(chip_t.req("hbm_bw_gb_per_s_per_chip", float)) / per_chip,
        source=chip_t.req("source", str),
    )
    chip_t.finish()
    eff_t = t.sub("efficiency")
    overhead_us = eff_t.opt("layer_overhead_us", float, 0.0)
    if not 0 <= overhead_us < float("inf"):
        raise eff_t.error("layer_overhead_us", "must be a finite number >= 0 (microseconds per layer per pass)",
                          value=overhead_us)
    launch_us = eff_t.opt("kernel_launch_us", float, 0.0)
    if not 0 <= launch_us < float("inf"):
        raise eff_t.error("kernel_launch_us", "must be a finite number >= 0 (microseconds per kernel)",
                          value=launch_us)
    op_tables = []
    for op_t in eff_t.sub_list("op_table", required=False):
        op_tables.append(_op_table(op_t))
        op_t.finish()
    efficiency = ComputeEfficiency(
        matmul=_efficiency(eff_t, "matmul"),
        memory_bandwidth=eff_t.req("memory_bandwidth", float),
        layer_overhead_s=units.us_to_s(overhead_us),
        source=eff_t.req("source", str),
        op_tables=tuple(op_tables),
        kernel_launch_s=units.us_to_s(launch_us),
    )
    eff_t.finish()
    levels = []
    for level_t in t.sub_list("interconnect"):
        levels.append(_level_from_table(level_t, per_chip))
        level_t.finish()
    profile = HardwareProfile(
        name=t.req("name", str),
        description=t.req("description", str),
        device_kind=t.choice("device_kind", DEVICE_KINDS),
        max_devices=t.req("max_devices", int),
        chip=chip,
        efficiency=efficiency,
        interconnect=tuple(levels),
        memory_reserved_bytes=units.gib_to_bytes(t.opt("memory_reserved_gib", float, 0.0)),
        price_per_device_hour_usd=t.opt("price_per_device_hour_usd", float, None),
        price_source=t.opt("price_source", str, ""),
        calibrated_from=t.opt("calibrated_from", str, ""),
    )
    t.finish()
    return profile


def load_hardware(ref: str | Path, *, relative_to: Path | None = None, field: str | None = None) -> HardwareProfile:
    """A hardware profile by built-in name (e.g. `tpu-v3`) or path (`field`: the option that named it)."""
    path = resolve_ref(ref, "hardware_profiles", relative_to=relative_to, field=field)
    return _with_file(path, lambda: hardware_from_table(Table(read_data_file(path), file=str(path))))


# --- scenarios ----------------------------------------------------------------------------

_FIELD_TYPES = {"int": int, "float": float, "float | None": float, "bool": bool, "str": str, "tuple[str, ...]": list}


def training_from_table(t: Table) -> TrainingSpec:
    known = TrainingSpec.__dataclass_fields__
    kwargs = {key: t.opt(key, _FIELD_TYPES[known[key].type]) for key in list(t.data) if key in known}
    t.req("global_batch_sequences", int)
    t.finish(allowed=known)
    return TrainingSpec.with_recipe(**kwargs)  # a named precision recipe under the table's own keys


def _str_list(t: Table, key: str, allowed: tuple, default: list) -> list:
    values = t.opt(key, list, default)
    for v in values:
        if v not in allowed:
            raise t.error(key, f"'{v}' is not allowed", value=v, allowed=allowed)
    return values


def _int_list(t: Table, key: str, default: list) -> list:
    values = t.opt(key, list, default)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise t.error(key, "expected a list of integers", value=values)
    return values


def search_from_table(t: Table) -> SearchSpace:
    factors = t.opt("capacity_factors", list, [])
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in factors):
        raise t.error("capacity_factors", "expected a list of numbers", value=factors)
    orders = t.opt("orders", list, [])
    if any(not isinstance(o, str) for o in orders):
        raise t.error("orders", "expected a list of strings such as 'tp-ep-dp-pp'", value=orders)
    space = SearchSpace(
        capacity_factors=tuple(float(x) for x in factors),
        zero_stages=tuple(_str_list(t, "zero_stages", (0, 1, 2, 3), [0, 1, 2, 3])),
        recompute_modes=tuple(_str_list(t, "recompute_modes", ("none", "selective", "full"),
                                        ["none", "selective", "full"])),
        max_micro_batches=t.opt("max_micro_batches", int, 64),
        orders=tuple(tuple(o.split("-")) for o in orders),
        pipeline_schedules=tuple(_str_list(t, "pipeline_schedules", PIPELINE_SCHEDULES, [])),
        virtual_stages=tuple(_int_list(t, "virtual_stages", [2, 4, 8])),
        context_parallel=tuple(_int_list(t, "context_parallel", [1])),
        cp_comms=tuple(_str_list(t, "cp_comms", CP_COMMS, ["p2p"])),
    )
    t.finish()
    return space


# Keys a scenario's own [moe] table may set over the model's: how the framework of the published run
# groups and bounds tokens for routing. They are implementation choices, not architecture: Mesh-TF,
# T5X and GShard route the same model in routing groups of different sizes.
SCENARIO_MOE_KEYS = ("group_size_tokens", "min_expert_capacity", "max_nodes_per_token")


def scenario_moe(model: ModelSpec, t: Table) -> ModelSpec:
    """`model` with the routing keys of a scenario's [moe] table (SCENARIO_MOE_KEYS) replaced."""
    changes = {key: value for key in SCENARIO_MOE_KEYS if (value := t.opt(key, int)) is not None}
    t.finish()
    if model.moe is None:
        raise t.error(None, f"model '{model.name}' has no mixture-of-experts layers to set")
    return dataclasses.replace(model, moe=dataclasses.replace(model.moe, **changes))


def scenario_from_table(t: Table, *, base_dir: Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Build a Scenario; `overrides` (hardware, devices, layout text) come from the command line."""
    overrides = overrides or {}
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
                             field="--hardware" if overrides.get("hardware") else None)
    if overrides.get("hardware"):
        t.opt("hardware", str)
    devices = overrides.get("devices") or t.req("devices", int)
    if overrides.get("devices"):
        t.opt("devices", int)
    training_t = t.sub("training")
    training = training_from_table(training_t)
    layout_t = t.sub("layout", required=False)
    layout_given = layout_from_table(layout_t) if layout_t is not None else {}
    layout_given, options = split_layout_options(layout_given)
    training = apply_layout_options(training, model, options, explicit=training_t.data, source="layout")
    if overrides.get("layout"):
        layout_given, options = split_layout_options(parse_layout_text(overrides["layout"]))
        training = apply_layout_options(training, model, options, explicit={}, source="--layout")
    elif overrides.get("devices") or overrides.get("hardware"):
        kept = ("tp", "pp", "etp", "order", "vp", "cp", "cp_comm") + STAGE_KEYS
        layout_given = {k: v for k, v in layout_given.items() if k in kept}
    search_t = t.sub("search", required=False)
    search = search_from_table(search_t) if search_t is not None else SearchSpace()
    scenario = Scenario(
        name=name, model=model, hardware=hardware, devices=devices, training=training,
        layout_given=layout_given, search=search, description=t.opt("description", str, ""),
        source=t.opt("source", str, ""), file=t.file,
    )
    t.finish()
    return scenario


def load_scenario(ref: str | Path, **overrides: Any) -> Scenario:
    """A scenario by built-in name or path; keyword overrides: hardware, devices, layout."""
    path = resolve_ref(ref, "scenarios")
    return _with_file(path, lambda: scenario_from_table(Table(read_data_file(path), file=str(path)),
                                                        base_dir=path.parent, overrides=overrides))


def _with_file(path: Path, build):
    """Run `build`; a SpecError without a file gets this one."""
    try:
        return build()
    except SpecError as err:
        raise err.in_file(str(path)) from None
