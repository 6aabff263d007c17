"""DeepSeek's H800 training trace, kernel by kernel, against moesim's DeepSeek-V3 operators.

    python scripts/dsv3_trace.py --extract [--trace train.json] [--record tests/data/dsv3_trace/train_kernels.csv]
    python scripts/dsv3_trace.py [--record ...] [--write]

Source: github.com/deepseek-ai/profile-data at commit 449602428a1b023acb8a505d4f34fef536535db6, train.json: a PyTorch
profiler trace (chrome trace format) of one DualPipe pair of a forward and a backward chunk, 4 MoE layers each,
EP64, TP1, 4096-token sequences, "absolutely balanced" routing, PP communication not included (its README.md).
`--extract` reads it (by default from the fetched mirror, `git show HEAD:train.json`) and writes one CSV row per GPU
kernel: the annotated phase that launched it (the trace's own user annotations: attn(F), mlp(B), dispatch(F), ...),
which occurrence of that phase (the layer within the chunk, 0-3), stream, start (us from the first kernel),
duration (us), launch order, a short kernel name and the grid. Without it, the script groups the record's kernels
into moesim's operators by the rules of scripts/dsv3_trace.toml and prints, per operator, the measured time per
layer (the mean over the 4 layers of each layer's summed kernel time) beside moesim's priced time for one layer and
micro-batch of scenarios/deepseek-v3-h800.toml, the per-device shapes the trace implies, which kernels ran beside
DeepEP's, and the chunk pair's wall span (an end-to-end figure: validation only, never fitted); --write puts that in
docs/operators.md's marked block; --points prints the op tables imported into hardware_profiles/h800.toml.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from _repo_root import ROOT  # noqa: F401  (first: this checkout's root on sys.path; scripts/_repo_root.py)

MIRROR_GIT_DIR = Path("/work/.mirror/deepseek-ai+profile-data/repo")
SOURCE = "github.com/deepseek-ai/profile-data@449602428a1b023acb8a505d4f34fef536535db6 train.json"
RECORD = ROOT / "tests" / "data" / "dsv3_trace" / "train_kernels.csv"
RULES = ROOT / "scripts" / "dsv3_trace.toml"
SCENARIO = ROOT / "scenarios" / "deepseek-v3-h800.toml"
GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
COMM_STREAM = 27  # DeepEP's kernels (dpsk::ep::internode::*) all run on stream 27 in this trace
FIELDS = ("phase", "layer", "stream", "start_us", "dur_us", "order", "kernel", "grid")


class TraceError(ValueError):
    """A trace, record or rules file this script cannot read (the message names the file and the field)."""


class Kernel(NamedTuple):
    """One GPU kernel of the trace (times in microseconds, as the profiler writes them)."""

    phase: str  # the user annotation whose time range holds the kernel's launch, e.g. "attn(F)"
    layer: int  # which occurrence of that phase in the trace: the layer of the chunk, 0-3
    stream: int
    start_us: int  # from the first kernel's start
    dur_us: int
    order: int  # launch order (the profiler's correlation id)
    kernel: str  # short name (short_name)
    grid: str  # "x,y,z"; "" for memcpy / memset


def short_name(name: str) -> str:
    """A kernel's name without `void `, its template arguments and its parameter list; the operator inside a
    `cutlass::device_kernel<...>`; at most 60 characters."""
    n = name.replace("void ", "", 1).strip()
    if n.startswith("cutlass::device_kernel<"):
        n = n[len("cutlass::device_kernel<"):]
    return re.split(r"[<(]", n)[0].rstrip(">").strip()[:60]


def load_trace(path: Path | None) -> dict:
    """The trace as a dict: from `path`, or, without one, from the fetched mirror's HEAD:train.json."""
    try:
        if path is None:
            text = subprocess.run(["git", f"--git-dir={MIRROR_GIT_DIR}", "show", "HEAD:train.json"], check=True,
                                  capture_output=True, text=True).stdout
            where = f"{MIRROR_GIT_DIR}:train.json"
        else:
            text, where = Path(path).read_text(), str(path)
        trace = json.loads(text)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError) as exc:
        raise TraceError(f"{path or MIRROR_GIT_DIR}: cannot read the trace ({exc})") from exc
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        raise TraceError(f"{where}: field 'traceEvents' missing (a chrome trace is a JSON object with a list there)")
    return trace


def extract_kernels(trace: dict) -> list[Kernel]:
    """Every GPU kernel, memcpy and memset of the trace, with the annotated phase whose time range holds its launch
    (the CPU runtime call of the same correlation id), sorted by stream, then launch order."""
    events = trace["traceEvents"]
    launches = {e["args"]["correlation"]: e["ts"] for e in events
                if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    phases = sorted((e for e in events if e.get("cat") == "user_annotation" and "(" in e.get("name", "")),
                    key=lambda e: e["ts"])
    seen: dict[str, int] = {}
    spans = []
    for a in phases:
        spans.append((a["ts"], a["ts"] + a["dur"], a["name"], seen.get(a["name"], 0)))
        seen[a["name"]] = seen.get(a["name"], 0) + 1
    gpu = [e for e in events if e.get("cat") in GPU_CATEGORIES]
    if not gpu:
        raise TraceError("trace: no events of cat 'kernel' in 'traceEvents'")
    t0 = min(e["ts"] for e in gpu)
    out = []
    for e in gpu:
        corr = e["args"]["correlation"]
        t = launches.get(corr)
        hit = next(((name, k) for lo, hi, name, k in spans if t is not None and lo <= t <= hi), ("", -1))
        grid = ",".join(str(g) for g in e["args"]["grid"]) if "grid" in e["args"] else ""
        out.append(Kernel(hit[0], hit[1], int(e["tid"]), int(e["ts"] - t0), int(e["dur"]), int(corr),
                          short_name(e["name"]), grid))
    return sorted(out, key=lambda k: (k.stream, k.order))


def write_record(kernels: list[Kernel], path: Path) -> None:
    """The compact derived record: one CSV row per kernel (FIELDS), headed by the source line."""
    with open(path, "w", newline="") as f:
        f.write(f"# {SOURCE}: GPU kernels, written by scripts/dsv3_trace.py --extract\n")
        w = csv.writer(f)
        w.writerow(FIELDS)
        for k in kernels:
            w.writerow([getattr(k, name) for name in FIELDS])


def read_record(path: Path) -> list[Kernel]:
    """The kernels of a record written by write_record."""
    try:
        lines = [ln for ln in Path(path).read_text().splitlines() if not ln.startswith("#")]
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the kernel record ({exc})") from exc
    rows = list(csv.DictReader(lines))
    if not rows or tuple(rows[0]) != FIELDS:
        raise TraceError(f"{path}: header must be {','.join(FIELDS)}")
    try:
        return [Kernel(r["phase"], int(r["layer"]), int(r["stream"]), int(r["start_us"]), int(r["dur_us"]),
                       int(r["order"]), r["kernel"], r["grid"]) for r in rows]
    except ValueError as exc:
        raise TraceError(f"{path}: a row's layer / stream / start_us / dur_us / order is not an integer ({exc})") \
            from exc


def load_rules(path: Path = RULES) -> list[dict]:
    """The grouping rules of scripts/dsv3_trace.toml (phase, kernel substring, optional nth, operator, pass)."""
    import tomllib

    try:
        rules = tomllib.loads(Path(path).read_text())["rule"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise TraceError(f"{path}: cannot read the [[rule]] tables ({exc})") from exc
    for i, r in enumerate(rules):
        missing = {"phase", "kernel", "operator", "pass"} - set(r)
        if missing:
            raise TraceError(f"{path}: rule {i} lacks {', '.join(sorted(missing))}")
    return rules


def assign(kernels: list[Kernel], rules: list[dict]) -> list[tuple[Kernel, str, str]]:
    """Each kernel with its (operator, pass): the first rule whose phase equals the kernel's and whose `kernel`
    substring is in its short name, whose first grid dimension is at least `min_grid` where the rule has one, and,
    for a rule with `nth`, whose index among the same phase occurrence's
    kernels holding that substring (launch order; negative from the end) is nth. ("unmatched", "") otherwise."""
    by_phase: dict[tuple[str, int], list[Kernel]] = {}
    for k in sorted(kernels, key=lambda k: k.order):
        by_phase.setdefault((k.phase, k.layer), []).append(k)
    out = []
    for (phase, _), ks in by_phase.items():
        for k in ks:
            for r in rules:
                if r["phase"] != phase or r["kernel"] not in k.kernel:
                    continue
                if "min_grid" in r and (not k.grid or int(k.grid.split(",")[0]) < r["min_grid"]):
                    continue
                if "nth" in r:
                    same = [x for x in ks if r["kernel"] in x.kernel]
                    if same.index(k) != (r["nth"] % len(same)):
                        continue
                out.append((k, r["operator"], r["pass"]))
                break
            else:
                out.append((k, "unmatched", ""))
    return out


def overlapped_us(kernels: list[Kernel]) -> dict[int, int]:
    """Launch order -> microseconds of a compute-stream kernel that ran while a DeepEP kernel (stream 27) ran."""
    comm = sorted((k.start_us, k.start_us + k.dur_us) for k in kernels if k.stream == COMM_STREAM)
    out = {}
    for k in kernels:
        if k.stream == COMM_STREAM:
            continue
        lo, hi = k.start_us, k.start_us + k.dur_us
        out[k.order] = sum(max(0, min(hi, b) - max(lo, a)) for a, b in comm)
    return out


def span_us(kernels: list[Kernel]) -> tuple[int, int]:
    """(wall span from the first kernel's start to the last one's end, time some stream was busy), us."""
    iv = sorted((k.start_us, k.start_us + k.dur_us) for k in kernels)
    busy, end = 0, None
    for a, b in iv:
        if end is None or a > end:
            busy += b - a
            end = b
        elif b > end:
            busy += b - end
            end = b
    return max(b for _, b in iv) - min(a for a, _ in iv), busy


def trace_shapes(kernels: list[Kernel]) -> dict[str, list[int]]:
    """Per-device shapes the kernels' grids imply, per layer: tokens per micro-batch (the grid of the FP8 cast of
    the forward chunk's attention input: one block per token), routed token rows on the device (the grid of the
    forward expert SwiGLU, one block per row) and routed expert weight-gradient kernels per GEMM (one per expert)."""
    assigned = assign(kernels, load_rules())
    firsts = {}
    for k in sorted(kernels, key=lambda k: k.order):
        if k.phase == "attn(F)" and "per_token_cast_to_fp8_with_channels" in k.kernel:
            firsts.setdefault(k.layer, int(k.grid.split(",")[0]))
    rows = {k.layer: int(k.grid.split(",")[0]) for k, op, pas in assigned
            if op == "expert_activation" and pas == "fwd"}
    experts = {}
    for k, op, pas in assigned:
        if op == "expert_fc1" and pas == "wgrad":
            experts[k.layer] = experts.get(k.layer, 0) + 1
    return {"tokens_per_micro_batch": [firsts[i] for i in sorted(firsts)],
            "routed_rows_per_device": [rows[i] for i in sorted(rows)],
            "experts_per_device": [experts[i] for i in sorted(experts)]}


def priced_us() -> dict[tuple[str, str], float]:
    """moesim's priced time of one MoE layer and one micro-batch of scenarios/deepseek-v3-h800.toml, per
    (operator, pass), summed over parts (us); and DeepEP's dispatch / combine per call (the estimate's
    communication entries: time per step / calls per step)."""
    from moesim.estimate import estimate
    from moesim.ops.breakdown import operator_breakdown, term_builder
    from moesim.specs.load import load_scenario

    scenario = load_scenario(str(SCENARIO))
    layout = scenario.resolve(source="layout")
    out: dict[tuple[str, str], float] = {}
    # the scenario's first stage holds only dense layers: a first stage of 4 (3 dense + 1 MoE) lists the MoE class
    moe = load_scenario(str(SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    moe_layout = moe.resolve(source="--layout")
    for r in operator_breakdown(moe, moe_layout):
        if r.layer_class == "decoder moe":
            key = (r.name, r.pass_)
            out[key] = out.get(key, 0.0) + r.time_s * 1e6
    # selective recomputation is no operator row: the estimate adds the class's recompute_time_s to its backward
    # (moesim/estimate/selective.py recomputed_ops: the norms, the MLA up-projections and their RoPE and copies)
    builder, wl, _ = term_builder(moe, moe_layout)
    cls = next(c for c in wl.classes if c.is_moe and not c.mtp)
    out[("selective_recompute", "recompute")] = float(builder.build(cls).recompute_time_s[0]) * 1e6
    comm = estimate(scenario, layout).as_dict()["communication"]
    for name, op in (("ep_all_to_all_dispatch", "ep_dispatch"), ("ep_all_to_all_combine", "ep_combine")):
        out[(op, "fwd")] = comm[name]["time_s"] / comm[name]["calls_per_step"] * 1e6
    # the backward of a dispatch moves the combine's bytes and the backward of a combine the dispatch's (the
    # trace runs them as a combine kernel in BF16 and an FP8 dispatch kernel)
    out[("ep_dispatch", "bwd")] = out[("ep_combine", "fwd")]
    out[("ep_combine", "bwd")] = out[("ep_dispatch", "fwd")]
    return out


# moesim's name for a trace operator where they differ: the FP8 cast of the dispatched tokens is part of
# moesim's permute fp8_quantise (summed here with the other parts' casts); the residual gradients' adds are
# moesim's grad_accumulate
PRICED_AS = {("fp8_quantise_dispatch", "fwd"): ("fp8_quantise", "fwd"),
             ("fp8_quantise_dispatch", "bwd"): ("fp8_quantise", "bwd"),
             ("residual_grad", "bwd"): ("grad_accumulate", "bwd")}  # autograd's gradient sums (moesim/ops/base.py)


PASS_ORDER = ("fwd", "recompute", "dgrad", "bwd", "wgrad")


def _merged(assigned, value) -> dict[tuple[str, str], float]:
    """Sum of value(kernels of one layer) over the 4 layers / 4, per (operator, pass) in moesim's names
    (PRICED_AS), in the trace's order of first appearance."""
    groups: dict[tuple[str, str, int], list[Kernel]] = {}
    for k, op, pas in assigned:
        target = PRICED_AS.get((op, pas), (op, pas))
        groups.setdefault((*target, k.layer), []).append(k)
    out: dict[tuple[str, str], float] = {}
    for (op, pas, _), ks in groups.items():
        out[(op, pas)] = out.get((op, pas), 0.0) + value(ks) / 4
    return out


def table_rows(kernels: list[Kernel]) -> list[tuple]:
    """(operator, pass, measured us per layer (kernel time summed), its span per layer (us some kernel of it ran:
    below the sum where two streams ran it at once), priced us per layer or None, measured / priced or None, us of
    it beside a DeepEP kernel) per operator, in the trace's phase order, then the priced operators without a
    kernel."""
    assigned = assign(kernels, load_rules())
    beside = overlapped_us(kernels)
    summed = _merged(assigned, lambda ks: sum(k.dur_us for k in ks))
    spans = _merged(assigned, lambda ks: span_us(ks)[1])
    ov = _merged(assigned, lambda ks: sum(beside.get(k.order, 0) for k in ks))
    priced = priced_us()
    rows = []
    for key, us in summed.items():
        p = priced.get(key)
        rows.append((key[0], key[1], us, spans[key], p, us / p if p else None, ov[key]))
    rows += [(key[0], key[1], 0.0, 0.0, p, None, 0.0) for key, p in priced.items() if key not in summed and p]
    return sorted(rows, key=lambda r: PASS_ORDER.index(r[1]))  # stable: the trace's order within a pass


def beside_deepep_us() -> float:
    """What one MoE layer's forward and backward operators and its selective recomputation take longer in a DualPipe
    pair than on the full chip (us): its GEMMs and grouped GEMMs on the SMs DeepEP's 20 leave (moesim/ops/sm_share.py;
    ClassTerms.pair_time_s, recompute_pair_s). Not a row of the table: the rows are full-chip prices."""
    from moesim.ops.breakdown import term_builder
    from moesim.specs.load import load_scenario

    moe = load_scenario(str(SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    builder, wl, _ = term_builder(moe, moe.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    return float((terms.pair_time_s() + terms.recompute_pair_s() - terms.fwd_time_s - terms.bwd_time_s
                  - terms.recompute_time_s)[0]) * 1e6


def priced_pair_us(priced: dict[tuple[str, str], float], layers: int = 4,
                   beside_us: float = 0.0) -> tuple[float, float, float]:
    """(compute, collectives, pair) of a DualPipe forward & backward chunk pair of `layers` MoE layers by the
    estimate's rule for an overlapped pair, max(compute, collectives) (moesim/estimate/core.py, DeepSeek-V3
    §3.2.1 Figure 4), us; the trace has no pipeline sends, so none are added. `beside_us`: what a layer's compute
    takes longer beside DeepEP's SMs (beside_deepep_us), added to the operator rows' sum."""
    comm = sum(v for (op, _), v in priced.items() if op.startswith("ep_"))
    compute = sum(v for (op, _), v in priced.items() if not op.startswith("ep_")) + beside_us
    return layers * compute, layers * comm, layers * max(compute, comm)


# DualPipe's overlapped pair as the trace runs it (DeepSeek-V3 arXiv 2412.19437 §3.2.1, Figure 4; the trace's phase
# annotations, in launch order): per layer the compute stream runs the forward chunk's attention, the backward
# chunk's MLP (input, then weight gradients), the forward's MLP, the backward's attention (input, then weight
# gradients); DeepEP's stream 27 runs the backward's combine, the forward's dispatch, the backward's dispatch and the
# forward's combine. Each phase waits for the one that produces its input (DEPENDS; `layer - 1`: the previous layer
# of the same chunk).
PAIR_COMPUTE = ("attn(F)", "mlp(B)", "mlp(W)", "mlp(F)", "attn(B)", "attn(W)")
PAIR_COMM = ("combine(B)", "dispatch(F)", "dispatch(B)", "combine(F)")
DEPENDS = {"attn(F)": ("combine(F)", -1), "dispatch(F)": ("attn(F)", 0), "mlp(F)": ("dispatch(F)", 0),
           "combine(F)": ("mlp(F)", 0), "combine(B)": ("attn(B)", -1), "mlp(B)": ("combine(B)", 0),
           "dispatch(B)": ("mlp(B)", 0), "attn(B)": ("dispatch(B)", 0)}


def phase_us(kernels: list[Kernel]) -> dict[tuple[str, int], float]:
    """(phase, layer) -> us: a compute phase's busy time on the compute streams (idle gaps inside it left out), a
    DeepEP phase's span on stream 27."""
    out: dict[tuple[str, int], float] = {}
    for key in {(k.phase, k.layer) for k in kernels if k.phase}:
        ks = [k for k in kernels if (k.phase, k.layer) == key]
        comm = [k for k in ks if k.stream == COMM_STREAM]
        out[key] = float(span_us(comm)[0]) if comm else float(span_us(ks)[1])
    return out


def chained_pair_us(durations: dict[tuple[str, int], float], layers: int = 4) -> float:
    """The pair's end when each stream runs its phases in DualPipe's order (PAIR_COMPUTE, PAIR_COMM, layer by
    layer) and a phase starts once its stream is free and the phase it depends on (DEPENDS) has ended, us."""
    queues = [[(p, i) for i in range(layers) for p in PAIR_COMPUTE], [(p, i) for i in range(layers) for p in PAIR_COMM]]
    free, end = [0.0, 0.0], {}
    while queues[0] or queues[1]:
        moved = False
        for s, queue in enumerate(queues):
            while queue:
                phase, layer = queue[0]
                dep, back = DEPENDS.get(phase, (None, 0))
                need = (dep, layer + back) if dep and layer + back >= 0 else None
                if need and need not in end:
                    break
                free[s] = end[queue.pop(0)] = max(free[s], end[need] if need else 0.0) + durations[(phase, layer)]
                moved = True
        if not moved:
            raise TraceError(f"{RULES}: DualPipe's pair order deadlocks at {queues[0][:1] + queues[1][:1]}")
    return max(end.values())


def deepep_at_price(phases: dict[tuple[str, int], float], priced: dict[tuple[str, str], float]
                    ) -> dict[tuple[str, int], float]:
    """`phases` with DeepEP's at moesim's price per call (priced_us: a combine(B) runs a dispatch kernel, a
    dispatch(B) a combine kernel, priced as the dispatch's and the combine's backward), the compute as measured."""
    at_price = {"combine(B)": priced[("ep_combine", "bwd")], "dispatch(F)": priced[("ep_dispatch", "fwd")],
                "dispatch(B)": priced[("ep_dispatch", "bwd")], "combine(F)": priced[("ep_combine", "fwd")]}
    return {k: at_price.get(k[0], v) for k, v in phases.items()}


def render(kernels: list[Kernel]) -> str:
    """The per-operator table, the shapes and the chunk pair's span, as markdown."""
    lines = ["| operator | pass | measured us / layer | its span | moesim us / layer | measured / moesim | "
             "us beside DeepEP |", "|---|---|---:|---:|---:|---:|---:|"]
    for op, pas, us, span, p, ratio, ov in table_rows(kernels):
        lines.append(f"| {op} | {pas} | {us:.1f} | {span:.1f} | {'-' if p is None else f'{p:.1f}'} | "
                     f"{'-' if ratio is None else f'{ratio:.2f}'} | {ov:.1f} |")
    shapes = trace_shapes(kernels)
    wall, busy = span_us(kernels)
    _, compute = span_us([k for k in kernels if k.stream != COMM_STREAM])
    priced = priced_us()
    p_compute, p_comm, p_pair = priced_pair_us(priced, beside_us=beside_deepep_us())
    phases = phase_us(kernels)
    measured_chain = chained_pair_us(phases)
    priced_chain = chained_pair_us(deepep_at_price(phases, priced))
    phase_compute = sum(v for k, v in phases.items() if k[0] in PAIR_COMPUTE)
    lines += ["", "shapes per layer: " + "; ".join(f"{k} {v}" for k, v in shapes.items()),
              f"chunk pair: wall span {wall} us; some stream busy {busy} us; a compute stream busy {compute} us",
              f"moesim's pair (4 MoE layers, max(compute, collectives); the GEMMs and grouped GEMMs, the "
              f"recomputation's too, on the SMs DeepEP's 20 leave, the table's rows at the full chip): compute "
              f"{p_compute:.0f} us, collectives {p_comm:.0f} us, pair {p_pair:.0f} us: {p_pair / wall - 1:+.1%} "
              f"against the wall span",
              f"DualPipe's order (compute {' '.join(PAIR_COMPUTE)}; DeepEP {' '.join(PAIR_COMM)}; each phase after "
              f"the one that feeds it): the trace's phases (compute busy {phase_compute:.0f} us) end at "
              f"{measured_chain:.0f} us, {measured_chain - phase_compute:.0f} us of waits on DeepEP; with DeepEP's "
              f"phases at moesim's price per call they end at {priced_chain:.0f} us "
              f"({priced_chain - phase_compute:.0f} us of waits); the wall's other {wall - measured_chain:.0f} us "
              f"lie between kernels (inside the phases, and before the compute stream's first)"]
    return "\n".join(lines)


# The trace's operators imported into hardware_profiles/h800.toml as measured op-table points: (operator, pass)
# of the grouping -> moesim's table (kind, dtype, pass, op = the attention's mask or the memory operator's name).
# MLA's attention core is the one compute operator whose H800 table was derived from another GPU
# (FlashAttention-3's H100 figures) and whose head_dim (192) no table point has; the router's gating (sigmoid,
# group-limited top-k, normalisation, the balance statistics: ~40 small PyTorch kernels a pass) had the profile's
# default bandwidth fraction only. The full-width RMSNorms (attn_norm and moe_norm over 4096 x 7168, fitted
# together: session 20, dsv3mb) run DeepSeek's layer_norm::ln_fwd_kernel / ln_bwd at ~1 TB/s where the profile's
# default fraction gives ~2.7: an H800 table for every norm (moesim/ops/layer.py `_norm`, table_op "norm"). The
# attention output's E5M6 cast and its cast back (session 21, dsv3rest; DeepSeek-V3 §3.3.4, one kernel each: 1.3 /
# 1.7 TB/s, where the default fraction gives ~2.7; session 20 dsv3left priced their bytes and left the rate).
IMPORTED = {("attention_core", "fwd"): ("attention", "bfloat16", "fwd", "causal"),
            ("attention_core", "bwd"): ("attention", "bfloat16", "bwd", "causal"),
            ("router_gating", "fwd"): ("memory", "float32", "fwd", "router_gating"),
            ("router_gating", "bwd"): ("memory", "float32", "bwd", "router_gating"),
            (("attn_norm", "moe_norm"), "fwd"): ("memory", "bfloat16", "fwd", "norm"),
            (("attn_norm", "moe_norm"), "bwd"): ("memory", "bfloat16", "bwd", "norm"),
            ("attention_output_cast", "fwd"): ("memory", "bfloat16", "fwd", "attention_output_cast"),
            ("attention_output_dequantise", "bwd"): ("memory", "bfloat16", "bwd", "attention_output_dequantise"),
            (("fp8_quantise", "up_proj_quantise"), "fwd"): ("memory", "bfloat16", "fwd", "fp8_quantise"),
            ("fp8_quantise", "bwd"): ("memory", "bfloat16", "bwd", "fp8_quantise"),
            ("dispatch_mapping", "fwd"): ("memory", "bfloat16", "fwd", "dispatch_mapping")}
# DeepSeek's counting and mapping of the received tokens after DeepEP's dispatch (session 23, dsv3perm;
# clean_and_count_expert, get_fused_mapping: 4-block grids, 241 us a layer, ~0.5 % of the HBM rate over the top-k
# indices they read; moesim/ops/layer.py LayerOps._dispatch_mapping).
# The FP8 activation casts (session 22, dsv3ops): per_token_cast_to_fp8_with_channels, per_channel_cast_and_transpose
# and the scales' layout copies, at 1.5-2.8 TB/s on the trace where the default fraction gives ~2.7, once moesim's
# bytes are the tensors the trace casts (moesim/estimate/precision_terms.py quantised_elements, deepseek_casts).
# Fitted on the compute streams' kernels: the gradient cast before the combine's backward runs on DeepEP's stream
# beside the compute (52 us in the first layer, 334-349 us beside the weight-gradient GEMMs of the others), so its
# kernel and moesim's bytes of it (one per_token cast of the t x h gradient, FP8_COMM_SIDE) are left out of the fit.
FP8_COMM_SIDE = {("fp8_quantise", "bwd")}
MEASURED_ON = {"causal": "H800 SXM (132 SMs), DeepSeek's training framework: FlashAttention kernels (forward "
                         "flash::compute_attn_ws; backward FlashAttnBwdPreprocess + FlashAttnBwd + "
                         "FlashAttnBwdPostprocessConvertdQ), causal, 4096-token sequence, 128 heads, q/k head_dim "
                         "192, v 128, run beside DeepEP's kernels (20 SMs), as in training",
               "router_gating": "H800 SXM (132 SMs), DeepSeek's training framework: the router's gating as PyTorch "
                                "runs it (39 kernels forward, 37 backward: at::native elementwise / reduce / "
                                "sbtopk::gatherTopK / scatter-gather, cuda::topk_sum_and_topk_idx, "
                                "unique_group_indices_impl, aux_fi_impl), 4096 tokens, 256 experts, top-8 within 4 "
                                "of 8 expert groups, scripts/dsv3_trace.toml's router_gating rules",
               "norm": "H800 SXM (132 SMs), DeepSeek's training framework: the layer's two full-width RMSNorms "
                       "(layer_norm::ln_fwd_kernel forward, ln_bwd backward, BF16, 4096 tokens x 7168), "
                       "scripts/dsv3_trace.toml's attn_norm and moe_norm rules, fitted together",
               "attention_output_cast": "H800 SXM (132 SMs), DeepSeek's training framework: the attention output's "
                                        "12-bit E5M6 copy (per_token_cast_to_fp8_with_fp8_special_fmt<bf16, 128, 3>, "
                                        "grid 4096, inside RopeLoraFlashAttnVarlenFunc), 4096 tokens x 16384, one "
                                        "kernel, scripts/dsv3_trace.toml's attention_output_cast rule",
               "attention_output_dequantise": "H800 SXM (132 SMs), DeepSeek's training framework: the E5M6 attention "
                                              "output cast back to BF16 before out_proj's Wgrad "
                                              "(per_token_cast_back_special_fmt_impl), 4096 tokens x 16384, one "
                                              "kernel, scripts/dsv3_trace.toml's attention_output_dequantise rule",
               "dispatch_mapping": "H800 SXM (132 SMs), DeepSeek's training framework: the received tokens' "
                                   "counting and mapping after DeepEP's dispatch (cuda::clean_and_count_expert, "
                                   "cuda::get_fused_mapping, 4 blocks each), 4096 tokens a micro-batch, 256 experts "
                                   "top-8 over EP 64, scripts/dsv3_trace.toml's dispatch_mapping rules",
               "fp8_quantise": "H800 SXM (132 SMs), DeepSeek's training framework: the FP8 activation casts "
                               "(per_token_cast_to_fp8_with_channels 1x128, per_channel_cast_and_transpose 128x1, "
                               "the scales' layout copies, cast_back_impl), 4096 tokens a micro-batch, on the compute "
                               "streams, scripts/dsv3_trace.toml's fp8_quantise and up_proj_quantise rules"}


# The FP8 weight-gradient GEMMs (session 21, dsv3rest): DeepSeek's Wgrad kernel (`fp8_dptp128c_acc`) multiplies two
# operands both quantised 1x128 along K (the tokens: DeepSeek-V3 arXiv 2412.19437 §3.3.2, Figure 7; the trace's
# per_channel_cast_and_transpose before it) and accumulates into the FP32 gradient, so its promotion scales every
# accumulator by a row scale times a column scale per 128 of K (deepseek-ai/DeepGEMM@04278f6
# deep_gemm/include/deep_gemm/fp8_wgrad_gemm.cuh lines 293-302, against one scale per block in fp8_gemm.cuh): it
# runs at 0.31-0.45 of the FP8 peak (full-chip equivalent) where DeepGEMM's forward tables give 0.51-0.68 at the
# same shapes. No H800 wgrad table is published
# (DeepGEMM's README tables time its forward kernels; its wgrad kernels came later without one), so every FP8
# wgrad read the forward table at its own shape (moesim/ops/price.py). One point per operator, at moesim's wgrad
# shape (base.backward_ops: (k, n, m)), from the operator's span per layer (the routed experts' four kernels run on
# two streams at once: their span, not their sum, is the operator's time); the kernels run 112 CTAs, one per SM
# DeepEP leaves (Session 19 dsv3gap), so the full-chip efficiency is solved with moesim's SM share
# (moesim/ops/sm_share.py shared_time_s): measured = (t_full - launch) / share + launch.
# The dense FP8 Dgrad GEMMs (session 22, dsv3ops), the same way: DeepSeek's `fp8_ptp128c` kernel at the Dgrad shapes
# (m, k, n) DeepGEMM's README tables have no row near (MLA's up-projections' narrow outputs over a long K:
# kv_up (4096, 512, 32768), q_up (4096, 1536, 24576); the down-projections' (4096, 7168, 576 / 1536)), which read the
# forward table at a shape it does not hold: at the SM share kv_up 1.34x, kv_down 1.69x and q_down 1.17x too fast, q_up
# 0.91x (too slow), read the right way round (scripts/dsv3_trace.toml; the 2.0x / 1.7x of session 21 had q_up's and
# kv_up's kernels swapped). One kernel an operator a layer (grid 112 or 2 x 56 CTAs: 112 either way, the SMs DeepEP
# leaves). The routed experts' grouped Dgrad keeps DeepGEMM's grouped forward table (1.02-1.05x at the SM share).
# The forward FP8 GEMMs (session 24, dsv3fwd; the lead's decision: DeepSeek-V3 prices the kernels DeepSeek's run used)
# the same way: DeepSeek's internal `fp8_ptp128c` (dense) and `m_grouped_fp8_ptp128c` (routed experts) kernels, 112
# CTAs, ran 0.95-1.22x (1.10-1.14x but the down-projections) what DeepGEMM's README tables (its own later kernel)
# give at the same shapes, at the SM share (dsv3casts (c)).
# DeepGEMM's README tables stay in h800.toml as pass "any": the grouped Dgrad reads them at its own shape as before.
WGRAD_IMPORTED = {("gemm", "float8", "wgrad", "any"): ("q_down_proj", "kv_down_proj", "q_up_proj", "kv_up_proj",
                                                       "out_proj", "shared_fc1", "shared_fc2"),
                  ("grouped_gemm", "float8", "wgrad", "any"): ("expert_fc1", "expert_fc2"),
                  ("gemm", "float8", "dgrad", "any"): ("q_down_proj", "kv_down_proj", "q_up_proj", "kv_up_proj",
                                                       "out_proj", "shared_fc1", "shared_fc2"),
                  ("gemm", "float8", "fwd", "any"): ("q_down_proj", "kv_down_proj", "q_up_proj", "kv_up_proj",
                                                     "out_proj", "shared_fc1", "shared_fc2"),
                  ("grouped_gemm", "float8", "fwd", "any"): ("expert_fc1", "expert_fc2"),
                  # the router's BF16 GEMM in its three passes (session 25, mlacasts): cuBLAS's sm90_xmma_gemm_bf16*
                  # kernels, their grids in scripts/dsv3_trace_measured.toml
                  ("gemm", "bfloat16", "fwd", "router"): ("router",),
                  ("gemm", "bfloat16", "dgrad", "router"): ("router",),
                  ("gemm", "bfloat16", "wgrad", "router"): ("router",)}
GEMM_MEASURED_ON = ROOT / "scripts" / "dsv3_trace_measured.toml"  # each imported op table's measured_on text (data)


def measured_on(table_pass: str, op_name: str) -> str:
    """The op table's "measured_on": the router's text for op 'router', else its pass's (GEMM_MEASURED_ON)."""
    import tomllib

    return tomllib.loads(GEMM_MEASURED_ON.read_text())["measured_on"]["router" if op_name == "router" else table_pass]


def import_wgrad_points(kernels: list[Kernel]) -> list[dict]:
    """The FP8 wgrad, dgrad and forward op tables of WGRAD_IMPORTED: per operator one point at moesim's shape of that
    pass, the full-chip efficiency at which moesim's operator, priced on the SM share DeepEP leaves, takes the
    operator's measured span (mean over the 4 layers): eta = flops / (peak · (span − launches) · share)."""
    import numpy as np

    from moesim.ops.breakdown import term_builder
    from moesim.ops.sm_share import overlapped_compute_share
    from moesim.specs.load import load_scenario

    moe = load_scenario(str(SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    builder, wl, _ = term_builder(moe, moe.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    hw = moe.hardware
    share = overlapped_compute_share(hw, moe.training)
    spans = _merged(assign(kernels, load_rules()), lambda ks: span_us(ks)[1])
    tables = []
    for (kind, dtype, table_pass, op_name), names in WGRAD_IMPORTED.items():
        points, quoted = [], []
        for name in names:
            op = next(o for o in terms.ops_fwd + terms.ops_bwd if o.name == name and o.pass_ == table_pass)
            seconds = (spans[(name, table_pass)] * 1e-6 - float(op.kernels) * hw.efficiency.kernel_launch_s) * share
            eta = float(np.ravel(op.flops)[0]) / (hw.chip.peak_for(dtype) * seconds)
            points.append([*(int(round(float(np.ravel(c)[0]))) for c in op.shape), float(f"{eta:.4g}")])
            quoted.append(f"{name} {spans[(name, table_pass)]:.2f}")
        tables.append({"kind": kind, "dtype": dtype, "pass": table_pass, "op": op_name, "status": "measured",
                       "measured_on": measured_on(table_pass, op_name),
                       "source": f"{SOURCE}: mean over the 4 layers of the {table_pass} kernels' span, us: "
                                 f"{', '.join(quoted)} (scripts/dsv3_trace.py --points); efficiency = moesim's "
                                 f"FLOPs / ({hw.chip.peak_for(dtype) / 1e12:g} TFLOPS x (time - 1 launch) x "
                                 f"{share:.4g} of the SMs)",
                       "points": points})
    return tables


def comm_side_cast_bytes(scenario, tokens: int) -> float:
    """moesim's bytes of the FP8 cast of fc2's output gradient before the combine's backward: one 1x128 cast of the
    micro-batch's `tokens` x h gradient (moesim.precision.quantise_cost, one copy;
    precision_terms.quantised_elements)."""
    from moesim.precision import quantise_cost

    tr = scenario.training
    return float(quantise_cost(tokens * scenario.model.d_model, tr.fp8_scaling, tr.bytes_of("activation"),
                               copies=1).bytes_moved)


def import_points(kernels: list[Kernel]) -> list[dict]:
    """The op tables of IMPORTED: one point per operator at the trace's shape, the efficiency at which moesim's
    own operator (its FLOP count of computed tiles, or its bytes, and its kernel count, moesim/ops/price.py
    op_time_s) takes the measured time: the mean over the 4 layers of the operator's summed kernel time."""
    import numpy as np

    from moesim.ops.breakdown import term_builder
    from moesim.specs.load import load_scenario

    moe = load_scenario(str(SCENARIO), layout="dp=128,tp=1,ep=64,pp=16,first_stage_layers=4,last_stage_layers=2")
    builder, wl, _ = term_builder(moe, moe.resolve(source="--layout"))
    terms = builder.build(next(c for c in wl.classes if c.is_moe and not c.mtp))
    hw = moe.hardware
    assigned = assign(kernels, load_rules())
    measured = _merged(assigned, lambda ks: sum(k.dur_us for k in ks))
    computing = _merged(assigned, lambda ks: sum(k.dur_us for k in ks if k.stream != COMM_STREAM))
    tables = []
    for (names, pas), (kind, dtype, table_pass, op_name) in IMPORTED.items():
        names = (names,) if isinstance(names, str) else names  # several operators of one table fit together
        # every part's operator of that name (the FP8 casts: one a part)
        ops = [o for o in terms.ops_fwd + terms.ops_bwd if o.name in names and o.pass_ == pas]
        comm_side = (names[0], pas) in FP8_COMM_SIDE
        op = ops[0]
        measured_us = sum((computing if comm_side else measured)[(name, pas)] for name in names)
        seconds = measured_us * 1e-6 - sum(float(o.kernels) for o in ops) * hw.efficiency.kernel_launch_s
        if kind == "memory":  # moesim/ops/price.py: t = bytes / (HBM bandwidth · η) + kernels · t_launch
            beside = comm_side_cast_bytes(moe, trace_shapes(kernels)["tokens_per_micro_batch"][0]) if comm_side else 0
            eta = (sum(float(np.ravel(o.bytes)[0]) for o in ops) - beside) / (hw.chip.hbm_bw_bytes_per_s * seconds)
            rate = (f"(moesim's bytes less its {beside:.0f} B of the gradient cast before the combine's backward, "
                    f"which ran on DeepEP's stream) / (" if comm_side else "moesim's bytes / (") \
                + f"{hw.chip.hbm_bw_bytes_per_s / 1e9:g} GB/s"
        else:  # moesim/ops/price.py: t = flops / (peak[dtype] · η) + kernels · t_launch, solved for η
            eta = float(np.ravel(op.flops)[0]) / (hw.chip.peak_for(dtype) * seconds)
            rate = f"moesim's computed-tile FLOPs / ({hw.chip.peak_for(dtype) / 1e12:g} TFLOPS"
        shape = [int(round(float(c if not hasattr(c, "__len__") else c[0]))) for c in op.shape]
        tables.append({"kind": kind, "dtype": dtype, "pass": table_pass, "op": op_name, "status": "measured",
                       "measured_on": MEASURED_ON[op_name],
                       "source": f"{SOURCE}: mean over the 4 layers of the {pas} kernels' summed duration, "
                                 f"{measured_us:.2f} us{' on the compute streams' if comm_side else ''} "
                                 f"(scripts/dsv3_trace.py --points); efficiency = "
                                 f"{rate} x (time - {sum(float(o.kernels) for o in ops):g} launch))",
                       "points": [[*shape, float(f"{eta:.4g}")]]})  # 4 significant digits
    return tables


def points_toml(tables: list[dict]) -> str:
    """`[[efficiency.op_table]]` entries of `tables`, as hardware_profiles/*.toml writes them."""
    out = []
    for t in tables:
        out += ["[[efficiency.op_table]]"] + [f"{k} = {json.dumps(t[k])}" for k in
                                              ("kind", "dtype", "pass", "op", "status", "measured_on", "source")]
        out += ["points = ["] + [f"  {json.dumps(p)}," for p in t["points"]] + ["]", ""]
    return "\n".join(out).rstrip()


DOC = ROOT / "docs" / "operators.md"
BEGIN, END = "<!-- BEGIN dsv3_trace: python scripts/dsv3_trace.py --write -->", "<!-- END dsv3_trace -->"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--extract", action="store_true", help="write the kernel record (--record) from the trace")
    p.add_argument("--trace", type=Path, help=f"train.json for --extract (default: {MIRROR_GIT_DIR}, HEAD:train.json)")
    p.add_argument("--record", type=Path, default=RECORD, help="the kernel record (default: %(default)s)")
    p.add_argument("--write", action="store_true", help=f"replace the marked block of {DOC.name} with the table")
    p.add_argument("--points", action="store_true", help="print the op-table points imported into h800.toml")
    args = p.parse_args(argv)
    try:
        if args.extract:
            kernels = extract_kernels(load_trace(args.trace))
            write_record(kernels, args.record)
            print(f"{len(kernels)} kernels -> {args.record}")
            return 0
        if args.points:
            record = read_record(args.record)
            print(points_toml(import_points(record) + import_wgrad_points(record)))
            return 0
        text = render(read_record(args.record))
    except TraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    if args.write:
        from docblock import replace_block

        replace_block(DOC, BEGIN, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
