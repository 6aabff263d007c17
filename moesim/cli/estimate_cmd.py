"""`moesim estimate SCENARIO`: the analytical step estimate of one layout."""

from __future__ import annotations

import argparse

from moesim.cli.output import kv_block, print_json, table
from moesim.specs.layout import CP_COMMS
from moesim.specs.training import PIPELINE_SCHEDULES, RECOMPUTE_MODES
from moesim.units import format_bytes, format_seconds


def add_scenario_overrides(p: argparse.ArgumentParser, *, layout: bool = True) -> None:
    """--hardware / --devices (and --layout) options shared by the scenario subcommands."""
    p.add_argument("scenario", help="scenario file (TOML/YAML) or built-in scenario name")
    p.add_argument("--hardware", help="hardware profile name or file (a profile `moesim calibrate -o` wrote works), "
                                      "replacing the scenario's (default: the scenario's hardware and its [system] "
                                      "facts; facts set over the profile given)")
    p.add_argument("--devices", type=int, help="device count, replacing the scenario's (default: the scenario's)")
    if layout:
        p.add_argument("--layout", help="dp=..,tp=..,ep=..,pp=..[,etp=..][,edp=..][,order=tp-ep-dp-pp]"
                                        "[,first_stage_layers=..][,last_stage_layers=..][,vp=..][,pipeline_layout=..][,cp=..]"
                                        f"[,cp_comm={'|'.join(CP_COMMS)}][,mb=..][,zero=..]"
                                        f"[,recompute={'|'.join(RECOMPUTE_MODES)}][,cf=..|dropless]"
                                        f"[,pipeline_schedule={'|'.join(PIPELINE_SCHEDULES)}] (commas or spaces: "
                                        "the line `moesim search` prints, or its layout_arg); "
                                        "omitted degrees take defaults")


def register(subparsers) -> None:
    p = subparsers.add_parser("estimate", help="analytical step time, memory and communication of a layout",
                              description="Analytical estimate of one training step: compute, communication per "
                                          "collective and mesh axis, memory per device, MFU, tokens/s.")
    add_scenario_overrides(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--ops", action="store_true",
                   help="also list every priced operator: shape, efficiency, time per call and per step "
                        "(first stage's layers and embedding, last stage's head; JSON key 'operators')")
    p.set_defaults(run=run)


def layout_source(args: argparse.Namespace) -> str:
    """The field a layout error names: the flag that set the layout, or re-derived it from the file's (--devices,
    --hardware), else the file's [layout]."""
    return next((f"--{k}" for k in ("layout", "devices", "hardware") if getattr(args, k, None)), "layout")


def run(args: argparse.Namespace) -> int:
    from moesim.estimate import estimate
    from moesim.specs.load import load_scenario

    scenario = load_scenario(args.scenario, hardware=args.hardware, devices=args.devices, layout=args.layout)
    layout = scenario.resolve(source=layout_source(args))
    result = estimate(scenario, layout)
    rows = None
    if getattr(args, "ops", False):
        from moesim.ops.breakdown import operator_breakdown

        rows = operator_breakdown(scenario, layout)
    if args.json:
        out = result.as_dict()
        if rows is not None:
            out["operators"] = [{"layer_class": r.layer_class, "part": r.part, "name": r.name, "kind": r.kind,
                                 "pass": r.pass_, "dtype": r.dtype, "shape": list(r.shape),
                                 "efficiency": None if r.efficiency != r.efficiency else r.efficiency,
                                 "time_s": r.time_s, "calls_per_step": r.calls_per_step,
                                 "step_time_s": r.step_time_s} for r in rows]
        print_json(out)
        return 0
    print(render(result))
    if rows is not None:
        print("\n" + render_ops(rows))
    return 0


def render_ops(rows) -> str:
    """The operator table of `moesim estimate --ops`."""
    body = [(r.layer_class, r.part, r.name, r.pass_, r.kind, r.dtype, _shape_text(r),
             "-" if r.efficiency != r.efficiency else f"{r.efficiency:.3f}", format_seconds(r.time_s),
             f"{r.calls_per_step:g}", format_seconds(r.step_time_s)) for r in rows if r.kind != "host" or r.time_s]
    return ("operators (per device; the first pipeline stage's layers and input embedding and the last stage's head; "
            "time per call = one layer, one micro-batch)\n") + table(
        body, ["layers", "part", "operator", "pass", "kind", "dtype", "shape", "efficiency", "time/call", "calls",
               "time/step"], align="lllllllrrrr")


def _shape_text(row) -> str:
    """A row's shape: a memory operator's one coordinate is the bytes it moves (OP_DIMS), printed with a unit."""
    if row.kind == "memory":
        return format_bytes(row.shape[0])
    return "x".join(f"{c:g}" for c in row.shape)


def render(result) -> str:
    d = result.as_dict()
    lay = d["layout"]
    more = "".join(f" {k}={lay[k]}" for k in ("vp", "cp", "cp_comm") if k in lay)  # only when not the default
    head = (f"{d['scenario']}: {d['devices']} x {d['hardware']}, layout dp={lay['dp']} tp={lay['tp']} ep={lay['ep']} "
            f"pp={lay['pp']} etp={lay['etp']}{more} (edp={lay['edp']}, order {'-'.join(lay['order'])}), "
            f"micro-batches {lay['micro_batches']} ({result.training.pipeline_schedule}), ZeRO-{lay['zero_stage']}, "
            f"recompute {lay['recompute']}")  # the schedule as simulate's head says it (DualPipe was in no line)
    times = kv_block("step time", [
        ("step (grad sync overlapped)", format_seconds(d["step_time_s"])),
        ("step (no overlap)", format_seconds(d["step_time_no_overlap_s"])),
        ("compute", format_seconds(d["compute_time_s"])),
        ("communication, exposed", format_seconds(d["exposed_communication_time_s"])),
        ("communication, all", format_seconds(d["communication_time_s"])),
        ("pipeline bubble", format_seconds(d["bubble_time_s"])),
        ("optimizer step", format_seconds(d["optimizer_time_s"])),
        ("bottleneck", d["bottleneck"]),
        ("MFU / HFU", f"{d['mfu']:.1%} / {d['hfu']:.1%} of the {result.training.dtype_for('gemm')} peak"),
        ("attention FLOPs", "MFU: full score matrix (PaLM); time: computed tiles, " + ", ".join(
            f"{stack} {m['mask']} {m['computed_fraction']:.1%}"
            for stack, m in d.get("flop_conventions", {}).get("self_attention", {}).items())),
        ("tokens/s", f"{d['tokens_per_s']:,.0f}"),
    ])
    comm_rows = [(name, c["axis"], c["group_size"], c["op"], c["algorithm"], c["bottleneck"],
                  f"{c['calls_per_step']:g}", format_bytes(c["size_bytes"]), format_bytes(c["bytes_per_device"]),
                  format_seconds(c["time_s"]))
                 for name, c in d["communication"].items()]
    comm = table(comm_rows, ["collective", "axis", "group", "op", "algorithm", "bound by", "calls", "size/call",
                             "sent/device", "time/step"], align="lllllllrrr") if comm_rows else "  (none)"
    mem = d["memory_bytes_per_device"]
    mem_rows = [(k, format_bytes(v)) for k, v in mem.items() if k != "total"]
    mem_rows.append(("total", f"{format_bytes(mem['total'])} of {format_bytes(d['memory_capacity_bytes'])} usable -> "
                              f"{'fits' if d['fits_in_memory'] else 'DOES NOT FIT'}"))
    parts = [head, "", times, "", "communication per step (sent per device)", comm, "",
             kv_block("memory per device (worst pipeline stage)", mem_rows)]
    if d["moe"]:
        drop = d["moe"]["expected_drop_fraction_uniform"]
        parts += ["", kv_block("MoE routing", [
            *routing_rows(d["moe"]), ("expected dropped (uniform)", "dropless" if drop is None else f"{drop:.3%}")])]
    parts += [f"warning: {w}" for w in d.get("warnings", ())]
    return "\n".join(parts)


def routing_rows(moe: dict) -> list[tuple[str, str]]:
    """The MoE routing lines of an estimate's `moe` JSON (estimate's and simulate's text): the capacity factor and
    rule, then tokens per device and routing group / capacity; an encoder-decoder's stacks route groups of their
    own: a pair of lines for each, named (moe.by_stack)."""
    stacks = moe.get("by_stack") or {"": moe}
    routing = [row for stack, figures in stacks.items() for row in (
        (f"tokens per device per layer{f' ({stack})' if stack else ''}",
         f"{figures['tokens_per_device_per_layer']:g}"),
        (f"routing group / capacity{f' ({stack})' if stack else ''}",
         f"{figures['routing_group_tokens']:g} tokens / {figures['expert_capacity']} slots per expert"))]
    return [("capacity factor / rule", f"{'none' if moe['capacity_factor'] is None else moe['capacity_factor']} / "
                                       f"{moe['capacity_rule']}"), *routing]
