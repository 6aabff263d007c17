"""moesim against SimuMax's own model of the B200 release rows, operator by operator (validation only).

    python scripts/simumax_diff.py --extract CLONE [--record DIR]   # run SimuMax, write its per-operator record
    python scripts/simumax_diff.py [--write | --check]              # the comparison block of docs/operators.md

`--extract` runs SimuMax (MooreThreads/SimuMax @ 4dcaae51, Apache-2.0; a clone at CLONE with its pure-Python
requirements importable: numpy, pandas, tqdm, tabulate) on the rows of moesim.models.simumax_diff.ROWS the way its
own release pipeline does (tools/b200/run_megatron_perf_real_pipeline.py `configure_perf`, system
configs/system/b200_bf16_ceperm.json, TE 2.11, no straggler model, `cross_entropy_loss_fusion` for the `_cef` cases)
and writes tests/data/b200/simumax_ops_4dcaae51.csv (one row per leaf module of each pipeline stage, the same module
of every layer merged: forward, dgrad, wgrad and communication µs per call, the part of them that is SimuMax's
per-kernel `latency_us` floor) and simumax_steps_4dcaae51.csv (per row: SimuMax's step, its schedule without the
data-parallel collectives and optimizer, those two). Nothing of SimuMax is copied into moesim: its figures are a
record of its output, read by the comparison. Without `--extract` the script prints (or writes, or checks) the
comparison block "moesim against SimuMax, operator by operator" of docs/operators.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import importlib.util
import io
import re
import sys
import warnings
from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.models.simumax_diff import OP_FIELDS, OPS_RECORD, ROWS, STEP_FIELDS, STEPS_RECORD  # noqa: E402
from moesim.models.simumax_diff import render_block  # noqa: E402
from scripts.docblock import block_main  # noqa: E402

DOC = ROOT / "docs" / "operators.md"
BEGIN = "<!-- BEGIN simumax_diff: python scripts/simumax_diff.py --write -->"
END = "<!-- END simumax_diff -->"
SYSTEM_REL = "configs/system/b200_bf16_ceperm.json"  # the release table's one system (its SYSTEMS list)
STAGES = ("fwd", "bwd_grad_act", "bwd_grad_w")


def _pipeline_module(clone: Path):
    """SimuMax's own release pipeline module (it builds each case's PerfLLM)."""
    sys.path.insert(0, str(clone))
    path = clone / "tools" / "b200" / "run_megatron_perf_real_pipeline.py"
    spec = importlib.util.spec_from_file_location("simumax_release_pipeline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _case(pipe, row):
    """The release pipeline's case dict for one row (its dense_case / moe_case, as its CASES list builds them)."""
    strategy = f"configs/strategy/{row.strategy}.json"
    if row.moe:
        case = pipe.moe_case(row.case, strategy_rel=strategy, parallel=row.parallel, layer_num=row.layers,
                             micro_batch_num=row.micro_batches, pp_size=row.pp, ep_size=row.ep)
    else:
        case = pipe.dense_case(row.case, model_rel=f"configs/models/{row.model}.json", model_name=row.model,
                               model_type_arg=row.model.replace("-", "_"), strategy_rel=strategy,
                               parallel=row.parallel, layer_num=row.layers, tp_size=row.tp, pp_size=row.pp,
                               micro_batch_num=row.micro_batches)
    case = copy.deepcopy(case)
    case["strategy_overrides"]["cross_entropy_loss_fusion"] = row.case.endswith("_cef")
    return case


def _floor_us(leaf) -> float:
    """The part of a leaf's time that is SimuMax's per-kernel `latency_us` (its memory-access time adds it to each
    priced pass, simumax/core/config.py `compute_mem_access_time`; it counts where the pass is memory-bound)."""
    details = getattr(leaf, "details", {}) or {}
    out = 0.0
    for stage in STAGES:
        d = details.get(stage)
        if not d:
            continue
        io_ms, compute_ms = d["io_details"]["io_time"], d["compute_details"]["compute_only_time"]
        if io_ms > 0 and io_ms >= compute_ms:
            out += d["io_details"]["latency_us"]
    return out


def extract(clone: Path, record_dir: Path) -> None:
    pipe = _pipeline_module(clone)
    ops_rows, step_rows = [], []
    for row in ROWS:
        perf = pipe.configure_perf(_case(pipe, row), SYSTEM_REL)
        perf.strategy.enable_straggler_model = False
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            perf.run_estimate()
            cost = perf.analysis_cost().data
        merged: dict[tuple, dict] = {}
        for stage_name, chunk in perf.model_chunk_dict.items():
            for leaf in chunk.get_all_leaf_modules():
                c = leaf.get_cost_info()
                vals = {"fwd_us": c.fwd_compute_time, "dgrad_us": c.bwd_grad_act_time, "wgrad_us": c.bwd_grad_w_time,
                        "net_fwd_us": c.fwd_net_time, "net_bwd_us": c.bwd_net_time}
                if not any(vals.values()):
                    continue
                module = re.sub(r"^self\.", "", re.sub(r"\.layer_\d+\.", ".layer.", leaf.full_name))
                vals = {k: round(v * 1e3, 4) for k, v in vals.items()}  # SimuMax's ms -> µs
                key = (stage_name, module, type(leaf).__name__, tuple(vals.values()))
                entry = merged.setdefault(key, {"case": row.case, "stage": stage_name, "module": module,
                                                "cls": type(leaf).__name__, "calls": 0, **vals,
                                                "floor_us": round(_floor_us(leaf), 4)})
                entry["calls"] += 1
        ops_rows += merged.values()
        chunk_times = cost["all_chunk_times"]
        # the stage that sets the step; on a tie the last (it holds the head, the stage moesim's breakdown reads)
        worst = max(reversed(list(chunk_times)),
                    key=lambda k: _ms(chunk_times[k]["duration_time(chunk_timexmbc+dp_optim+bubble)"]))
        step_rows.append({
            "case": row.case, "step_ms": round(_ms(cost["duration_time_per_iter"]), 4),
            "dp_and_optim_ms": round(_ms(chunk_times[worst]["dp_and_optim_time"]), 4),
            "optimizer_ms": round(_ms(cost["breakdown_result"]["optim_time"]), 4),
            "dp_ms": round(_ms(cost["breakdown_result"]["dp_exposed_time"]), 4),
            "bubble_ms": round(_ms(chunk_times[worst]["bubble_time"]), 4) + 0.0,  # no "-0.0" in the record
        })
    record_dir.mkdir(parents=True, exist_ok=True)
    for path, fields, rows in ((record_dir / OPS_RECORD.name, OP_FIELDS, ops_rows),
                               (record_dir / STEPS_RECORD.name, STEP_FIELDS, step_rows)):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {path} ({len(rows)} rows)")


def _ms(text) -> float:
    """SimuMax's human-format durations ("255.7115 ms")."""
    if isinstance(text, (int, float)):
        return float(text)
    value, unit = str(text).split()
    return float(value) * {"ms": 1.0, "s": 1e3, "us": 1e-3}[unit]


def render() -> str:
    return render_block()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--extract" in argv:
        p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        p.add_argument("--extract", type=Path, required=True, metavar="CLONE", help="a SimuMax clone @ 4dcaae51")
        p.add_argument("--record", type=Path, default=OPS_RECORD.parent, help="where the two CSVs go")
        args = p.parse_args(argv)
        extract(args.extract.resolve(), args.record)
        return 0
    return block_main(argv, __doc__.splitlines()[0], DOC, BEGIN, END, render, "simumax_diff")


if __name__ == "__main__":
    sys.exit(main())
