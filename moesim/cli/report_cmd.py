"""`moesim report SCENARIO -o report.html`: one self-contained HTML page of figures for a scenario."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from moesim.cli.estimate_cmd import add_scenario_overrides
    from moesim.cli.progress import add_quiet

    p = subparsers.add_parser(
        "report", help="HTML report: step-time breakdown, memory, Pareto front, communication, sensitivity",
        description="Write one self-contained HTML page (plotly inlined, opens offline) with the step-time "
                    "breakdown of the scenario's layout and alternatives, memory per device against HBM, their "
                    "Pareto front, communication per mesh axis, sensitivity to capacity factor and expert count, "
                    "and optionally the simulated timeline and measured-vs-predicted Switch-layer phases.")
    add_scenario_overrides(p)
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    p.add_argument("--results", help="validate/ results (JSONL with \"kind\": \"switch_layer\" records) to plot "
                                     "against the analytical prediction (default: none, no measured figure)")
    p.add_argument("--results-hardware", help="hardware profile the results were measured on (default: the "
                                              "scenario's)")
    p.add_argument("--simulate", action="store_true", help="add the simulated timeline (needs moesim.des)")
    add_quiet(p)
    p.add_argument("--json", action="store_true",
                   help='machine-readable output: {"output": FILE, "figures": [...], "notes": [...]}')
    p.set_defaults(run=run)


REPORT_SUFFIXES = (".html", ".htm")  # the page is HTML whatever the name: another suffix would mislabel it


def run(args: argparse.Namespace) -> int:
    from moesim.cli.estimate_cmd import layout_source
    from moesim.cli.progress import progress_bar
    from moesim.errors import SpecError
    from moesim.report import write_report
    from moesim.specs.load import load_scenario

    suffix = Path(args.output).suffix
    if suffix.lower() not in REPORT_SUFFIXES:  # before anything runs, so nothing is written
        raise SpecError("the report is an HTML page: give -o a path ending in .html or .htm", file=str(args.output),
                        field="--output", value=suffix, allowed=REPORT_SUFFIXES)
    scenario = load_scenario(args.scenario, hardware=args.hardware, devices=args.devices, layout=args.layout)
    layout = scenario.resolve(source=layout_source(args))
    with progress_bar(args, "building the report" + (" and simulating" if args.simulate else "")) as progress:
        report = write_report(args.output, scenario, layout, results=args.results,
                              results_hardware=args.results_hardware, simulate=args.simulate, progress=progress)
    if args.json:
        from moesim.cli.output import print_json

        print_json({"output": str(args.output), "figures": list(report.figures), "notes": list(report.notes)})
        return 0
    print(f"wrote {args.output}: {len(report.figures)} figures ({', '.join(report.figures)})")
    for note in report.notes:
        print(f"  note: {note}")
    return 0
