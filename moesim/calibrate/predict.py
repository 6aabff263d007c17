"""Predicting measured phases from a HardwareProfile with the primitives the analytical estimate uses.

Notation (per rank; "max" = the largest over ranks, since a phase lasts as long as its slowest rank):
  T tokens per rank, d d_model, f d_ff, E experts (= ep · e, e experts per rank), k top-k,
  ep/dp expert-/data-parallel degrees (world = ep · dp), q bytes per element,
  R token rows a rank's experts process (max), r rows a rank sends, S_d / S_c bytes a rank sends
  in the dispatch / combine all-to-all (max, own share included: nccl-tests' convention).

A phase is a sum of terms, each priced exactly as moesim/estimate/terms.py prices it:
  compute    F / (peak[dtype] · η(F_kernel))         η: the profile's matmul efficiency table
  memory     B / (HBM bandwidth · memory efficiency) permute / unpermute copies, routing bookkeeping
  collective select.default_model(hardware).cost(op, S, group).time_s
  overhead   n · layer_overhead_s                    the profile's fixed host cost per layer pass
Terms per phase (validate/switch_layer.py names the phases):
  router_matmul     2·T·d·E at the float32 peak (the harness's router is float32; Switch §2.4)
  router_gating     2·(T·E·4 + k·T·E·8) bytes: the [T, E] float32 probabilities (softmax) and the
                    [k·T, E] int64 one-hot of the capacity cumsum (Switch App. F), each written and
                    read once; a lower bound that leaves out per-kernel launch cost
  router            router_matmul + router_gating (the harness times it as their sum)
  dispatch_permute  2·r·d·q bytes (read + write once)
  dispatch_a2a      all-to-all of the E counts (8 bytes each) + all-to-all of S_d, over ep
  expert_compute    F_e = 2·2·R·d·f (2 matmuls), kernel F_e / (e · 2)
  combine_a2a       all-to-all of S_c over ep
  combine_unpermute 2·R·d·q bytes
  backward          2 × (router + expert compute) (Kaplan §2.1, BACKWARD_TO_FORWARD), both copies,
                    and the reverse all-to-alls of S_c and S_d (Switch §5.4: 4 all-to-alls per layer)
  grad_sync         all-reduce of the router gradient (E·d float32) over the world and, with dp > 1,
                    of W_in and W_out (e·d·f·q each) over dp
  layer             the sum of router ... backward (grad_sync runs after it), plus the layer overhead
                    twice: the harness's free-running `layer_unsynced` is one forward and one backward
                    pass of one MoE layer (validate/bench.py), as moesim/estimate/terms.py charges it
A collective over a group of one rank moves nothing and gets no term, as in the estimate.
A record timed by the CPU clock (validate/timing.py, `"clock": "cpu"`) holds only the calling thread's
work in backward and the layer: there the collectives give way to their calling-thread calls
(moesim/calibrate/harness_ops.py a2a_calling_thread_ops); the collective phases stay wall-clock.
With operator tables, the phases are the operators the harness executes (harness_ops.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Union

import numpy as np

from moesim.arithmetic import ffn_matrices
from moesim.calibrate.bench_cost import check_gpus_per_thread, nccl_tests_time_s
from moesim.calibrate.records import LAYER_PHASES, PHASES, ROUTER_PARTS, TOTAL, CollectivePoint, LayerRecord
from moesim.collectives.base import Group
from moesim.collectives.select import default_model
from moesim.errors import SpecError
from moesim.estimate.terms import READ_WRITE
from moesim.flops import BACKWARD_TO_FORWARD, FLOPS_PER_MAC
from moesim.specs.hardware import DTYPE_BYTES, HardwareProfile
from moesim.calibrate.harness_ops import a2a_calling_thread_ops, harness_ops
from moesim.ops.base import Op
from moesim.ops.price import op_time_s

ROUTER_DTYPE = "float32"  # validate/routing.py runs the router in float32 (Switch §2.4 selective precision)
EXPERT_FFN_KIND = "relu"  # validate/switch_layer.py expert_ffn: ReLU(x W_in) W_out, 2 matrices
INDEX_BYTES = 8  # the routing one-hot and positions are int64 (validate/routing.py F.one_hot)
LAYER_PASSES = 2  # layer_unsynced: one forward and one backward pass of the layer


@dataclass(frozen=True)
class ComputeTerm:
    """`flops` of matmuls of `kernel_flops` each, in `dtype`."""

    flops: float
    kernel_flops: float
    dtype: str


@dataclass(frozen=True)
class MemoryTerm:
    """A memory-bound copy moving `bytes` through HBM (reads and writes counted)."""

    bytes: float


@dataclass(frozen=True)
class CollectiveTerm:
    """One collective (moesim op name, nccl-tests size) over `group`. `gpus_per_thread` >= 1: a row of an
    nccl-tests log run with `-g gpus_per_thread`, priced as nccl-tests runs it (bench_cost.py: the pairwise
    all-to-all, the host floor); 0: a collective of training, the model's own choice."""

    op: str
    size_bytes: float
    group: Group
    gpus_per_thread: int = 0


@dataclass(frozen=True)
class OverheadTerm:
    """The profile's fixed host overhead of one layer pass (efficiency.layer_overhead_s), `passes` times."""

    passes: int


@dataclass(frozen=True)
class OpTerm:
    """One operator of moesim.ops (shape, dtype, pass), priced by moesim.ops.price from the profile's
    per-operator tables: the terms of a record when the profile has operator tables (`uses_ops`)."""

    op: Op


Term = Union[ComputeTerm, MemoryTerm, CollectiveTerm, OverheadTerm, OpTerm]
# Under the CPU clock, the calling thread's part of the two collective phases (priced, not reported)
CPU_CLOCK_PARTS = ("dispatch_a2a_cpu", "combine_a2a_cpu")


def uses_ops(hardware: HardwareProfile | None, dtype: str) -> bool:
    """Whether `hardware` prices a record of `dtype` by operator (it has a GEMM table of that dtype)."""
    return hardware is not None and any(t.kind == "gemm" and t.dtype == dtype for t in hardware.efficiency.op_tables)


def _op_terms(rec: LayerRecord) -> dict[str, list]:
    """The operator terms of a record: the operators the harness executes, phase by phase, forward and
    autograd backward (moesim/calibrate/harness_ops.py), each with its ATen call count."""
    wrap = lambda ops: [OpTerm(op) for op in ops]  # noqa: E731
    return {phase: wrap(ops) for phase, ops in harness_ops(rec).items()}


def layer_terms(rec: LayerRecord, hardware: HardwareProfile | None = None) -> dict[str, tuple[Term, ...]]:
    """The terms of every phase of a measured layer (see the module notation); by operator (OpTerm) when
    `hardware` has operator tables for the record's dtype (`uses_ops`)."""
    world, ep, dp = rec.world_size, rec.ep_size, rec.dp_size
    ep_group = Group(size=ep, stride=1, concurrent=dp, devices=world)  # ranks [j·ep, (j+1)·ep)
    dp_group = Group(size=dp, stride=ep, concurrent=ep, devices=world)  # ranks {i, i+ep, ...}
    world_group = Group(size=world, devices=world)
    q, d = rec.element_bytes, rec.d_model
    router_flops = FLOPS_PER_MAC * rec.tokens_per_rank * d * rec.num_experts
    router = ComputeTerm(router_flops, router_flops, ROUTER_DTYPE)
    routing_elements = rec.tokens_per_rank * rec.num_experts  # T·E
    gating = MemoryTerm(READ_WRITE * routing_elements * (DTYPE_BYTES[ROUTER_DTYPE] + rec.top_k * INDEX_BYTES))
    kernel = rec.expert_flops_forward / (rec.experts_per_rank * ffn_matrices(EXPERT_FFN_KIND))
    experts = ComputeTerm(rec.expert_flops_forward, kernel, rec.dtype)
    permute = MemoryTerm(READ_WRITE * rec.sent_rows * d * q)
    unpermute = MemoryTerm(READ_WRITE * rec.received_rows * d * q)
    dispatch = CollectiveTerm("all_to_all", rec.dispatch_bytes, ep_group)
    combine = CollectiveTerm("all_to_all", rec.combine_bytes, ep_group)
    counts = CollectiveTerm("all_to_all", rec.count_bytes, ep_group)
    expert_weight_bytes = rec.experts_per_rank * d * rec.d_ff * q
    grad_sync = [CollectiveTerm("all_reduce", rec.num_experts * d * DTYPE_BYTES[ROUTER_DTYPE], world_group)]
    grad_sync += [CollectiveTerm("all_reduce", expert_weight_bytes, dp_group)] * ffn_matrices(EXPERT_FFN_KIND)
    b = BACKWARD_TO_FORWARD
    terms = {
        "router_matmul": [router],
        "router_gating": [gating],
        "router": [router, gating],
        "dispatch_permute": [permute],
        "dispatch_a2a": [counts, dispatch],
        "expert_compute": [experts],
        "combine_a2a": [combine],
        "combine_unpermute": [unpermute],
        "backward": [_scaled(experts, b), _scaled(router, b), unpermute, combine, dispatch, permute],
        "grad_sync": grad_sync,
    }
    if uses_ops(hardware, rec.dtype):
        ops = _op_terms(rec)
        for phase in ops:
            terms[phase] = ops[phase]
        terms["backward"] = ops["backward"] + [combine, dispatch]
    if rec.clock == "cpu":
        # CPU clock (validate/timing.py): backward and the layer hold the calling thread's work only; gloo
        # runs the exchanges on its own threads, so the reverse all-to-alls are not in them (their calls
        # are among the backward's), and the layer holds the a2a phases' calling-thread calls
        terms["backward"] = [t for t in terms["backward"] if not isinstance(t, CollectiveTerm)]
        calling = {p: [OpTerm(op) for op in o] for p, o in a2a_calling_thread_ops(rec).items()}
        terms["dispatch_a2a_cpu"], terms["combine_a2a_cpu"] = calling["dispatch_a2a"], calling["combine_a2a"]
    extra = tuple(p for p in CPU_CLOCK_PARTS if p in terms)
    return {phase: tuple(t for t in terms[phase] if _moves_something(t)) for phase in ROUTER_PARTS + PHASES + extra}


def layer_total_terms(rec: LayerRecord, phase_terms: dict[str, tuple[Term, ...]] | None = None) -> tuple[Term, ...]:
    """The terms of the measured layer total: every LAYER_PHASES term, plus the overhead of two passes
    (a CPU-clock record: the collective phases' calling-thread calls instead of the collectives)."""
    phase_terms = phase_terms or layer_terms(rec)
    return tuple(t for p in _total_phases(phase_terms) for t in phase_terms[p]) + (OverheadTerm(LAYER_PASSES),)


def _total_phases(phase_terms: dict) -> tuple[str, ...]:
    if CPU_CLOCK_PARTS[0] not in phase_terms:
        return LAYER_PHASES
    swap = dict(zip(("dispatch_a2a", "combine_a2a"), CPU_CLOCK_PARTS))
    return tuple(swap.get(p, p) for p in LAYER_PHASES)


def collective_terms(point: CollectivePoint, gpus_per_thread: int = 1) -> tuple[Term, ...]:
    """The single term of a measured collective (the group is `group_size` consecutive ranks); a row of an
    nccl-tests log run with `-g gpus_per_thread` is priced as nccl-tests runs it (CollectiveTerm)."""
    launches = check_gpus_per_thread(gpus_per_thread) if point.nccl_tests else 0
    return (CollectiveTerm(point.op, point.size_bytes, Group(size=point.group_size, devices=point.group_size),
                           launches),)


def _scaled(term: ComputeTerm, factor: float) -> ComputeTerm:
    return replace(term, flops=term.flops * factor)


def _moves_something(term: Term) -> bool:
    if isinstance(term, CollectiveTerm):
        return term.group.size > 1 and term.size_bytes > 0
    if isinstance(term, ComputeTerm):
        return term.flops > 0
    if isinstance(term, OverheadTerm):
        return term.passes > 0
    if isinstance(term, OpTerm):
        return bool(np.all(np.asarray(term.op.flops) > 0) or np.all(np.asarray(term.op.bytes) > 0))
    return term.bytes > 0


def term_time_s(term: Term, hardware: HardwareProfile, model=None) -> float:
    """Seconds for one term on `hardware` (the estimate's formulas; see the module docstring)."""
    if isinstance(term, ComputeTerm):
        eff = hardware.efficiency.matmul.at(term.kernel_flops)
        return term.flops / (hardware.chip.peak_for(term.dtype) * eff)
    if isinstance(term, MemoryTerm):
        return term.bytes / (hardware.chip.hbm_bw_bytes_per_s * hardware.efficiency.memory_bandwidth)
    if isinstance(term, OverheadTerm):
        return term.passes * hardware.efficiency.layer_overhead_s
    if isinstance(term, OpTerm):
        return float(np.asarray(op_time_s(term.op, hardware)).reshape(-1)[0])
    model = model or default_model(hardware)
    return collective_time_s(term, hardware, model)


def collective_time_s(term: CollectiveTerm, hardware: HardwareProfile, model) -> float:
    """Seconds of one collective term under `model`: an nccl-tests row as nccl-tests runs it (bench_cost.py)."""
    if term.gpus_per_thread:
        return nccl_tests_time_s(model, hardware, term.op, term.size_bytes, term.group, term.gpus_per_thread)[0]
    return model.cost(term.op, term.size_bytes, term.group).time_s


def terms_time_s(terms: tuple[Term, ...], hardware: HardwareProfile, model=None) -> float:
    model = model or default_model(hardware)
    return sum(term_time_s(t, hardware, model) for t in terms)


def check_fits(rec: LayerRecord | CollectivePoint, hardware: HardwareProfile) -> None:
    """A measurement whose ranks the profile cannot hold is an input error."""
    ranks = rec.world_size if isinstance(rec, LayerRecord) else rec.group_size
    if ranks > hardware.max_devices:
        raise SpecError(f"{ranks} ranks measured, but {hardware.name} holds at most {hardware.max_devices} devices",
                        file=rec.source, field="world_size", value=ranks)


def predict_layer(rec: LayerRecord, hardware: HardwareProfile, model=None) -> dict[str, float | None]:
    """Predicted seconds per phase (ROUTER_PARTS and PHASES) and for the layer total (with the overhead
    of its two passes); None for a phase the model gives no term."""
    check_fits(rec, hardware)
    model = model or default_model(hardware)
    out: dict[str, float | None] = {}
    for phase, terms in layer_terms(rec, hardware).items():
        out[phase] = terms_time_s(terms, hardware, model) if terms else None
    out[TOTAL] = (sum(out[p] or 0.0 for p in _total_phases(out))
                  + term_time_s(OverheadTerm(LAYER_PASSES), hardware, model))
    for part in CPU_CLOCK_PARTS:
        out.pop(part, None)
    return out
