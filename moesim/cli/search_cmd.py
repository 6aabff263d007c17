"""`moesim search SCENARIO`: every valid layout, ranked; rejections by rule; the Pareto front."""

from __future__ import annotations

import argparse

from moesim.cli.estimate_cmd import add_scenario_overrides
from moesim.cli.output import kv_block, print_json, table
from moesim.cli.progress import add_quiet, progress_bar
from moesim.megatron_rules import sequence_parallel_note
from moesim.units import format_bytes, format_seconds

OBJECTIVE_CHOICES = ("step_time", "cost", "mfu")  # search.OBJECTIVES, without importing the search here; sweep's too


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "search", help="search every valid layout: ranked results, rejections, Pareto front",
        description="Enumerate every valid layout (dp, tp, ep, pp, etp degrees, their order on the mesh, "
                    "micro-batches, ZeRO stage, recomputation, and capacity factor when the scenario's [search] "
                    "lists capacity_factors), reject the invalid and those that do not fit in memory, rank the "
                    "rest. Objective cost: USD per step when the hardware profile has a price, else "
                    "device-seconds per step.")
    add_scenario_overrides(p, layout=False)
    p.add_argument("--top", type=int, default=5, metavar="K", help="layouts to show with a breakdown (default 5)")
    p.add_argument("--objective", choices=OBJECTIVE_CHOICES, default="step_time", help="ranking (default step_time)")
    p.add_argument("--refine-des", type=int, default=0, metavar="K",
                   help="also simulate the top K layouts shown (mesh-order twins folded, as in the top table) with the "
                        "discrete-event simulator (moesim.des; default 0: none)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from moesim.errors import SpecError
    from moesim.search.report import search_report
    from moesim.specs.load import load_scenario

    if args.top < 0:
        raise SpecError("must be >= 0", field="--top", value=args.top)
    scenario = load_scenario(args.scenario, hardware=args.hardware, devices=args.devices)
    with progress_bar(args, "searching" + (" and simulating the top layouts" if args.refine_des else "")) as progress:
        report = search_report(scenario, objective=args.objective, top=args.top, refine_des=args.refine_des,
                               progress=progress)
    if args.json:
        print_json(report)
    else:
        print(render(report))
    return 0


def layout_text(lay: dict) -> str:
    """One line per layout: degrees, mesh order, micro-batches, ZeRO, recomputation, capacity factor."""
    cf = "" if "capacity_factor" not in lay else "dropless" if lay["capacity_factor"] is None \
        else f"cf={lay['capacity_factor']:g}"  # a dense model has none
    return (f"dp={lay['dp']} tp={lay['tp']} ep={lay['ep']} pp={lay['pp']} etp={lay['etp']} edp={lay['edp']} "
            f"order={'-'.join(lay['order'])} mb={lay['micro_batches']} zero={lay['zero_stage']} "
            f"recompute={lay['recompute']} {cf}"
            + "".join(f" {k}={lay[k]}" for k in ("pipeline_schedule", "vp", "cp", "cp_comm")
                      if k in lay and lay[k] != "1f1b"))


def _closest_miss_text(miss: dict | None, capacity: float) -> list[str]:
    """The closest layouts, the smallest memory found and each lever tried (search.closest)."""
    if not miss or not miss["closest"]:
        return []
    rows = [(format_bytes(c["memory_bytes_per_device"]), format_bytes(c["over_capacity_bytes"]),
             format_seconds(c["step_time_s"]), layout_text(c["layout"])) for c in miss["closest"]]
    best = miss["closest"][0]
    parts = ["", f"closest: {format_bytes(miss['smallest_memory_bytes'])} per device is the least any valid layout "
                 f"needs ({format_bytes(capacity)} usable); "
                 + ", ".join(f"{k} {format_bytes(v)}" for k, v in best["memory_breakdown_bytes"].items()),
             table(rows, ["memory/device", "over by", "step time", "layout"], align="rrrl"),
             "", "what would make it fit (tried on the closest layout):"]
    parts += [f"  {'yes' if lv['fits'] else 'no '}  {lv['lever']}: {lv['detail']}" for lv in miss["levers"]]
    return parts


FOLDED_RANKS_SHOWN = 10  # skipped ranks the note under the top table names


def _folded_ranks_text(results: list[dict]) -> str | None:
    """The note under the top table when it skips ranks: those ranks are mesh-order twins of rows above it
    (rank.SearchResult.distinct), and how many orders each row stands for (None when no rank is skipped)."""
    ranks = [res["rank"] for res in results]
    skipped = sorted(set(range(1, ranks[-1] + 1)) - set(ranks)) if ranks else []
    if not skipped:
        return None
    named = ", ".join(map(str, skipped[:FOLDED_RANKS_SHOWN]))
    if len(skipped) > FOLDED_RANKS_SHOWN:
        named += f" and {len(skipped) - FOLDED_RANKS_SHOWN:,} more"
    several = [f"#{res['rank']} ({res['equivalent_orders']})" for res in results if res.get("equivalent_orders", 1) > 1]
    return (f"rank{'s' if len(skipped) > 1 else ''} {named} not shown: each is a row above in another mesh order "
            "with the same figures, folded into it; rows standing for several mesh orders (how many): "
            + ", ".join(several))


def _objective(value: float, unit: str) -> str:
    return f"{value:.4g} {unit}" if unit != "fraction of peak" else f"{value:.1%} MFU"


def render(r: dict) -> str:
    unit = r["objective_unit"]
    head = (f"{r['scenario']}: {r['devices']} x {r['hardware']}, layout search by {r['objective']} ({unit}); "
            f"usable memory {format_bytes(r['memory_capacity_bytes'])} per device")
    rejected = sum(r["rejected"].values())
    counts = [(f"{r['rejection_rules'][k]}  [{k}]", f"{v:,}") for k, v in r["rejected"].items() if v]
    parts = [head, f"considered {r['considered']:,} layouts: {r['ranked']:,} ranked, {rejected:,} rejected"]
    if r["objective"] == "cost":
        parts.append(f"cost: {r['cost_note']}")
    if counts:
        parts.append(table(counts, ["rejected because", "layouts"], align="lr"))
    sp_note = sequence_parallel_note(r["scenario"], r["rejected"])
    parts += [sp_note] if sp_note else []
    parts += [f"note: {n}" for n in r.get("unsearched_layout", ())]
    if r.get("equivalent_orders_folded"):
        parts.append(f"{r['equivalent_orders_folded']:,} ranked layouts repeat a better-ranked one in another mesh "
                     "order with the same figures: folded into it below (equivalent_orders in --json)")
    if not r["ranked"]:  # not `results`: --top 0 shows none of the ranked layouts
        parts.append("no layout is valid and fits in memory")
        parts += _closest_miss_text(r.get("closest_miss"), r["memory_capacity_bytes"])
    rows = [(res["rank"], format_seconds(res["step_time_s"]), format_bytes(res["memory_bytes_per_device"]),
             f"{res['mfu']:.1%}", _objective(res["objective_value"], unit), res["bottleneck"],
             layout_text(res["layout"])) for res in r["results"]]
    if rows:
        headers, align = ["rank", "step time", "memory/device", "MFU", r["objective"], "bottleneck", "layout"], "rrrrlll"
        if r["objective"] in ("step_time", "mfu"):  # the objective column would repeat the step time / the MFU
            rows = [row[:4] + row[5:] for row in rows]
            headers, align = headers[:4] + headers[5:], align[:4] + align[5:]
        parts += ["", f"top {len(rows)}", table(rows, headers, align=align)]
        folded = _folded_ranks_text(r["results"])
        parts += [folded] if folded else []
        parts += ["", "why each ranks where it does (step parts against #1, memory)"]
        parts += [f"  #{res['rank']}: {res['why']}" for res in r["results"]]
    warnings = dict.fromkeys(w for res in r["results"] for w in res["estimate"].get("warnings", ()))
    parts += [f"warning: {w}" for w in warnings]
    for res in r["results"]:
        e = res["estimate"]
        mem = e["memory_bytes_per_device"]
        parts += ["", kv_block(f"#{res['rank']} breakdown per step", [
            ("compute", format_seconds(e["compute_time_s"])),
            ("communication, exposed / all", f"{format_seconds(e['exposed_communication_time_s'])} / "
                                             f"{format_seconds(e['communication_time_s'])}"),
            ("pipeline bubble", format_seconds(e["bubble_time_s"])),
            ("optimizer step", format_seconds(e["optimizer_time_s"])),
            ("cost", f"{res['device_hours_per_trillion_tokens']:,.0f} device-hours per trillion tokens"
                     + (f", {res['usd_per_step']:.4g} USD/step, {res['usd_per_trillion_tokens']:,.0f} USD per "
                        "trillion tokens" if res.get("usd_per_step") is not None else "")),
            ("memory per device", ", ".join(f"{k} {format_bytes(v)}" for k, v in mem.items() if k != "total")),
            ("bottleneck", res["bottleneck"]),
        ])]
    if r.get("refined"):
        rows = [(x["rank"], format_seconds(x["analytical_step_time_s"]), format_seconds(x["simulated_step_time_s"]),
                 f"{x['simulated_over_analytical']:.3f}", layout_text(x["layout"])) for x in r["refined"]]
        parts += ["", "refined with the discrete-event simulator (fastest simulated first)",
                  table(rows, ["rank", "analytical", "simulated", "ratio", "layout"], align="rrrrl")]
        twins = sum(x.get("equivalent_orders_not_simulated", 0) for x in r["refined"])
        if twins:  # the simulator reads the mesh order (axis strides): a twin's simulated time may differ
            parts.append(f"{twins:,} layouts in another mesh order folded into these rows were not simulated "
                         "(their simulated times may differ; simulate one with moesim simulate --layout)")
    if r["pareto"]:
        rows = [(p["rank"], format_seconds(p["step_time_s"]), format_bytes(p["memory_bytes_per_device"]),
                 f"{p['mfu']:.1%}", layout_text(p["layout"])) for p in r["pareto"]]
        parts += ["", f"Pareto front: step time vs memory per device ({len(rows)} layouts)",
                  table(rows, ["rank", "step time", "memory/device", "MFU", "layout"], align="rrrrl")]
    return "\n".join(parts)
