"""What each device holds per candidate row, as `evaluate` reads it (moesim.estimate.core): the degrees, the term
builder and per-class terms, the representative stages, parameters and stage memory; the memory check that keeps the
rows within capacity (`fitting_rows`) and the empty Evaluation when none fits. Moved from core.py unchanged (session
24, tidy24)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.estimate import schedules as sch
from moesim.estimate.candidates import Candidates
from moesim.estimate.context_parallel import tokens_divisor
from moesim.estimate.device_state import stage_memory, stage_params
from moesim.estimate.evaluation import Evaluation
from moesim.estimate.folds import as_float
from moesim.estimate.stages import Stages, dualpipe_pair_columns, pipeline_stages, v_rows
from moesim.estimate.terms import ClassTerms, TermBuilder
from moesim.specs.scenario import Scenario


@dataclass(frozen=True)
class Held:
    """What `device_holdings` gives evaluate: the candidates' degrees as floats (sched: schedule codes), b sequences per
    micro-batch per device, the term builder and per-class terms, the representative stages and their masks,
    parameters per device, and stage memory (device_state.stage_memory's four results)."""

    dp: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    ep: np.ndarray
    etp: np.ndarray
    m: np.ndarray
    edp: np.ndarray
    cp: np.ndarray
    vp: np.ndarray
    sched: np.ndarray
    b: np.ndarray
    builder: TermBuilder
    terms: list
    stages: Stages
    v: np.ndarray | None  # the ZB-V rows priced on their devices' two V pieces (stages.v_rows); None: none
    exists: np.ndarray
    first: np.ndarray
    last: np.ndarray
    head: np.ndarray  # the device holding the output head: the last stage's, the first's under ZB-V
    dense_params: np.ndarray
    expert_params: np.ndarray
    dcp: np.ndarray
    zero: np.ndarray
    pair: np.ndarray
    memory: dict
    total_mem: np.ndarray
    mem_index: np.ndarray
    capacity_bytes: float


def device_holdings(scenario: Scenario, wl, cands: Candidates, build_terms,
          memory_of: tuple[Held, np.ndarray | None] | None = None) -> Held:
    """Per candidate row of `cands`, what each device holds (see `Held`); `build_terms(builder)` gives the
    per-class terms (TermBuilder.build, or memory_terms: the same memory without pricing any operator).
    `memory_of` (held, at): the memory already found for these rows, `cands` being held's rows `at` (None: all),
    read from there (stage columns past this batch's width are padding: dropped) instead of computed again."""
    model, hw, tr = scenario.model, scenario.hardware, scenario.training
    f = as_float
    dp, tp, pp, ep, etp, m = f(cands.dp), f(cands.tp), f(cands.pp), f(cands.ep), f(cands.etp), f(cands.micro_batches)
    edp = f(cands.edp)
    cp, vp, sched = f(cands.cp), f(cands.vp), cands.schedule_codes(tr)
    n_cand = len(cands)
    b = tr.global_batch_sequences / (dp * m) / tokens_divisor(cp)  # per device: the micro-batch over cp
    builder = TermBuilder(model, hw, tr, b, tp, ep, etp, cands.recompute, f(cands.capacity_factor), cp, cands.cp_comm)
    terms: list[ClassTerms] = build_terms(builder)
    # One representative per kind of stage (see stages.py); uneven splits as specs.layout.stage_layers. ZB-V's
    # device d holds the V's pieces d and 2p − 1 − d (stages.v_rows: where they differ from contiguous stage d).
    v = v_rows(wl, cands.pp, cands.first_stage_layers, cands.last_stage_layers, sch.is_schedule(sched, "zb-v"))
    stages = pipeline_stages(wl, cands.pp, cands.first_stage_layers, cands.last_stage_layers, v)
    n_stages = stages.counts.shape[1]
    exists = stages.index >= 0
    first, last = stages.index == 0, stages.index == (pp[:, None] - 1)
    # ZB-V runs the model's last piece, the head, on device 0 beside the embedding (moesim.des.orders: pieces d
    # and 2p − 1 − d on device d), every other schedule on the last stage.
    head = np.where(sch.is_schedule(sched, "zb-v")[:, None], first, last)
    dense_params, expert_params = stage_params(wl, stages.counts, first, head, sched, tp, ep, etp)
    dcp = dp * cp  # CP ranks hold the same weights: gradients reduce and ZeRO shards over dp·cp
    zero = cands.zero_stage[:, None]
    # Memory per stage.
    # DualPipe: the device of stage s also holds stage p − 1 − s (its `pair` column), each with 1F1B's
    # min(m, p − s) micro-batches in flight: PP + 1 per device and 2x parameters when stages are alike
    # (DeepSeek-V3 Table 2); first and last share the embedding the MTP module reads (§3.2.3).
    dual = sch.is_schedule(sched, "dualpipe")[:, None]
    # Without a DualPipe candidate every pair term below is masked out: any in-range column will do.
    pair = dualpipe_pair_columns(wl, cands.pp, cands.first_stage_layers, cands.last_stage_layers,
                                 n_stages) if dual.any() \
        else np.full((n_cand, n_stages), -1)
    pair = np.where(pair >= 0, pair, np.arange(n_stages)[None, :])
    if memory_of is None:
        chunk_held = layout_in_flight(cands, sched, m, stages.index)
        memory, total_mem, mem_index, capacity_bytes = stage_memory(
            wl, model, hw, tr, terms, stages, dense_params, expert_params, sched=sched, dual=dual, pair=pair, b=b,
            m=m, pp=pp, tp=tp, ep=ep, etp=etp, vp=vp, dcp=dcp, edp=edp, zero=zero, first=first, last=head,
            exists=exists, layout_in_flight=chunk_held)
    else:
        known, at = memory_of
        rows = (lambda a: a) if at is None else (lambda a: np.take(a, at, axis=0))  # noqa: E731
        memory = {k: rows(v)[:, :n_stages] if np.ndim(v) == 2 else rows(v) for k, v in known.memory.items()}
        total_mem, mem_index, capacity_bytes = rows(known.total_mem), rows(known.mem_index), known.capacity_bytes
    return Held(dp=dp, tp=tp, pp=pp, ep=ep, etp=etp, m=m, edp=edp, cp=cp, vp=vp, sched=sched, b=b, builder=builder,
                 terms=terms, stages=stages, v=v, exists=exists, first=first, last=last, head=head,
                 dense_params=dense_params,
                 expert_params=expert_params, dcp=dcp, zero=zero, pair=pair, memory=memory, total_mem=total_mem,
                 mem_index=mem_index, capacity_bytes=capacity_bytes)


def layout_in_flight(cands: Candidates, sched: np.ndarray, m: np.ndarray, index: np.ndarray) -> np.ndarray | None:
    """(N, S) in-flight micro-batches of interleaved candidates with a pipeline layout (schedules.layout_in_flight,
    their uneven chunks), NaN elsewhere; None when no candidate has a layout."""
    if cands.pipeline_layout is None or not any(x is not None for x in cands.pipeline_layout):
        return None
    from moesim.specs.pipeline_layout import parse

    out = np.full(index.shape, np.nan)
    interleaved = sch.is_schedule(sched, "interleaved")
    for n, text in enumerate(cands.pipeline_layout):
        if text is None or not interleaved[n]:
            continue
        pl = parse(text, int(cands.pp[n]))
        for j, s in enumerate(index[n]):
            if s >= 0:
                out[n, j] = sch.layout_in_flight(pl.chunk_layers, pl.pp, pl.vp, int(m[n]), int(s))
    return out


def fitting_rows(scenario: Scenario, wl, cands: Candidates, base: np.ndarray, of: np.ndarray | None
                  ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None, Held, np.ndarray | None]:
    """(rows, base, of, held, at): `rows` the positions in `cands` of the candidates within the memory capacity
    (None when all are), `base` and `of` the order-free fold of those rows in order_free_rows' form (`base` indexes
    `cands`, `of` maps each row to its entry of `base`), `held` the memory check's `Held` of the order-free
    rows, `at` the positions in held's rows of the new `base` (None: all). Memory as evaluate computes it, from
    TermBuilder.memory_terms: nothing is priced for the rest."""
    held = device_holdings(scenario, wl, cands if of is None else cands.take(base),
                 lambda builder: [builder.memory_terms(cls) for cls in wl.classes])
    fit = held.total_mem <= held.capacity_bytes
    if fit.all():
        return None, base, of, held, None
    rows = np.flatnonzero(fit if of is None else fit[of])
    if of is None:
        return rows, rows, None, held, rows
    kept = np.zeros(len(base), dtype=bool)
    kept[of[rows]] = True
    return rows, base[kept], (np.cumsum(kept) - 1)[of[rows]], held, np.flatnonzero(kept)


def nothing_fits(cands: Candidates, held: Held) -> Evaluation:
    """evaluate(fitting_only=True) of a batch none of whose candidates fits: every array empty, `rows` too."""
    none = np.zeros(0)
    return Evaluation(
        candidates=cands.take(np.zeros(0, dtype=np.int64)), step_time_s=none, step_time_no_overlap_s=none,
        compute_time_s=none, communication_time_s=none, exposed_communication_time_s=none, bubble_time_s=none,
        optimizer_time_s=none, memory={k: v[:0] for k, v in held.memory.items()}, memory_total_bytes=none,
        memory_capacity_bytes=held.capacity_bytes, fits=np.zeros(0, dtype=bool), model_flops_per_step=none,
        hardware_flops_per_step=none, mfu=none, hfu=none, tokens_per_s=none, comms={},
        slowest_stage=np.zeros(0, dtype=np.int64), memory_stage=np.zeros(0, dtype=np.int64),
        rows=np.zeros(0, dtype=np.int64))

