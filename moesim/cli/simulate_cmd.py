"""`moesim simulate SCENARIO`: simulated step times (discrete-event) beside the analytical estimate."""

from __future__ import annotations

import argparse
import warnings

from moesim.cli.estimate_cmd import add_scenario_overrides, layout_source, routing_rows
from moesim.cli.output import kv_block, print_json, table
from moesim.cli.progress import add_quiet, progress_bar
from moesim.units import format_bytes, format_seconds


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate", help="discrete-event simulation of training steps: contention, routing imbalance, overlap",
        description="Simulate training steps with the analytical model's per-operation costs plus link contention "
                    "(max-min fair flows), sampled token routing with capacity drops, compute/communication overlap, "
                    "pipeline schedules, stragglers and kernel noise. Prints step-time statistics beside the "
                    "analytical estimate.")
    add_scenario_overrides(p)
    p.add_argument("--routing", default="uniform",
                   help="uniform | zipf:S (popularity ∝ rank^-S, permuted per layer) | histogram file "
                        "(.json/.csv); default uniform")
    p.add_argument("--expected-loads", action="store_true",
                   help="every routing group gets exactly its expected loads (no sampling noise)")
    p.add_argument("--sampler", default="auto", choices=("auto", "gumbel", "multinomial", "moments"),
                   help="routing sampler: auto (default: exact per token unless too large; says which in the "
                        "mode reason), gumbel (exact top-k), multinomial (with replacement), moments (dropless: "
                        "per-rank counts from a normal law with the per-token mean and covariance; approximate)")
    p.add_argument("--steps", type=int, default=5, help="training steps to simulate (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--chunks", type=int, default=1,
                   help="split each MoE layer's all-to-alls and experts into C overlapped chunks (Tutel; default 1: "
                        "no chunking)")
    p.add_argument("--no-contention", action="store_true",
                   help="every transfer runs alone on the network (the analytical model's assumption)")
    p.add_argument("--straggler-fraction", type=float, default=0.0,
                   help="fraction of devices slowed, per step (0 to 1; default 0: none)")
    p.add_argument("--straggler-slowdown", type=float, default=1.0,
                   help="compute slowdown factor of a straggler (>= 1; default 1: none)")
    p.add_argument("--noise", type=float, default=0.0, metavar="SIGMA",
                   help="per-kernel lognormal noise sigma (mean-one multiplier; default 0: none)")
    p.add_argument("--mode", default="auto", choices=("auto", "full", "aggregated"),
                   help="fold devices with identical timelines into one (auto: whenever some do; exact), or "
                        "simulate every device (default auto)")
    p.add_argument("--engine", default="fast", choices=("fast", "simpy"),
                   help="fast (default) or the simpy reference engine (every device, slow; for checking)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--trace", metavar="FILE",
                   help="write the first step as Chrome trace-event JSON (Perfetto; default: none written)")
    add_quiet(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from moesim.des import SimOptions, simulate
    from moesim.des.trace import write_chrome_trace
    from moesim.megatron_rules import megatron_layout_warnings
    from moesim.specs.load import load_scenario

    scenario = load_scenario(args.scenario, hardware=args.hardware, devices=args.devices, layout=args.layout)
    options = SimOptions(routing=args.routing, expected_loads=args.expected_loads, sampler=args.sampler,
                         steps=args.steps, seed=args.seed,
                         contention=not args.no_contention, chunks=args.chunks,
                         straggler_fraction=args.straggler_fraction, straggler_slowdown=args.straggler_slowdown,
                         noise_sigma=args.noise, mode=args.mode, trace=bool(args.trace), engine=args.engine)
    layout = scenario.resolve(source=layout_source(args))
    said = megatron_layout_warnings(scenario, layout)
    for text in said:  # said on stderr once the run succeeds (cli/__init__)
        warnings.warn(text, stacklevel=1)
    with progress_bar(args, "simulating") as progress:
        result = simulate(scenario, layout, options, progress=progress)
    data = result.as_dict()
    if args.trace:
        trace = result.chrome_trace()
        write_chrome_trace(args.trace, trace)
        data["trace"] = {"file": args.trace, "events": len(trace["traceEvents"])}
    if args.json:
        print_json(data)
        return 0
    print(render(data, said_on_stderr=said))
    return 0


def _dropped_text(d: dict) -> str:
    """Dropped share of token-expert assignments; says dropless / no MoE instead of a missing figure."""
    if d["dropped_token_fraction"] is None:
        return "none (no mixture-of-experts layers)"
    if d["expected_drop_fraction_uniform"] is None:
        return f"{_pct(d['dropped_token_fraction'])} (dropless routing: no capacity bound)"
    return f"{_pct(d['dropped_token_fraction'])} (expected under uniform routing {_pct(d['expected_drop_fraction_uniform'])})"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.3%}"


def render(d: dict, said_on_stderr=()) -> str:
    """simulate's text; the estimate's warnings as `warning:` lines but those already given on stderr."""
    lay, o, st = d["layout"], d["options"], d["step_time_s"]
    more = "".join(f" {k}={lay[k]}" for k in ("vp", "cp", "cp_comm") if k in lay)  # only when not the default
    head = (f"{d['scenario']}: {d['devices']} x {d['hardware']}, layout dp={lay['dp']} tp={lay['tp']} ep={lay['ep']} "
            f"pp={lay['pp']} etp={lay['etp']}{more}, micro-batches {lay['micro_batches']} "
            f"({lay['pipeline_schedule']})")  # as estimate's head; was "1 micro-batches"
    what = (f"routing {o['routing']}{' (expected loads)' if o['expected_loads'] else ''}, steps {o['steps']}, "
            f"seed {o['seed']}, contention {'on' if o['contention'] else 'off'}, chunks {o['chunks']}")
    if o["straggler_fraction"] and o["straggler_slowdown"] > 1:
        what += f", stragglers {o['straggler_fraction']:g} x{o['straggler_slowdown']:g}"
    if o["noise_sigma"]:
        what += f", kernel noise sigma {o['noise_sigma']:g}"
    mode = (f"every device ({d['devices']:,})" if d["mode"] == "full"
            else f"aggregated: {d['simulated_devices']:,} of {d['devices']:,} devices, one per class")
    idle = d["idle_time_s"]
    rows = [
        ("simulated", mode),
        ("why", d["mode_reason"]),
        ("step time p50 / p99", f"{format_seconds(st['p50'])} / {format_seconds(st['p99'])}"),
        ("step time mean (min..max)", f"{format_seconds(st['mean'])} ({format_seconds(st['min'])}.."
                                      f"{format_seconds(st['max'])})"),
        ("analytical estimate", f"{format_seconds(d['analytical_step_time_s'])} "
                                f"(simulated mean {d['relative_difference']:+.2%})"),
        ("dropped tokens", _dropped_text(d)),
        ("compute idle per device", f"mean {format_seconds(idle['mean'])}, min {format_seconds(idle['min'])}, "
                                    f"max {format_seconds(idle['max'])}"),
        ("events", f"{d['events']:,} in {d['engine_time_s']:.2f} s of engine time"
                   + (f" ({d['events_per_s']:,.0f}/s)" if d["events_per_s"] else "")
                   + f"; {d['wall_time_s']:.2f} s wall "
                   "in all (routing, set-up)"),
    ]
    if "trace" in d:
        rows.append(("trace", f"{d['trace']['file']} ({d['trace']['events']:,} trace events)"))
    links = [(r["link"], f"{r['utilisation']:.1%}", format_bytes(r["carried_bytes"]),
              f"{r['capacity_bytes_per_s'] / 1e9:,.0f} GB/s", r["peak_concurrent_flows"]) for r in d["busiest_links"]]
    parts = [head, what, "", kv_block("simulated step", rows)]
    if links:
        parts += ["", "busiest links (last step)",
                  table(links, ["link", "utilisation", "carried", "capacity", "peak flows"], align="lrrrr")]
    if d.get("moe"):  # the estimate's routing lines (its `moe`), as `estimate` prints them; drops are said above
        parts += ["", kv_block("MoE routing (analytical)", routing_rows(d["moe"]))]
    parts += [f"warning: {w}" for w in d.get("warnings", ()) if w not in said_on_stderr]
    return "\n".join(parts)
