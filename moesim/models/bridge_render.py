"""The generated Megatron-Bridge blocks of docs/operators.md (scripts/bridge_perf_check.py writes and checks them):
moesim's priced rows against the published ones, what a row runs that moesim does not write, the summaries and the
release-to-release spread (session 25, tidy25: moved out of moesim/models/bridge_perf.py, which still exports every
name). Error = moesim / published − 1 (negative: moesim too fast).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from moesim.collectives.dispatch import hybridep_published_ranks
from moesim.models.bridge_rows import HARDWARE, HARDWARE_LABEL, MODEL_LABEL, PRECISION_RECIPE, BridgeRow
from moesim.units import format_fraction_pct as _pct

if TYPE_CHECKING:
    from moesim.models.bridge_perf import Priced

# The estimate's parts of a row's step time (Priced.parts_s's keys), the block's last table's columns
PARTS = ("compute", "exposed communication", "bubble", "optimizer")
# The page's releases in order (megatron_bridge_moe.toml's three, then the newer file's six).
RELEASES = ("25.09", "25.11", "26.02", "26.02.01", "26.04", "26.04.01", "26.06", "26.06.01", "26.08")
OLDER_RELEASES = RELEASES[:3]  # megatron_bridge_moe.toml's releases, whose recipes were searched for every row
FLOP_SPREAD = 0.10  # a row's GFLOP per token this far from its model's median is named (printed columns disagree)


def flop_outlier(row: BridgeRow, rows: tuple[BridgeRow, ...]) -> str:
    """Why the row's two printed columns disagree with its model's other rows ("" when they agree): the same model,
    sequence and MTP give the same model FLOPs per token, so Model TFLOP/s over tokens/s should match."""
    same = [r.published_gflop_per_token for r in rows if (r.model, r.mtp, r.seq_len) == (row.model, row.mtp,
                                                                                         row.seq_len)]
    median = float(np.median(same))
    if abs(row.published_gflop_per_token / median - 1) <= FLOP_SPREAD:
        return ""
    return (f"the page's own columns disagree: {row.published_gflop_per_token:.1f} GFLOP per token against "
            f"{median:.1f} on the model's other rows (tokens/s or TFLOP/s misprinted)")


@lru_cache(maxsize=None)
def _num_layers(model: str) -> int:
    from moesim.specs.model_file import load_model

    return load_model(model).num_layers


def not_written(p: Priced, rows: tuple[BridgeRow, ...] = ()) -> list[str]:
    """What the row ran that moesim's scenario does not write as published, and where the row's own printed
    figures disagree (`rows`: the table it is checked against; none: no check)."""
    r = p.row
    out = [text for text in [flop_outlier(r, rows)] if text] if rows else []
    if p.vp != r.vp:
        out.append(f"vp {r.vp} priced as 1F1B (uneven chunks the row's recipe does not name)")
    layers = _num_layers(r.model)
    if layers % r.pp and not (r.first_stage_layers or r.last_stage_layers or r.pipeline_layout):
        out.append(f"split of {layers} layers over pp {r.pp} not stated (moesim's rule)")
    if r.dispatcher == "hybridep" and r.ep > hybridep_published_ranks(r.hardware):
        out.append(f"HybridEP at ep {r.ep}: no published rate for so many ranks on {HARDWARE_LABEL[r.hardware]} "
                   "(the largest published rank count's rate priced)")
    if "moe_preprocess" in r.cuda_graph_scope:  # moesim.ops.graphs: no operator of the list is MoELayer.preprocess
        out.append("CUDA graph of moe_preprocess: its metadata kernels are not in moesim's operator list")
    if r.moe_a2a_overlap == "on" and p.vp == 1 and r.pp > 1:
        out.append("EP all-to-all overlap not priced (Megatron runs it interleaved; vp priced as 1F1B)")
    if not r.recompute:
        out.append("recompute not stated (moesim's rule: the least that fits)")
    if not p.fits:
        out.append("moesim's memory estimate does not fit the device")
    if not r.recipe and r.release in OLDER_RELEASES:
        out.append("no recipe at the page's commit matches the row (split, dispatcher, graphs unknown)")
    elif not r.recipe:
        out.append("the release's recipe not read (split, dispatcher, graphs unknown)")
    out += list(r.assumed)
    return out


def same_release(row: BridgeRow, rows: tuple[BridgeRow, ...]) -> tuple[BridgeRow, ...]:
    return tuple(r for r in rows if r.release == row.release)


def _summary(label: str, ps: list[Priced]) -> str:
    a = np.array([p.step_error for p in ps])
    worst = a[np.argmax(np.abs(a))]
    return f"| {label} | {len(a)} | {_pct(a.mean())} | {_pct(np.abs(a).mean(), False)} | {_pct(worst)} |"


def render_block(priced: list[Priced], by_release: bool = False) -> str:
    """The generated block of docs/operators.md (without its BEGIN / END marker lines). `by_release`: a row's
    printed columns are checked against its own release's rows only (the page's FLOP count may change between
    releases: GPT-OSS-120B's is 27.2 GFLOP per token to 26.04.01, 32.6 from 26.06)."""
    out = ["| case (release, system, model as printed) | precision (recipe) | layout (GBS, MBS) | "
           "published tokens/s/GPU | published GFLOP/token | published step s | moesim step s | error | "
           "simulator s (vs estimate) | recompute priced (GiB, fits) | not written as published / assumed |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    rows = tuple(p.row for p in priced)
    for p in priced:
        r = p.row
        des = "" if p.des_step_s is None else f"{p.des_step_s:.3f} ({_pct(p.des_step_s / p.step_s - 1)})"
        prec = r.precision + ("" if r.precision_stated else " (assumed)")
        out.append(f"| `{r.case}` ({r.release}, {r.system}, {r.source_model}) | {prec} "
                   f"(`{PRECISION_RECIPE[r.precision]}`) | {r.layout_text} ({r.gbs}, {r.mbs}) | "
                   f"{r.tokens_per_s_per_gpu:.0f} | {r.published_gflop_per_token:.1f} | {r.published_step_s:.3f} | "
                   f"{p.step_s:.3f} | "
                   f"{_pct(p.step_error)} | {des} | {p.recompute} ({p.memory_gib:.1f}, "
                   f"{'yes' if p.fits else 'no'}) | "
                   f"{'; '.join(not_written(p, same_release(r, rows) if by_release else rows))} |")
    out += ["", "Summary (error = moesim / published − 1 on the step time; negative: moesim too fast):", "",
            "| rows | n | mean | mean abs | worst |", "|---|---:|---:|---:|---:|"]
    groups = [(f"{HARDWARE_LABEL[h]} {MODEL_LABEL[m]}", [p for p in priced if p.row.hardware == h
                                                        and p.row.model == m])
              for h in HARDWARE for m in MODEL_LABEL]
    groups += [(HARDWARE_LABEL[h], [p for p in priced if p.row.hardware == h]) for h in HARDWARE]
    groups += [(MODEL_LABEL[m], [p for p in priced if p.row.model == m]) for m in MODEL_LABEL]
    groups += [("rows priced with the published vp and fitting moesim's memory", [p for p in priced
                                                                               if p.vp == p.row.vp and p.fits]),
               ("all rows", priced)]
    out += [_summary(label, ps) for label, ps in groups if ps]
    out += ["", "Where moesim's step time goes (the estimate's parts, seconds; communication counted where not "
            "hidden under compute):", "", "| case | " + " | ".join(PARTS) + " | moesim step s | published step s |",
            "|---|" + "---:|" * (len(PARTS) + 2)]
    out += [f"| `{p.row.case}` | " + " | ".join(f"{p.parts_s[k]:.3f}" for k in PARTS)
            + f" | {p.step_s:.3f} | {p.row.published_step_s:.3f} |" for p in priced]
    return "\n".join(out)


def same_run(row: BridgeRow) -> tuple:
    """What makes two releases' rows one run to moesim: system, model, precision recipe, GPUs, batch and layout."""
    return (row.hardware, row.model, PRECISION_RECIPE[row.precision], row.gpus, row.gbs, row.mbs, row.seq_len,
            row.tp, row.pp, row.cp, row.vp, row.ep)


def release_spread(rows: tuple[BridgeRow, ...]) -> list[tuple[tuple, list[BridgeRow]]]:
    """Runs published in more than one release with the same layout (moesim prices them alike but for what a
    row's recipe states), each with its rows in release order."""
    runs: dict[tuple, list[BridgeRow]] = {}
    for r in rows:
        runs.setdefault(same_run(r), []).append(r)
    return [(key, sorted(rs, key=lambda r: RELEASES.index(r.release))) for key, rs in runs.items() if len(rs) > 1]


def render_newer_block(priced: list[Priced], older: tuple[BridgeRow, ...]) -> str:
    """The generated block of the 26.02.01-26.08 rows: the same table and summaries as `render_block`, per-release
    means, and the release-to-release spread of the published throughput of one run (the older table's rows
    included: `older`)."""
    out = [render_block(priced, by_release=True), "", "Per release (error as above):", "",
           "| release | n | mean | mean abs | worst |", "|---|---:|---:|---:|---:|"]
    out += [_summary(rel, [p for p in priced if p.row.release == rel]) for rel in RELEASES
            if any(p.row.release == rel for p in priced)]
    error = {p.row.case: p.step_error for p in priced}
    out += ["", "The same run (system, model, precision, GPUs, GBS, MBS, layout) published in several releases: "
            "tokens / s / GPU per release (moesim's error where this block prices the row), and the spread "
            "(highest / lowest − 1), which no per-run pricing can follow:", "",
            "| run | releases: tokens/s/GPU (error) | spread |", "|---|---|---:|"]
    for _key, rs in release_spread(older + tuple(p.row for p in priced)):
        r = rs[0]
        cells = "; ".join(f"{x.release}: {x.tokens_per_s_per_gpu:.0f}"
                          + (f" ({_pct(error[x.case])})" if x.case in error else "") for x in rs)
        tokens = [x.tokens_per_s_per_gpu for x in rs]
        out.append(f"| {HARDWARE_LABEL[r.hardware]} {MODEL_LABEL[r.model]} {r.precision} {r.layout_text} "
                   f"(GBS {r.gbs}, MBS {r.mbs}) | {cells} | {_pct(max(tokens) / min(tokens) - 1, False)} |")
    return "\n".join(out)
