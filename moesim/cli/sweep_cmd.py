"""`moesim sweep SCENARIO --vary KEY=V1,V2,...`: the best layout at every point of a what-if grid."""

from __future__ import annotations

import argparse

from moesim.cli.estimate_cmd import add_scenario_overrides
from moesim.cli.output import print_json, table
from moesim.cli.progress import add_quiet, wanted
from moesim.cli.search_cmd import OBJECTIVE_CHOICES
from moesim.errors import SpecError
from moesim.paths import write_text_file
from moesim.units import format_bytes, format_seconds


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="what-if sweep: the best layout at every point of a grid of scenario changes",
        description="Search the best layout at every point of the cartesian product of the --vary values. Keys: "
                    "experts, capacity_factor, hardware, devices, seq_len, batch (aliases), any training.* field, "
                    "model.*, model.moe.*, model.attention.*, model, hardware.price_per_device_hour_usd, "
                    "search.max_micro_batches, the [search] lists search.context_parallel, "
                    "search.pipeline_schedules, search.virtual_stages, search.cp_comms, search.tensor_parallel, "
                    "search.pipeline_parallel, search.expert_parallel (--vary search.tensor_parallel=1,8: the best "
                    "layout at tp 1, then at tp 8; none: every degree), the training lists "
                    "training.cuda_graph_scope, training.recompute_modules and model.attention.layer_pattern (a value "
                    "is one entry, several joined by '+', 'none' an empty list: --vary search.context_parallel=1,2+4, "
                    "--vary training.cuda_graph_scope=none,attn+moe_router, --vary "
                    "model.attention.layer_pattern=none,sliding_window+causal). Points run in parallel worker "
                    "processes, or on a Dask cluster.")
    add_scenario_overrides(p, layout=False)
    p.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2,...", required=True,
                   help="a field and its values; repeat for a grid")
    p.add_argument("--objective", choices=OBJECTIVE_CHOICES, default="step_time", help="ranking (default step_time)")
    p.add_argument("-o", "--output", metavar="FILE.csv", help="also write the results as CSV (default: none written)")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (default: the cores; 1 = in process)")
    p.add_argument("--dask", metavar="tcp://HOST:PORT",
                   help="run the points on this Dask scheduler instead (default: none, local worker processes)")
    p.add_argument("--json", action="store_true", help="machine-readable output (no progress bar)")
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from moesim.search.sweep import parse_vary, run_sweep, to_csv
    from moesim.specs.load import load_scenario

    if args.output and args.output.lower().endswith((".json", ".jsonl")):  # CSV under a JSON name; before the sweep
        raise SpecError("-o writes CSV: give a path ending in .csv (for JSON: --json > FILE.json)", file=args.output,
                        field="--output", value=args.output, allowed="a path not ending in .json or .jsonl")
    axes = [parse_vary(text) for text in args.vary]
    scenario = load_scenario(args.scenario, hardware=args.hardware, devices=args.devices)
    sweep = run_sweep(scenario, axes, objective=args.objective, workers=args.workers, dask_address=args.dask,
                      progress=wanted(args))
    if args.output:
        write_text_file(args.output, to_csv(sweep), field="--output")
    if args.json:
        print_json(sweep)
    else:
        print(render(sweep))
    return 0


def layout_column(lay: dict) -> str:
    """The best-layout column of a sweep point's layout: the line `moesim estimate --layout` takes as it stands
    (edp, which that line checks, as `moesim search` prints it; cf left out where a dense model has none)."""
    cf = "" if "capacity_factor" not in lay else " cf=dropless" if lay["capacity_factor"] is None \
        else f" cf={lay['capacity_factor']:g}"
    return (f"dp={lay['dp']} tp={lay['tp']} ep={lay['ep']} pp={lay['pp']} etp={lay['etp']} edp={lay['edp']} "
            f"order={'-'.join(lay['order'])} mb={lay['micro_batches']} zero={lay['zero_stage']} "
            f"recompute={lay['recompute']}{cf}"
            + "".join(f" {k}={lay[k]}" for k in ("pipeline_schedule", "vp", "cp", "cp_comm")
                      if k in lay and lay[k] != "1f1b"))


def render(sweep: dict) -> str:
    from moesim.search.overrides import value_text
    from moesim.search.sweep import grouped_notes, point_text

    keys = list(sweep["vary"])
    rows = []
    for p in sweep["points"]:
        values = [("none" if v is None else value_text(v)) for v in p["point"].values()]
        if p["status"] != "ok":
            rows.append(values + ["-", "-", "-", "-", "-", p["status"]])
            continue
        text = layout_column(p["layout"])
        objective = f"{p['objective_value']:.4g} {p['objective_unit']}" if sweep["objective"] != "mfu" \
            else f"{p['objective_value']:.1%}"
        rows.append(values + [objective, format_seconds(p["step_time_s"]), format_bytes(p["memory_bytes_per_device"]),
                              f"{p['mfu']:.1%}", p["bottleneck"], text])
    head = f"{sweep['scenario']}: best layout by {sweep['objective']} at {len(rows)} points"
    headers = keys + [sweep["objective"], "step time", "memory/device", "MFU", "bottleneck", "best layout"]
    align = "l" * len(keys) + "rrrrll"
    if sweep["objective"] == "step_time":  # the objective column would repeat the step time
        rows = [r[:len(keys)] + r[len(keys) + 1:] for r in rows]
        headers, align = headers[:len(keys)] + headers[len(keys) + 1:], align[:len(keys)] + align[len(keys) + 1:]
    why = [f"why at {point_text(p['point'])}: {p['why']}" for p in sweep["points"] if p.get("why")]
    return "\n".join([head, table(rows, headers, align=align), *why, *grouped_notes(sweep)])
