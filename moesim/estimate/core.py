"""The analytical step model over a batch of candidates.

Per device, per micro-batch, per pipeline stage (1F1B or GPipe; Narayanan et al. 2021,
arXiv 2104.04473):
  T_mb(s)   = Σ_layers (fwd + bwd + recompute) + exposed per-micro-batch collectives (tp, ep, etp, pp)
  T_pipe    = Σ_s T_mb(s) + (m − 1) · max_s T_mb(s)                 (Alpa, Zheng et al. 2022, §5 Eq. 2;
              (m + pp − 1) · T_mb at equal stages, bubble (pp−1)/m of the ideal: the pipeline fills
              and drains through every stage, the lighter ends and uneven splits faster); other
              schedules (interleaved, zb-h1, zb-v, dualpipe) as moesim.estimate.schedules
  cp        context parallelism prices a layer as b/cp sequences plus its ring / all-to-all traffic
              (moesim.estimate.context_parallel); the dense gradient sync runs over dp·cp
  T_dp      = gradient sync over dp (dense) and edp (experts), ZeRO-dependent
  T_step    = T_pipe + max(0, T_dp − T_bwd(one micro-batch)) + T_opt      (overlapped grad reduce;
              T_bwd = the last micro-batch's backward compute and backward collectives)
  T_no_ovl  = T_pipe + T_dp + T_opt
  MFU       = model FLOP per step / (T_step · devices · peak)   (PaLM, arXiv 2204.02311, App. B);
              model FLOP count the expert assignments processed, not those a capacity rule drops

`evaluate` reads top to bottom: fold the candidates (folds.py), per-layer terms (terms.py) placed on
stages (stages.py), what each device holds (holdings.py over device_state.py: parameters, optimizer step,
memory), the collectives priced and counted per stage (comm_ledger.py), the pipeline (schedules.py; a
pipeline layout's uneven chunks: layout_chunks.py), the totals (evaluation.py: the arrays it returns).
"""

from __future__ import annotations

import functools

import numpy as np

from moesim import memory as mem
from moesim.estimate import schedules as sch
from moesim.collectives.base import CollectiveModel
from moesim.estimate.candidates import Candidates
from moesim.estimate.comm_ledger import CommLedger, comm_totals
from moesim.estimate.embedding_sync import (EMBEDDING_AXIS, embedding_concurrent, embedding_grad_bytes,
                                            embedding_group, ends_apart, shares_embedding)
from moesim.estimate.device_state import optimizer_time_s
from moesim.estimate.evaluation import PER_MB_AXES, CommTotal, Evaluation
from moesim.estimate.expert_drops import capacity_by_stack, model_flops_and_drops
from moesim.estimate.folds import order_free_rows, schedule_free_rows, take_rows
from moesim.estimate.grad_buckets import chunk_buckets
from moesim.estimate.grad_sync import exposed_sync_s, grad_sync
from moesim.estimate.holdings import device_holdings, fitting_rows, nothing_fits
from moesim.estimate.layout_chunks import layout_bubble, layout_chunk_weights, no_layout
from moesim.estimate.param_gather import forward_gathers_s
from moesim.estimate.stage_comms import BACKWARD_ONLY_CALLS, stage_comms  # noqa: F401  (as before the split)
from moesim.estimate.stages import Stages, first_leg_counts, per_stage, run_ends, v_leg_tokens, v_rows, v_runs
from moesim.estimate.strides import candidate_strides
from moesim.estimate.terms import CommCall
from moesim.estimate.tp_grad_sync import TP_GRAD_ALL_REDUCE, reduces_over_tp, replicated_grad_bytes
from moesim.flops import BACKWARD_TO_FORWARD
from moesim.ops.vocab import embedding_tokens
from moesim.ops.vocab_padding import padded_vocab_size
from moesim.specs.scenario import Scenario
from moesim.workload import build_workload

# Importable from here as before the split (moesim.estimate.result, tests/search/test_search_speedups.py).
__all__ = ["PER_MB_AXES", "CommTotal", "Evaluation", "evaluate"]
_order_free_rows, _schedule_free_rows = order_free_rows, schedule_free_rows


def evaluate(scenario: Scenario, cands: Candidates, collective_model: CollectiveModel, *,
             breakdown: bool = True, fitting_only: bool = False) -> Evaluation:
    """Evaluate every candidate of `cands` on `scenario` (see module docstring for the model).

    With `breakdown=False` the per-collective totals (`Evaluation.comms`) are left out and every
    other figure is the same: the layout search ranks that way, then evaluates its top few again.
    With `fitting_only` the candidates over the memory capacity (known before any mesh order counts)
    are dropped before anything is priced: the Evaluation holds the fitting ones, `rows` their input
    positions (none when none fits: every array empty); every figure is the same as without."""
    model, hw, tr = scenario.model, scenario.hardware, scenario.training
    seq, dec = scenario.seq_lens
    wl = build_workload(model, seq, dec)
    f = lambda a: np.asarray(a, dtype=float)  # noqa: E731
    full, devices = cands, scenario.devices
    # Up to the collectives nothing depends on the mesh order: compute it once per distinct
    # order-free row (a layout search has several orders per row), expand before the collectives.
    base, of = order_free_rows(cands)
    rows = None
    if fitting_only:  # the layout search ranks only what fits: the rest is priced on the rows that fit
        rows, base, of, fitted, kept_at = fitting_rows(scenario, wl, cands, base, of)
        if rows is not None and not len(rows):
            return nothing_fits(cands, fitted)
        full = full if rows is None else full.take(rows)
    if of is not None or rows is not None:
        cands = cands.take(base)
    # The memory check's figures of the rows kept, not computed again (row by row the same: searchspeed19).
    held = device_holdings(scenario, wl, cands, lambda builder: [builder.build(cls) for cls in wl.classes],
                 None if not fitting_only else (fitted, kept_at))
    tp, pp, ep, etp, m, edp = held.tp, held.pp, held.ep, held.etp, held.m, held.edp
    cp, vp, sched = held.cp, held.vp, held.sched
    b, builder, terms, stages = held.b, held.builder, held.terms, held.stages
    n_cand, counts, exists, first, last = len(cands), stages.counts, held.exists, held.first, held.last
    n_stages = counts.shape[1]
    dense_params, expert_params, dcp, zero = held.dense_params, held.expert_params, held.dcp, held.zero
    pair, memory, total_mem = held.pair, held.memory, held.total_mem
    mem_index, capacity_bytes = held.mem_index, held.capacity_bytes

    # Compute per micro-batch per stage; logits on the last stage (2·h·V per output token, fwd), once per
    # output head (the main model's and one per MTP module).
    # (hardware FLOPs: over Megatron's padded vocabulary where it runs, moesim.ops.vocab_padding)
    vocab = padded_vocab_size(model.vocab_size, tp, tr.framework, hw.device_kind)
    logits_flops = wl.logit_heads * 2 * b * wl.output_tokens * model.d_model * vocab / tp
    logits_time = builder.logits_time_s(wl.output_tokens, wl.logit_heads)
    fwd = per_stage(counts, [t.fwd_time_s for t in terms])
    bwd = per_stage(counts, [t.bwd_time_s for t in terms])
    recompute = per_stage(counts, [t.recompute_time_s for t in terms])
    # The input embedding on the first stage (moesim.ops.vocab; GPUs): its backward is all weight gradient.
    in_tokens = embedding_tokens(model, seq, dec)
    embedding_time, embedding_bwd = (builder.embedding_time_s(in_tokens, backward_only) for backward_only in (0, 1))
    input_embedding = embedding_time  # (the name is the gradient's all-reduce below; the walk reads this one)
    head = held.head  # the output head's stage: the last, the first under ZB-V
    compute_mb = fwd + bwd + recompute + np.where(head, logits_time[:, None], 0.0) \
        + np.where(first, embedding_time[:, None], 0.0)
    bwd_mb = bwd + np.where(head, (2 / 3) * logits_time[:, None], 0.0) + np.where(first, embedding_bwd[:, None], 0.0)
    # The same in a DualPipe overlapped pair, where the layers' compute-bound operators run beside DeepEP's SMs
    # (ClassTerms.pair_time_s, moesim.ops.sm_share), the recompute's GEMMs too (recompute_pair_s); head and embedding
    # as above.
    sm_shared = any(t.fwd_pair_parts_s for t in terms)  # without sharing compute_pair_mb is compute_mb itself
    compute_pair_mb = compute_mb if not sm_shared else \
        compute_mb - fwd - bwd - recompute + per_stage(counts, [t.pair_time_s() + t.recompute_pair_s() for t in terms])
    # Uneven virtual stages (a pipeline layout, interleaved): each chunk's compute, for the bubble (layout_pipe_s).
    chunk_weights = layout_chunk_weights(cands, wl, terms, sched, logits_time, embedding_time, embedding_bwd)
    # Weight-gradient part W (zero-bubble schedules) and the attention cores a CP ring hides under.
    weight_mb = per_stage(counts, [sch.weight_grad_time_s(t) for t in terms])
    weight_mb += np.where(head, logits_time[:, None] / 3, 0.0) + np.where(first, embedding_bwd[:, None], 0.0)
    # ZB-H1 and ZB-V: the F slot's compute as the simulator runs it (des.schedule.zbv_piece_times, pieces.forward):
    # the layers' forward, the embedding's forward on the first stage (all of it less its backward) and the head's
    # forward, a third of `logits_s` (Kaplan et al. §2.1), on the head's stage; without them they sat in I = t − F − W.
    # whether any row runs a zero-bubble schedule (grad_buckets.SYNC_AFTER_PIPELINE's)
    zb_some = bool((sch.is_schedule(sched, "zb-h1") | sch.is_schedule(sched, "zb-v")).any())
    slot_fwd = fwd + np.where(head, logits_time[:, None] / (1 + BACKWARD_TO_FORWARD), 0.0) \
        + np.where(first, (embedding_time - embedding_bwd)[:, None], 0.0) if zb_some else fwd
    # ZB-V: each device's first-leg piece (stages.first_leg_counts), its forward, I and W compute (as
    # des.schedule.zbv_piece_times: I the backward and recompute less W; the embedding's backward in W on device 0)
    leg_fwd, leg_i, leg_w = None, None, None
    if sch.is_schedule(sched, "zb-v").any():
        leg = first_leg_counts(wl, cands.pp, cands.first_stage_layers, cands.last_stage_layers, held.v,
                               sch.is_schedule(sched, "zb-v"), n_stages)
        wgrad = [sch.weight_grad_time_s(t) for t in terms]
        leg_i = [t.bwd_time_s + t.recompute_time_s - g for t, g in zip(terms, wgrad)]
        leg_fwd, leg_i, leg_w = (per_stage(leg, per_class) for per_class in
                                 ([t.fwd_time_s for t in terms], leg_i, wgrad))
        leg_w = leg_w + np.where(first, embedding_bwd[:, None], 0.0)
    # Ring window per layer: the forward core, its backward (the attention part's backward/forward ratio,
    # as the simulator scales it) and a full recompute's replay.
    full_rec = (f(cands.recompute) == mem.RECOMPUTE_CODES["full"])
    core_mb = counts * np.stack([np.broadcast_to(t.attention_core_time_s, (n_cand,)) * (
        1 + full_rec + np.divide(t.bwd_parts_s["attention"], t.fwd_parts_s["attention"],
                                 out=np.full(n_cand, 2.0), where=np.asarray(t.fwd_parts_s["attention"]) > 0))
        for t in terms], axis=1)[:, None] if np.any(cp > 1) else None

    q_g = tr.bytes_of("grad")
    opt_time = optimizer_time_s(model, hw, tr, dense_params, expert_params, dcp, edp, zero, exists)

    # Model FLOPs less the expected dropped assignments, and the share dropped (expert_drops.py).
    model_flops, drop_fraction = model_flops_and_drops(model, tr, wl, terms, cands.capacity_factor, seq, dec, n_cand)

    # Hardware FLOPs of the whole model per micro-batch, as one device of each stage executes them
    # (every layer and the logits once); the devices / pp of each stage each run their share.
    hw_model_mb = sum(wl.layer_class_index.count(c) * t.hardware_flops for c, t in enumerate(terms)) \
        + 3 * logits_flops

    capacity, tokens_per_device, by_stack = capacity_by_stack(wl, terms)
    calls = [t.comms for t in terms]  # per layer class, the collectives each layer issues
    # Calls per stage of each of them where the stage exists and the axis has a group (add's gate): no
    # mesh order in it, so computed before the rows expand to every order below.
    of_sizes = {"tp": tp, "dp": dcp, "pp": pp, "ep": ep, "etp": etp, "edp": edp, "cp": cp}
    layer_calls = [[counts[:, :, c] * np.asarray(call.calls, dtype=float)[..., None]
                    * (exists & (of_sizes[call.axis] > 1)[:, None]).astype(float) for call in class_calls]
                   for c, class_calls in enumerate(calls)]
    if of is not None:  # back to every candidate: the collectives depend on the order
        x = lambda a: take_rows(a, of)  # noqa: E731
        cands, n_cand = full, len(full)
        tp, pp, m, b = x(tp), x(pp), x(m), x(b)
        cp, vp, sched, dcp = x(cp), x(vp), x(sched), x(dcp)
        stages = Stages(index=x(stages.index), counts=x(stages.counts), tokens_out=x(stages.tokens_out),
                        tokens_in=x(stages.tokens_in), multiplicity=x(stages.multiplicity),
                        latest=x(stages.latest))
        counts, exists, first, last = stages.counts, x(exists), x(first), x(last)
        compute_mb = x(compute_mb)  # fwd, bwd_mb and weight_mb are read on the slowest stage only: pick_of below
        compute_pair_mb = x(compute_pair_mb) if sm_shared else compute_mb
        core_mb = None if core_mb is None else x(core_mb)
        dense_params, expert_params, opt_time = x(dense_params), x(expert_params), x(opt_time)
        memory, total_mem, mem_index = {k: x(v) for k, v in memory.items()}, x(total_mem), x(mem_index)
        pair = x(pair)
        capacity, tokens_per_device = x(capacity), x(tokens_per_device)
        by_stack = {stack: (x(c), x(t)) for stack, (c, t) in by_stack.items()}
        model_flops, drop_fraction, hw_model_mb = x(model_flops), x(drop_fraction), x(hw_model_mb)
        # The calls per stage are layer_calls from here (calls=None).
        calls = [[CommCall(c.name, c.axis, c.op, x(np.asarray(c.size_bytes)), None)
                  for c in class_calls] for class_calls in calls]
        layer_calls = [[x(a) for a in class_calls] for class_calls in layer_calls]
        zero = cands.zero_stage[:, None]

    # Collectives once per row without schedule and vp (a search tries several per row): sizes do not
    # depend on them; the pipeline sends' count (× v interleaved, × 2 zb-v) and DualPipe's second
    # parameter copy (its gradients synced like the first's: twice the time) scale the results below.
    pm = sch.parameter_multiple(sched)[:, None]
    sends = sch.p2p_multiple(sched, vp)[:, None]
    zb_v = sch.is_schedule(sched, "zb-v").astype(float)  # (every candidate) ZB-V: the head on the first stage
    # The zero-bubble rows sync their gradients after the pipeline, overlap_grad_reduce off, one bucket a stage, as
    # sail-sg's runtime runs them (grad_buckets.SYNC_AFTER_PIPELINE); None: no such row.
    zb_h1 = sch.is_schedule(sched, "zb-h1")
    after_pipe = zb_h1 | (zb_v > 0) if tr.overlap_grad_reduce and zb_some else None
    # Interleaved, a stage syncs its v chunks apart (grad_buckets.bucketed): the buckets' sizes follow v (even
    # chunks; a pipeline layout's uneven chunks keep 1/v of the stage's buckets each, below).
    chunks = np.where(sch.is_schedule(sched, "interleaved") & (np.asarray(vp) > 1) & no_layout(cands),
                      np.asarray(vp, dtype=float), 1.0)
    # ZB-V's rows on their devices' V pieces (stages.v_rows) hold other layers than the same row's other schedules
    v_full = v_rows(wl, cands.pp, cands.first_stage_layers, cands.last_stage_layers, zb_v > 0)
    sf, sf_inv = schedule_free_rows(cands, chunks, v_full, after_pipe)
    one_bucket = after_pipe  # the rows synced in one bucket after their pipeline (None: none), on the rows below
    every = dict(cands=cands, n_cand=n_cand, tp=tp, pp=pp, m=m, b=b, exists=exists, first=first, last=last,
                 stages=stages, dense_params=dense_params, expert_params=expert_params, calls=calls, core_mb=core_mb)
    dense_1, expert_1 = dense_params / pm, expert_params / pm
    if sf_inv is not None:
        y = lambda a: take_rows(a, sf)  # noqa: E731
        cands, n_cand = cands.take(sf), len(sf)
        tp, pp, m, b, exists, first, last = y(tp), y(pp), y(m), y(b), y(exists), y(first), y(last)
        stages = Stages(index=y(stages.index), counts=y(stages.counts), tokens_out=y(stages.tokens_out),
                        tokens_in=y(stages.tokens_in), multiplicity=y(stages.multiplicity),
                        latest=y(stages.latest))
        dense_1, expert_1, chunks = y(dense_1), y(expert_1), y(chunks)
        one_bucket = None if one_bucket is None else y(one_bucket)
        calls = [[CommCall(c.name, c.axis, c.op, y(np.asarray(c.size_bytes)), None)
                  for c in class_calls] for class_calls in calls]
        layer_calls = [[y(a) for a in class_calls] for class_calls in layer_calls]
        core_mb = None if core_mb is None else y(core_mb)
    counts, zero = stages.counts, cands.zero_stage[:, None]
    # ZB-V: each class's share of a device's layers in its first-leg piece (its calls'), on the rows that hold a ZB-V
    # candidate (a row here may stand for several schedules)
    leg_share = None
    if zb_v.any():
        v_sf, on = v_full, zb_v > 0
        if sf_inv is not None:  # the folded rows: a row holds a ZB-V candidate where any of its candidates runs it
            v_sf, on = None if v_full is None else v_full[sf], np.zeros(len(sf), dtype=bool)
            on[sf_inv[zb_v > 0]] = True
        leg_share = np.divide(first_leg_counts(wl, cands.pp, cands.first_stage_layers, cands.last_stage_layers, v_sf,
                                               on, n_stages), counts, out=np.zeros(counts.shape), where=counts > 0)
    strides = candidate_strides(cands)
    sizes = {"tp": cands.tp, "dp": cands.dp * cands.cp, "pp": cands.pp, "ep": cands.ep, "etp": cands.etp,
             "edp": cands.edp, "cp": cands.cp}
    # dp·cp as one group: exact when dp follows cp on the mesh (tp-cp-dp, Megatron's order), else the inner stride.
    strides["dp"] = np.where(cands.cp > 1, np.minimum(strides["cp"], strides["dp"]), strides["dp"])
    # The first and last stage's embedding group where the model shares its embedding (embedding_sync.py; the
    # schedules that put both ends on one device are masked after the schedule fold, `ends_apart` below).
    sizes[EMBEDDING_AXIS], strides[EMBEDDING_AXIS] = embedding_group(
        np.where(shares_embedding(model, wl), cands.pp, 1), strides["pp"])
    ledger = CommLedger(collective_model, devices, sizes, strides, exists, breakdown,
                        {EMBEDDING_AXIS: embedding_concurrent(devices, cands.pp)})
    add = ledger.add

    # Each stage's per-micro-batch collectives, the layers' and the embedding's and head's (stage_comms.py).
    sc = stage_comms(tr, model, wl, hw, cands, sched, calls, layer_calls, ledger, counts, core_mb, leg_share, first,
                     last, zb_v, zb_some, b, in_tokens)  # zb_some: the forward's own collectives apart
    per_mb_comm, bwd_comm, a2a_call, head_comm = sc.per_mb_comm, sc.bwd_comm, sc.a2a_call, sc.head_comm
    embedding_fb, backward_only, layer_fwd_comm, embedding_fwd_comm, leg_fwd_comm, leg_comm = sc.embedding_fb, \
        sc.backward_only, sc.layer_fwd_comm, sc.embedding_fwd_comm, sc.leg_fwd_comm, sc.leg_comm
    sp_split = tp[:, None] if tr.sequence_parallel else 1
    pp_bytes = b[:, None] * stages.tokens_out * model.d_model * builder.q_a / sp_split
    # Per micro-batch a stage sends its activations forward (all but the last stage) and the
    # gradient of its input backward (all but the first), each the size of that boundary;
    # v times per micro-batch interleaved, twice for zb-v (moesim.estimate.schedules).
    pp_forward = add("pp_send_recv", "pp", "send_recv", pp_bytes, np.where(last, 0, 1))
    previous = b[:, None] * stages.tokens_in * model.d_model * builder.q_a / sp_split
    pp_backward = add("pp_send_recv", "pp", "send_recv", previous, np.where(first, 0, 1))
    # ZB-V: each device's two sends down the V, each at its own boundary's size (stages.v_leg_tokens)
    leg_send = None if leg_share is None else [np.where(legs > 0, ledger.time_of(
        "pp_send_recv", "pp", "send_recv", b[:, None] * legs * model.d_model * builder.q_a / sp_split), 0.0)
        for legs in np.moveaxis(v_leg_tokens(wl, cands.pp, cands.first_stage_layers, cands.last_stage_layers, v_sf,
                                             on, n_stages), 2, 0)]
    # Interleaved, the chunks wrap around: the last device sends v − 1 chunk outputs forward to device 0, which
    # sends v − 1 input gradients back (Megatron's interleaved schedule: every chunk boundary but the model's ends).
    wrap = np.where(sch.is_schedule(sched, "interleaved"), np.asarray(vp, dtype=float) - 1, 0.0)[:, None]
    wrap_sends = add("pp_send_recv", "pp", "send_recv", previous, np.where(first | last, 1, 0), multiple="wrap") \
        if (wrap > 0).any() else 0.0  # one call on each end stage (pp > 1: never both)

    # The gradient sync, bucket by bucket on each stage (grad_sync.py).
    sync = grad_sync(wl, tr, cands, stages, ledger, chunks, dense_1, expert_1, tp, pp, m, first, last, zero,
                     one_bucket)
    dp_time, zero3_mb, last_bucket, gather_time = sync.dp_time, sync.zero3_mb, sync.last_bucket, sync.gather_time
    most_buckets, head_time, prior = sync.most_buckets, sync.head_time, sync.prior
    first_chunk_s, later_chunk_s = sync.first_chunk_s, sync.later_chunk_s

    # The shared word embedding's gradient, all-reduced by the first and last stage after the sync (Megatron
    # finalize_model_grads.py, _allreduce_word_embedding_grads; embedding_sync.py): once per step, not hidden.
    # Without a shared embedding its group has size 1 (no calls, every time 0): nothing is priced (searchspeed19).
    tied = shares_embedding(model, wl)
    embedding_time = add("embedding_grad_all_reduce", EMBEDDING_AXIS, "all_reduce",
                         embedding_grad_bytes(model, wl, tr, tp), np.where(first | last, 1, 0),
                         multiple="ends_apart") if tied else None
    # With sequence parallelism the gradients every tp rank holds whole (norms, router, MLA's duplicated weights),
    # all-reduced over tp once per step after the sync (finalize_model_grads, tp_grad_sync.py); × the parameter copies.
    tp_grad_time = None
    if reduces_over_tp(tr.sequence_parallel, tp, hw.device_kind).any():
        replicated = per_stage(stages.counts, [np.full(n_cand, float(c.params_replicated)) for c in wl.classes])
        tp_grad_time = add(TP_GRAD_ALL_REDUCE, "tp", "all_reduce", replicated_grad_bytes(wl, replicated, last, q_g),
                           1.0, multiple="copies")

    # Back to every candidate; the schedule's multiples.
    z = (lambda a: np.take(a, sf_inv, axis=0)) if sf_inv is not None else (lambda a: a)  # noqa: E731
    per_mb_comm, bwd_comm, pp_forward, pp_backward = z(per_mb_comm), z(bwd_comm), z(pp_forward), z(pp_backward)
    fwd_less_bwd = z(embedding_fb) if np.ndim(embedding_fb) else 0.0
    fwd_less_bwd = fwd_less_bwd - (z(backward_only) if np.ndim(backward_only) else 0.0)
    layer_fwd_comm, embedding_fwd_comm, leg_fwd_comm, leg_comm = (z(a) if np.ndim(a) else a for a in (
        layer_fwd_comm, embedding_fwd_comm, leg_fwd_comm, leg_comm))
    a2a_call = {k: z(v) for k, v in a2a_call.items()}
    leg_send = None if leg_send is None else [z(a) for a in leg_send]
    at_last = 1.0 - zb_v[:, None]  # the head's collectives where the schedule runs the head (ZB-V: the first stage)
    if "first" in head_comm:
        for end, keep in (("last", at_last), ("first", 1.0 - at_last)):
            per_mb_comm, bwd_comm = per_mb_comm + z(head_comm[end][0]) * keep, bwd_comm + z(head_comm[end][1]) * keep
            fwd_less_bwd = fwd_less_bwd + z(head_comm[end][0] - 2 * head_comm[end][1]) * keep if zb_some else 0.0
    else:  # no ZB-V candidate: every keep is 1.0, the head's collectives all on the last stage (x · 1.0 is x)
        per_mb_comm, bwd_comm = per_mb_comm + z(head_comm["last"][0]), bwd_comm + z(head_comm["last"][1])
        fwd_less_bwd = fwd_less_bwd + z(head_comm["last"][0] - 2 * head_comm["last"][1]) if zb_some else 0.0
    # ZeRO >= 1: the parameter all-gathers after the optimizer step, nothing beside them: the stage that gathers
    # longest (param_gather.py), its max taken on the rows (pm >= 0 scales it); a stage that does not exist has no
    # calls (0 s). None (no ZeRO >= 1 row): 0.0 for every candidate, as the priced zeros would give (x + 0.0 is x).
    param_gather = 0.0 if gather_time is None else z(functools.reduce(np.maximum, gather_time)) * pm[:, 0]
    dp_time, zero3_mb, last_bucket = z(dp_time) * pm, z(zero3_mb) * pm, z(last_bucket) * pm
    first_chunk_s, later_chunk_s, chunks = z(first_chunk_s) * pm, z(later_chunk_s) * pm, z(chunks)
    most_buckets = z(most_buckets)
    buckets_own = most_buckets  # before chunk_buckets: a stage's own buckets (overlap_param_gather's chains)
    head_time, prior = z(head_time) * pm[:, 0], z(prior) * pm[:, 0]
    head_bwd_comm = z(head_comm["last"][1])  # the head's backward collectives at pp 1 (the first stage's own)
    apart = ends_apart(sched, every["pp"])[:, None].astype(float)  # ZB-V, DualPipe: both ends on one device
    embedding_time = None if embedding_time is None else z(embedding_time) * apart
    tp_grad = 0.0 if tp_grad_time is None else z(tp_grad_time) * pm
    ledger.expand(z, sends, pm, wrap=wrap, ends_apart=apart, head_last=at_last, head_first=1.0 - at_last, copies=pm)
    (cands, n_cand, tp, pp, m, b, exists, first, last, stages, dense_params, expert_params, calls,
     core_mb) = every.values()
    # Interleaved, a later stage's v chunks sync one bucket each, as each chunk's last backward ends
    # (grad_buckets.chunk_buckets): v buckets over the window (even chunks priced as v calls of one chunk's size).
    most_buckets, last_bucket = chunk_buckets(sched, vp, first, most_buckets, last_bucket, dp_time)
    counts, zero = stages.counts, cands.zero_stage[:, None]
    wrap_sends = z(wrap_sends) * wrap if np.ndim(wrap_sends) else 0.0
    pp_forward, pp_backward = pp_forward * sends + wrap_sends * last, pp_backward * sends + wrap_sends * first
    pp_comm = pp_forward + pp_backward
    per_mb_comm += pp_comm + zero3_mb
    bwd_comm += pp_backward + zero3_mb / 2  # the backward half of the ZeRO-3 parameter gathers
    fwd_comm = bwd_comm + fwd_less_bwd + pp_forward - pp_backward if zb_some else 0.0

    # DualPipe: the device of stage s runs m/2 micro-batches through s and m/2 through p − 1 − s
    # (moesim.des.orders.device_of), so its time per micro-batch is the pair's mean (equal stages: unchanged).
    dual_t, pair_t = sch.is_schedule(sched, "dualpipe"), None
    lazy = of  # fwd, bwd_mb and weight_mb stayed on the order-free rows (candidate i's at row of[i]); None: not
    if dual_t.any():
        pair_t = pair  # the memory's pair columns (dualpipe_pair_columns), on every candidate
        pair_mean = lambda a: np.where(dual_t[:, None], (a + np.take_along_axis(a, pair_t, axis=1)) / 2, a)  # noqa: E731
        compute_mb, per_mb_comm, bwd_comm, pp_comm = map(pair_mean, (compute_mb, per_mb_comm, bwd_comm, pp_comm))
        compute_pair_mb = pair_mean(compute_pair_mb) if sm_shared else compute_mb
        if lazy is not None:  # every candidate's own columns first: the pair's mean reads them
            fwd, bwd_mb, weight_mb, slot_fwd = (np.take(a, lazy, axis=0) for a in (fwd, bwd_mb, weight_mb, slot_fwd))
            leg_fwd, leg_i, leg_w = (None if a is None else np.take(a, lazy, axis=0)
                                     for a in (leg_fwd, leg_i, leg_w))
            lazy = None
        fwd, bwd_mb, weight_mb, slot_fwd = map(pair_mean, (fwd, bwd_mb, weight_mb, slot_fwd))
    stage_mb = compute_mb + per_mb_comm
    # Interleaved: Megatron overlaps the v-fold pipeline sends with compute (--overlap-p2p-communication,
    # on by default with virtual stages); what the compute cannot hide stays exposed. ZB-V likewise: its
    # two-fold sends run while the device works on its other piece (the simulator's p2p stream).
    inter = (sch.is_schedule(sched, "interleaved") | sch.is_schedule(sched, "zb-v"))[:, None]
    if inter.any():
        stage_mb = np.where(inter, stage_mb - pp_comm + np.maximum(0.0, pp_comm - compute_mb), stage_mb)
    stage_mb = np.where(exists, stage_mb, -np.inf)
    slow_key = stage_mb
    if dual_t.any():  # DualPipe: the slowest device counts its overlapped pairs at max(compute, collectives)
        pairs = sch.dualpipe_pairs(m, pp)[:, None]
        paired = pairs * np.maximum(compute_pair_mb, stage_mb - compute_mb) + (m[:, None] - pairs) * stage_mb
        slow_key = np.where(dual_t[:, None], paired, stage_mb)
    slow = np.argmax(slow_key, axis=1)
    at_slow = np.arange(n_cand) * n_stages + slow  # the slowest stage's entry in a C-ordered (N, S) array

    def pick(a: np.ndarray, rows=None) -> np.ndarray:
        """a[i, slow[i]] per candidate i; `rows`: `a` holds the order-free rows, row i at rows[i]."""
        if rows is None and a.shape != (n_cand, n_stages):
            return np.take_along_axis(a, slow[:, None], axis=1)[:, 0]
        flat = at_slow if rows is None else rows * n_stages + slow
        return np.take(np.ascontiguousarray(a).reshape(-1), flat)

    pick_of = lambda a: pick(a, lazy)  # noqa: E731  (fwd, bwd_mb, weight_mb: on the order-free rows unless None)
    t_mb, compute_1, comm_1 = pick(stage_mb), pick(compute_mb), pick(per_mb_comm)
    # DualPipe overlaps a forward chunk with another micro-batch's backward chunk, hiding their
    # collectives under each other's compute (DeepSeek-V3 §3.2.1, Figure 4): max, not sum, for those.
    # Their compute-bound operators run on the SMs DeepEP leaves (compute_pair_mb; = compute_mb without sharing).
    overlapped = np.maximum(pick(compute_pair_mb) if sm_shared else compute_1, t_mb - compute_1)
    # One pipeline send: the slowest stage's larger direction (the first stage has no backward send, the last
    # no forward one: pp_comm / 2 there was half a send). Interleaved, every device sends both ways.
    hop = pick(np.maximum(pp_forward, pp_backward)) / sends[:, 0]
    # 1F1B / GPipe fill and drain through every stage (schedules.py): Σ_s (t_s − t) over the pp stages, each
    # representative once per stage of its kind; exactly 0 at equal stages.
    below = np.sum(np.where(exists, stage_mb - t_mb[:, None], 0.0) * stages.multiplicity, axis=1)
    # ZB-V: every stage's own start-up skew and time (schedules.zbv_pipe_s), the slowest device not always the last,
    # and at few micro-batches one micro-batch down the V and back; ZB-H1 each device's tail of W's (zbh1_pipe_s).
    own = (lambda a: a) if lazy is None else (lambda a: np.take(a, lazy, axis=0))  # noqa: E731
    # ZB-V's F without the forward sends: they run on the p2p stream beside the compute (stage_mb less pp_comm
    # above, `inter`), the form charging one send per device boundary on the fill and drain paths (h = hop).
    zbv = None
    if zb_v.any():
        # F¹, the first-leg piece's forward: the larger half of the stage's layers (workload.v_shape_ranges,
        # stage_layers(n, 2)) with their forward collectives, and on the first stage the embedding's forward (its
        # compute and collectives); the head's forward stays on the second leg (device 0's V-end piece).
        n_layers = counts.sum(axis=2)
        half = np.divide(np.ceil(n_layers / 2), n_layers, out=np.full(n_layers.shape, 0.5), where=n_layers > 0)
        emb_fwd_s = input_embedding - embedding_bwd  # the embedding's forward compute, on the order-free rows
        emb_fwd_s = emb_fwd_s if of is None else np.take(emb_fwd_s, of, axis=0)
        embedding_fwd = emb_fwd_s[:, None] * first + embedding_fwd_comm
        first_leg = half * (own(fwd) + layer_fwd_comm) + embedding_fwd
        if v_full is not None:  # a device's first-leg piece, its own layers (Qi et al. ICLR'24 §6; stages.v_rows)
            first_leg = np.where(v_full[:, None], own(leg_fwd) + leg_fwd_comm + embedding_fwd, first_leg)
        leg_b = own(leg_i) + leg_comm - leg_fwd_comm  # I¹: the first-leg piece's I, its collectives but the forward's
        runs = v_runs(wl, cands.pp, cands.first_stage_layers, cands.last_stage_layers, v_full, zb_v > 0, n_stages)
        zbv = sch.zbv_pipe_s(m, pp, stage_mb, own(slot_fwd) + fwd_comm - pp_forward, own(weight_mb), stages.latest,
                             stages.multiplicity, hop, first_leg, stages.index, leg_b, own(leg_w), leg_send, runs)
    zbh1 = None
    if zb_h1.any():  # each device's tail after its last I on every stage's own times (zbh1_pipe_s; stages.run_ends)
        h1_rows = np.flatnonzero(zb_h1)  # its rows only (a search tries several schedules per layout)
        r = lambda a: np.take(a, h1_rows, axis=0)  # noqa: E731
        ends = run_ends(wl, r(cands.pp), *(None if a is None else r(a) for a in
                                          (cands.first_stage_layers, cands.last_stage_layers)), n_stages)
        at = h1_rows if lazy is None else np.take(lazy, h1_rows)  # fwd, weight_mb: the order-free rows unless None
        zbh1 = np.zeros(n_cand)
        # F with the forward's collectives (fwd_comm), as the simulator's F slot runs them (I = t − F − W the rest)
        zbh1[h1_rows] = sch.zbh1_pipe_s(r(m), r(pp), r(stage_mb), np.take(slot_fwd, at, axis=0) + r(fwd_comm),
                                        np.take(weight_mb, at, axis=0), r(stages.multiplicity), *ends)
    # Megatron's combined 1F1B (training.moe_a2a_overlap): a pair is the two micro-batches' serial time less what
    # Megatron's per-layer order hides (a2a_order; compute at the pair's rate, as DualPipe's pairs).
    a2a_pair, walk = None, None
    if tr.moe_a2a_overlap:
        from moesim.estimate import a2a_order

        saved, lead, tail = a2a_order.saving_s(terms, a2a_call, counts, vp, of, sm_shared, wl.layer_class_index,
                                               ends=True)
        a2a_pair = t_mb - compute_1 + (pick(compute_pair_mb) if sm_shared else compute_1) - pick(saved)
        # interleaved, even chunks: the slots walked in Megatron's order, each waiting on its sends (a2a_order)
        walked = np.flatnonzero(sch.is_schedule(sched, "interleaved") & (pp > 1) & no_layout(cands))
        if len(walked):
            r = (lambda a: a) if of is None else (lambda a: np.take(a, of, axis=0))  # noqa: E731
            walk = a2a_order.walk_pipe_s(walked, cands, wl, m, pp, vp, stage_mb, compute_mb, compute_pair_mb, saved,
                                         own(fwd), r(logits_time), r(input_embedding), r(embedding_bwd), hop, lead,
                                         tail)
    chunk_bubble = None if chunk_weights is None else layout_bubble(
        chunk_weights, of, cands, wl, stage_mb, m, t_mb)
    pipe, bubble = sch.pipeline_time_s(sched, m, pp, vp, t_mb, pick_of(fwd), pick_of(bwd_mb) + pick(bwd_comm),
                                       pick_of(weight_mb), hop, overlapped, below, zbv, zbh1_pipe=zbh1,
                                       a2a_pair_s=a2a_pair, layout_bubble_s=chunk_bubble)
    if walk is not None:  # the walk's waits on the sends are pipeline bubble: the work priced is unchanged
        pipe, bubble = np.where(np.isnan(walk), pipe, walk), np.where(np.isnan(walk), bubble, bubble + walk - pipe)
    # Each stage's tp all-reduce of its replicated gradients follows its own sync (0.0 without SP or at tp 1).
    dp_sync = np.max(np.where(exists, dp_time + tp_grad, 0), axis=1)
    # Untied: 0.0 for every candidate, as the priced zeros would give (x + 0.0 is x).
    embedding_sync = np.max(np.where(exists, embedding_time, 0), axis=1) if embedding_time is not None else 0.0
    # Gradient buckets reduce while the last micro-batch runs backward on their own stage: its backward compute and
    # its backward collectives (the simulator's grad stream overlaps both; contention is the simulator's). The step
    # waits for the stage whose sync outlasts its window most (MCore distributed_data_parallel.py, finish_grad_sync
    # before the optimizer); stage 0 ends a 1F1B / GPipe pipeline last, the others earlier (credited below).
    # n_b equal buckets ready at k·W / n_b over a window W, each S / n_b long, end the grad stream at
    # max_k(k·W / n_b + (n_b − k + 1)·S / n_b), W after the window's start + max(S / n_b, S − W·(1 − 1 / n_b)):
    # the last bucket is never hidden and the first bucket's fill is not window (one bucket: nothing hides).
    if tr.overlap_grad_reduce:
        bwd_own = bwd_mb if lazy is None else np.take(bwd_mb, lazy, axis=0)
        exposed_dp = exposed_sync_s(
            sched=sched, vp=vp, pp=pp, m=m, index=stages.index, exists=exists, first=first, last=last,
            bwd_own=bwd_own, bwd_comm=bwd_comm, hop=hop, dp_time=dp_time, last_bucket=last_bucket,
            most_buckets=most_buckets, prior=prior, head_time=head_time, head_bwd_comm=head_bwd_comm,
            logits_time=logits_time, embedding_bwd=embedding_bwd, of=of, chunks=chunks, first_chunk_s=first_chunk_s,
            later_chunk_s=later_chunk_s, tp_grad=tp_grad)
        if after_pipe is not None:  # a zero-bubble row's whole sync after its pipeline, as overlap off
            exposed_dp = np.where(after_pipe, dp_sync, exposed_dp)
    else:
        exposed_dp = dp_sync
    param_wait = param_gather  # the gathers the step waits for: whole after the optimizer step, or (param_gather.py)
    if tr.overlap_param_gather and gather_time is not None:  # in the forward; with_optimizer_step: after chunk 0's step
        param_wait = forward_gathers_s(tr, sched, param_gather, [z(g) for g in gather_time], pm, buckets_own,
                                       fwd if lazy is None else np.take(fwd, lazy, axis=0), stages.multiplicity,
                                       np.asarray(vp, float), (opt_time, dense_params.T[0], expert_params.T[0], cands))

    # Breakdown entries: per-mb collectives (ZeRO-3 gathers per step) on the slowest stage, the grad sync on its busiest
    dp_stage = np.argmax(np.where(exists, dp_time, -np.inf), axis=1)
    comms = comm_totals(ledger.entries, slow, dp_stage, m, pair_t, dual_t)

    seq_tokens = seq
    hw_flops = hw_model_mb * m * devices / pp
    compute_total = m * compute_1
    comm_total = m * comm_1 + dp_sync + embedding_sync + param_gather
    exposed_mb = (pipe - bubble) / m - compute_1  # the collectives' share of the slowest stage's time per mb
    step = pipe + exposed_dp + embedding_sync + opt_time + param_wait
    step_no = pipe + dp_sync + embedding_sync + opt_time + param_gather
    peak_total = devices * builder.peak
    return Evaluation(
        candidates=cands, step_time_s=step, step_time_no_overlap_s=step_no, compute_time_s=compute_total,
        communication_time_s=comm_total,
        exposed_communication_time_s=m * exposed_mb + exposed_dp + embedding_sync + param_wait,
        bubble_time_s=bubble, optimizer_time_s=opt_time, memory=memory, memory_total_bytes=total_mem,
        memory_capacity_bytes=capacity_bytes, fits=total_mem <= capacity_bytes,
        model_flops_per_step=model_flops, hardware_flops_per_step=hw_flops,
        mfu=model_flops / (step * peak_total), hfu=hw_flops / (step * peak_total),
        tokens_per_s=tr.global_batch_sequences * seq_tokens / step, comms=comms,
        slowest_stage=pick(stages.index), memory_stage=mem_index,
        expert_capacity=capacity, tokens_per_device=tokens_per_device, drop_fraction=drop_fraction, rows=rows,
        moe_by_stack=by_stack,
    )
