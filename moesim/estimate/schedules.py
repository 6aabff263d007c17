"""Pipeline schedules in the analytical model: step, bubble, activations in flight, p2p and parameters.

Notation (per device, per micro-batch, slowest stage): p = pp, m micro-batches, v = vp virtual
stages per device; t = F + B + W the stage's time per micro-batch (compute and its exposed
collectives), B the input-gradient backward, W the weight-gradient part (the GEMMs' second
backward product: one forward's time each), B_full = B + W.

  schedule     T_pipe                                   bubble / device            source
  1f1b, gpipe  Σ_s t_s + (m − 1)·t                      Σ_s t_s − t                Alpa (Zheng et al. OSDI'22) §5 Eq. 2
  interleaved  m·t + (p − 1)·t/v + 2(p·v − 1)·t_send     (p − 1)·t/v + sends        Narayanan §2.2.2, (p−1)/(v·m)
  zb-h1        m·t + (p − 1)·(F + B − W)                (p − 1)(t − 2W)            Qi et al. ICLR'24 Table 2
  zb-v         m·t + (p − 1)·max(F/2, F + B − 2W)       ZB-H2's, at ZB-H1 memory   Qi et al. Table 2, §6
  dualpipe     n·t_o + (m − n)·t + (p/2 − 1)·(F&B + B_full − 3W)                   DeepSeek-V3 Table 2
  interleaved with the EP A2A overlap: n·t_a + (m − n)·t in place of m·t, n = `interleaved_pairs`    Megatron-Core
  (1f1b at pp 1 with it likewise, n = m − 1: combined_1f1b_schedule_for_no_pipelining); at pp > 1 without a
  pipeline layout the estimate walks the slots of `interleaved_order` instead (a2a_order.slot_walk_s: each chunk's
  own time, each FB slot waiting on its two sends; session 23, slotwalk), the row its value at equal chunks, free sends
  interleaved, uneven chunks (a pipeline layout): the bubble from each virtual stage's own time, `layout_pipe_s`

1F1B, GPipe: t_s each stage's time per micro-batch, t = max_s t_s; at equal stages (m + p − 1)·t, Narayanan et
al. 2021 §2.2.1: the first micro-batch crosses every stage before the slowest one's m passes, and the last
one every stage after them (the other schedules' rows keep the slowest stage's t throughout).
DualPipe: n = min(m − 1.5p + 1, m − p − 1) micro-batches run in overlapped F&B pairs on the rank with
the fewest (the eight steps of `deepseek-ai/DualPipe`: 2(m/2 − p + h + 1) + (p/2 − h − 1) pairs on
rank h from the end, one fewer on the middle ranks), each taking t_o = max(compute, collectives): the
pair hides one chunk's collectives under the other's compute; the rest take t; F&B = t. The device
priced is the one with the largest n·t_o + (m − n)·t, each device's t the mean of its stages s and p − 1 − s.
Interleaved with Megatron-Core's EP A2A overlap: t_a = t less what Megatron's per-layer order hides when each of the
device's v forward chunks runs beside another micro-batch's backward chunk (moesim.estimate.a2a_order).
ZB-V: the paper's bubble is zero at F = B = W because it drops the synchronisation before the optimizer
step (post-validation); a synchronised step keeps the start-up skew of the V, (p − 1) half-stage forwards
before the last device starts (DERIVED; the simulator's order reaches exactly that at equal times). The skew
is each device's own, s half-stage forwards on device s, so the table's row is the last stage's: where a
heavier stage starts earlier (the first, holding the embedding and the head) T_pipe is the largest over the
stages of m·t_s + s·F_s/2 + (p − 1)·max(0, F_s + B_s − 2W_s − F_s/2) (`zbv_pipe_s`; session 20, zbvagree).
The table's row assumes the V full (m ≥ 2p or so); below that one micro-batch crossing the V forward and back
sets the step, p·(F + B) + W/2 at m = 1, and `zbv_pipe_s` takes the largest of the row and two such fill / drain
bounds (session 21, zbvfew; DERIVED from the order, and sail-sg's ZB-V scheduler, zerobubble/scheduler/zbv.py @
39f2c186, reaches them exactly at equal stages and m ≤ p). sail-sg refuses no micro-batch count for ZB-V
(megatron/core/zbpp_utils.py `validate_arguments` checks layers only), so neither does moesim.
ZB-H1 below p micro-batches: the row's (p − 1)(F + B − W) assumes the 1F1B steady state; one micro-batch down and
back, (m + p − 1)(F + B) + W, is larger there by (p − m)·W (`zbh1_chain_s`, Alpa's path with B the I only).
ZB-H1 on each stage's own times (`zbh1_pipe_s`, session 22 zbh1form; derived in session 22 zbvslot): the paper's
handcrafted ZB-H1 (Qi et al. ICLR'24 §2.1, Figure 3) is 1F1B with I in place of B and device d's last
m − (p − 1 − d) W's after its last I (moesim.des.orders._greedy_h1 runs exactly that), so T_pipe =
max_d [ΣF + Σ_{s ≥ d} I_s + (m − 1)·max_s (F_s + I_s) + max(1, m − (p − 1 − d))·W_d]: at equal stages the row (below p
micro-batches the chain), on uneven stages no longer the slowest stage's times charged to every stage. Session 23
(zbpipe): a device's last k − 1 pairs (k = min(m, p − d) warm-up forwards) run I W, not I F, so a middle station
over-counted; `zbh1_pipe_s` now takes the order's paths through a steady station b1 and a drain station b2 ≥ b1.
Interleaved: t leaves out the pipeline sends, which Megatron overlaps with compute (overlap_p2p_comm:
`--no-overlap-p2p-communication` is store_false, so on by default, and validate_args turns it off without
virtual stages; Megatron-LM megatron/training/arguments.py), but the first micro-batch's forward crosses
p·v − 1 chunk boundaries and the last one's backward as many (warm-up and flush sends are not overlapped:
--overlap-p2p-communication-warmup-flush defaults off), each one whole send t_send of the slowest stage on the
critical path (DERIVED; 1F1B has its 2(p − 1) sends inside (p − 1)·t).

Activations in flight on stage s, in micro-batches of the device's layers: 1f1b and zb-h1 min(m, p − s),
gpipe m, interleaved min(m·v, 2(p − s − 1) + (v − 1)·p + 1)/v (Megatron's warm-up plus one; stage 0:
p + (p − 1)/v, Korthikanti et al. 2022 §4.2.3), zb-v p, dualpipe min(m, p − s) on stage s, whose device
also holds stage p − 1 − s with s + 1: p + 1 per device (DeepSeek-V3 Table 2; DualPipe's steps 1-4 on
rank h < p/2 run p − h forwards of its first chunk and h + 1 of its second before the first backward).
Pipeline sends per micro-batch: v× for interleaved, 2× for zb-v (two chunks per device), 1× otherwise;
interleaved, the chunks wrap around the devices, so the first stage also sends v − 1 input gradients back
and the last v − 1 chunk outputs on (moesim.estimate.core; 2v − 1 sends each, 2v in between).
Parameters: 2× for dualpipe (two model copies; DeepSeek-V3 Table 2), 1× otherwise; in memory the device
of stage s holds stages s and p − 1 − s (`deepseek-ai/DualPipe:examples/example_dualpipe.py`, moesim.estimate.core).
"""

from __future__ import annotations

import numpy as np

from moesim.estimate.zbv_paths import _stage_sum_s, _zbv_paths_s, _zbv_queue_s, _zbv_return_s, _zbv_turn_s  # noqa: F401
from moesim.specs.training import PIPELINE_SCHEDULES


def is_schedule(schedule, name: str) -> np.ndarray:
    """schedule == name, for names or codes (indices into PIPELINE_SCHEDULES; the search passes codes)."""
    schedule = np.asarray(schedule)
    code = PIPELINE_SCHEDULES.index(name) if schedule.dtype.kind in "iu" else name
    if schedule.ndim == 1 and schedule.strides == (0,) and len(schedule):  # one schedule, a stride-0 view: one test
        return np.broadcast_to(schedule[:1] == code, schedule.shape)
    return schedule == code


def pipeline_time_s(schedule: np.ndarray, m, pp, vp, t_mb, fwd_s, bwd_full_s, weight_s, send_s=0.0,
                    overlapped_s=None, below_slowest_s=0.0, zbv_pipe=None,
                    *, zbh1_chain=None, zbh1_pipe=None, a2a_pair_s=None,
                    layout_bubble_s=None) -> tuple[np.ndarray, np.ndarray]:
    """(T_pipe, bubble) per candidate (module table); arrays over candidates, `schedule` holds names.
    `a2a_pair_s`: interleaved runs Megatron-Core's EP A2A overlap (training.moe_a2a_overlap), `interleaved_pairs`
    micro-batches at this time each (moesim.estimate.a2a_order: Megatron's per-layer order); None: not run.
    `below_slowest_s`: Σ_s (t_s − t) over every stage (≤ 0; 0 at equal stages), 1F1B's and GPipe's only.
    `zbv_pipe`: ZB-V's T_pipe over every stage (`zbv_pipe_s`); without it the slowest stage's closed form.
    `zbh1_chain`: ZB-H1's critical path over every stage (`zbh1_chain_s`), a floor under its row; none without it.
    `zbh1_pipe`: ZB-H1's T_pipe over every stage (`zbh1_pipe_s`), in place of the row and the chain.
    `layout_bubble_s`: interleaved candidates with uneven chunks (a pipeline layout), `layout_pipe_s` − m·t in
    place of (p − 1)·t/v (NaN: the table's row); None: no candidate has one."""
    m, p, v = (np.asarray(a, dtype=float) for a in (m, pp, vp))
    t, w, bf = np.asarray(t_mb, dtype=float), np.asarray(weight_s, dtype=float), np.asarray(bwd_full_s, dtype=float)
    # Alpa (Zheng et al., OSDI 2022) §5 Eq. 2: T = Σ_s t_s + (m − 1)·max_s t_s, i.e. bubble Σ_s t_s − t.
    bubble = (p - 1) * t + np.asarray(below_slowest_s, dtype=float)
    fill_sends = 2 * (p * v - 1) * np.asarray(send_s)
    bubble = np.where(is_schedule(schedule, "interleaved"), (p - 1) * t / v + fill_sends, bubble)
    if layout_bubble_s is not None:  # uneven virtual stages: each chunk's own time (layout_pipe_s)
        chunks = np.asarray(layout_bubble_s, dtype=float)
        bubble = np.where(is_schedule(schedule, "interleaved") & np.isfinite(chunks), chunks + fill_sends, bubble)
    zbh1 = (p - 1) * np.maximum(0.0, t - 2 * w)
    # ZB-H1 below p micro-batches: never less than one micro-batch's F and I through every stage (zbh1_chain_s).
    zbh1 = zbh1 if zbh1_chain is None else np.maximum(zbh1, np.asarray(zbh1_chain) - m * t)
    # ZB-H1 on every stage's own times (zbh1_pipe_s: the order's stations, Qi et al. ICLR'24 §2.1, Figure 3).
    zbh1 = zbh1 if zbh1_pipe is None else np.asarray(zbh1_pipe) - m * t
    bubble = np.where(is_schedule(schedule, "zb-h1"), zbh1, bubble)
    # ZB-V: ZB-H2's (p − 1)(F + B − 2W), but a synchronised step never less than the V's start-up skew
    # (p − 1)·F/2 (orders.py: the paper's zero needs optimizer post-validation).
    f = np.asarray(fwd_s, dtype=float)
    zbv_bubble = (p - 1) * np.maximum(f / 2, t - 3 * w) if zbv_pipe is None else np.asarray(zbv_pipe) - m * t
    bubble = np.where(is_schedule(schedule, "zb-v"), zbv_bubble, bubble)
    dual = np.maximum(0.0, p / 2 - 1) * np.maximum(0.0, t + bf - 3 * w)
    bubble = np.where(is_schedule(schedule, "dualpipe"), dual, bubble)
    work = m * t
    if overlapped_s is not None:
        pairs = dualpipe_pairs(m, p)
        work = np.where(is_schedule(schedule, "dualpipe"), pairs * np.asarray(overlapped_s) + (m - pairs) * t, work)
    if a2a_pair_s is not None:  # Megatron's combined 1F1B: its pairs in Megatron's per-layer order (a2a_order)
        pairs = interleaved_pairs(m, p, v)
        # 1f1b at pp 1: combined_1f1b_schedule_for_no_pipelining, the interleaved count at p = v = 1 (m − 1 pairs)
        combined = is_schedule(schedule, "interleaved") | (is_schedule(schedule, "1f1b") & (p == 1))
        work = np.where(combined, pairs * np.asarray(a2a_pair_s) + (m - pairs) * t, work)
    return work + bubble, bubble


def interleaved_warmup(pp, vp, stage):
    """Megatron's interleaved warm-up forwards on device `stage` before its first backward, 2(p − s − 1) + (v − 1)·p
    (Megatron-LM schedules.py forward_backward_pipelining_with_interleaving, num_warmup_microbatches; uncapped: the
    callers cap it by the m·v chunk passes). Scalars or arrays."""
    return 2 * (pp - stage - 1) + (vp - 1) * pp


def interleaved_pairs(m, pp, vp) -> np.ndarray:
    """Micro-batches' worth of forward-backward pairs on the step's longest path under Megatron-Core's EP A2A
    overlap: the last device's m·v chunk passes less its (v − 1)·p + 1 warm-up forwards (Megatron-LM d98e8a64
    schedules.py get_pp_rank_microbatches l.966-970, one more than without the overlap), over v
    (moesim.des.orders._interleaved). DERIVED (session 22, spoverlap): micro-batch 0's forward through devices
    0 … p − 2, then every slot of device p − 1, then the last micro-batch's chunk-0 backward through devices p − 2 … 0
    is a path of (p − 1)(f + b) + W(f + b) + (m·v − W)·x chunk times (W that device's warm-up, x a pair, f + b
    unpaired); a device d < p − 1 runs 2(p − 1 − d) more warm-up forwards and as many fewer pairs, so the same path
    through it (d chunks of fill and of drain) is shorter by (p − 1 − d)(2x − f − b) > 0 (a pair takes more than half
    its two chunks): the last device's count bounds the step. Session 21 counted the first device's pairs, 2(p − 1)/v
    fewer."""
    m, p, v = (np.asarray(a, dtype=float) for a in (m, pp, vp))
    total = m * v
    return (total - np.minimum(total, interleaved_warmup(p, v, p - 1) + 1)) / v


def zbv_pipe_s(m, pp, stage_mb, fwd_s, weight_s, position, multiplicity, send_s=0.0, first_leg_s=None,
               earliest=None, first_leg_i_s=None, first_leg_w_s=None, leg_send_s=None, runs=None) -> np.ndarray:
    """ZB-V's T_pipe: the largest over the stages s of lower bounds on device s's end (DERIVED, module docstring),
    B_s = t_s − F_s − W_s, ΣF and ΣB over the pipeline's stages, h one pipeline send:
      skew    m·t_s + s·F_s/2 + (p − 1)·max(0, t_s − 3W_s − F_s/2): device s starts after s half-stage forwards
              and, where F/2 ≥ F + B − 2W, runs gap-free to its last W (the paper's parallelogram, Qi et al. ICLR'24
              §6; moesim.des.orders reaches it at equal times); beyond that the excess of ZB-H2's (p − 1)(F + B − 2W);
      fill    R + β_s/2 + m·(B_s + W_s): no I runs before micro-batch 0 has crossed all 2p chunks (at R), the
              first reaches device s after the second-leg chunks before it (β_s/2), then all m of its I and W;
              on device 0 also R − F²_0 + m·(F²_0 + B_0 + W_0): its V-end chunk's forwards wait for micro-batch
              0's return as well. R = max_d Σ_{s<d} F_s + 2d·h + k_d·F¹_d + F²_d, k_d = min(m, 2(p − 1 − d) + 1):
              device d runs k_d first-leg forwards before micro-batch 0's second-leg one (the paper's V warm-up, Qi et
              al. ICLR'24 §6, which sail-sg's walk, des.zbv_order, builds too), then micro-batch 0 runs back up d
              second-leg pieces; d = p − 1 is ΣF + 2(p − 1)·h (session 23, zbvworse); on device 0 also
              R + ΣB − I¹_0 + 2(p − 1)·h + m·(I¹_0 + W¹_0): micro-batch 0's I crosses every piece from the V's end
              back to device 0's first-leg piece (2p − 2 device boundaries), whose m I's and W's then run (each
              piece's I's in micro-batch order, each W after its I: sail-sg's walk, des.zbv_order); at m = 1 and
              even pieces the m = 1 path below (session 24, zbvpieces: pieces unlike, e.g. an encoder-decoder's);
              or with micro-batch 0's I held on a device d behind its min(m, d + 1) second-leg forwards
              (`_zbv_turn_s`; session 24, zbfollow);
      drain   ΣF + ΣB + 4(p − 1)·h + (m − 1)·q_s + W_0/2: the last micro-batch crosses the V forward and back
              (2p − 2 device boundaries each way) and its W on device 0 (chunk 0's half) ends the step; at one
              station it waits for the m − 1 before it: the last device's I pair (q = B_s, its two chunks back to
              back), device 0's V-end chunk, which runs each micro-batch's F and then its I ((F_0 + B_0)/2).
    β_s = Σ_{s' < s} B_s' on the last device (every other stage lies before it), 0 elsewhere (still a lower bound).
    fill and drain bind where m < 2p or so (m = 1: p·(F + B) + W/2, one micro-batch down the V and back, which
    sail-sg's scheduler, megatron/core/pipeline_parallel/zerobubble/scheduler/zbv.py @ 39f2c186, reaches too); the
    skew at larger m. (N, S) arrays over the representative stages (`stage_mb` −inf where none), `position` each
    kind's last stage, `multiplicity` its number of stages (0 pads); `send_s` (N,) or scalar; `first_leg_s` F¹, each
    stage's first-leg piece's forward (N, S; None: F/2), F² = F − F¹; `earliest` each kind's first stage (None: its
    stages a run ending at `position`); `first_leg_i_s`, `first_leg_w_s` I¹ and W¹, the first-leg piece's I and W
    (N, S, read on device 0; None: B/2, W/2); `leg_send_s` (h¹, h²), each stage's first-leg piece's send to the
    next device and its second-leg piece's to the previous one (N, S each; 0 where none; None: every hop h): each
    hop of the paths above at its own boundary's size, as des.zbv_order sends each piece's output (Qi et al.
    ICLR'24 §6: a V of 2p pieces), written n·h − Σ (h − h_k) over the n hops (exactly n·h where all are h); `runs`
    stages.v_runs (None: each kind one run), the return and turn paths run by run where kinds interleave."""
    m, p = (np.asarray(a, dtype=float)[:, None] for a in (m, pp))
    t, f, w = (np.asarray(a, dtype=float) for a in (stage_mb, fwd_s, weight_s))
    position, count = np.asarray(position, dtype=float), np.asarray(multiplicity, dtype=float)
    h = np.broadcast_to(np.asarray(send_s, dtype=float), m.shape[:1])[:, None]
    exists = np.isfinite(t) & (count > 0)
    b = np.where(exists, t - f - w, 0.0)
    skew = position * f / 2
    base = np.max(m * t + skew + (p - 1) * np.maximum(0.0, t - 3 * w - f / 2), axis=1)
    # Micro-batch 0's forward down the whole V, and every stage's B, each stage counted once per stage of its kind.
    forward_all = np.sum(np.where(exists, count * f, 0.0), axis=1, keepdims=True)
    backward_all = np.sum(count * b, axis=1, keepdims=True)
    last, first = exists & (position == p - 1), exists & (position == 0)
    before = np.where(last, backward_all - b, 0.0)
    first_w = np.sum(np.where(first, w, 0.0), axis=1, keepdims=True) / 2
    f1 = f / 2 if first_leg_s is None else np.asarray(first_leg_s, dtype=float)
    start = position - count + 1 if earliest is None else np.asarray(earliest, dtype=float)
    # Each hop's shortfall from h (leg_send_s): the first-leg sends (all stages but the last) and the second-leg ones
    # (all but the first); Σ over the pipeline's stages of each, each stage counted once per stage of its kind.
    short1, short2 = (np.zeros(f.shape),) * 2 if leg_send_s is None else (
        np.where(exists & keep, h - np.asarray(a, dtype=float), 0.0)
        for a, keep in zip(leg_send_s, (position != p - 1, start > 0)))
    shorts = np.concatenate([short1, short2], axis=1)
    all12 = _stage_sum_s(shorts, np.concatenate([count, count], axis=1))[:, None]  # every device boundary's
    if runs is not None:  # each run's column one-hot, and the stages at or past each position, shared by the paths
        runs = (*runs[:4], (runs[2][:, :, None] == np.arange(f.shape[1])).astype(float), {})
    i1 = b / 2 if first_leg_i_s is None else np.asarray(first_leg_i_s, dtype=float)
    w1 = w / 2 if first_leg_w_s is None else np.asarray(first_leg_w_s, dtype=float)
    # R (micro-batch 0 down the V), the turn and queue paths (zbv_paths): run by run only on rows that interleave
    back, turn, queue = _zbv_paths_s(m, p, f, f1, b, i1, w1, start, position, count, exists, h, shorts, runs,
                                     (_zbv_return_s, _zbv_turn_s, _zbv_queue_s))
    fill = back + before / 2 + m * (b + w)
    # Device 0 runs its V-end chunk's forwards after micro-batch 0 reaches it too: all but its first-leg forwards.
    f2 = f - f1
    fill = np.where(first, np.maximum(fill, back - f2 + m * (f2 + b + w)), fill)
    # ... and its first-leg piece's m I's and W's after micro-batch 0's I has come back down the whole V.
    fill = np.where(first, np.maximum(fill, back + backward_all - i1 + (2 * (p - 1) * h - all12)
                                      + m * (i1 + w1)), fill)
    # ... or after micro-batch 0's I waited on a device d for its later micro-batches' second-leg forwards
    fill = np.where(first, np.maximum(fill, turn), fill)
    # ... or after micro-batch 0's first-leg I queued on a device d behind min(m, p − d) second-leg I's (_zbv_queue_s)
    fill = np.where(first, np.maximum(fill, queue), fill)
    station = np.where(last, b, np.where(first, (f + b) / 2, 0.0))
    drain = forward_all + backward_all + (4 * (p - 1) * h - 2 * all12) + (m - 1) * station + first_w
    return np.maximum(base, np.max(np.where(exists, np.maximum(fill, drain), -np.inf), axis=1))


def zbh1_chain_s(m, stage_mb, weight_s, position, multiplicity) -> np.ndarray:
    """ZB-H1's floor Σ_s (F_s + B_s) + (m − 1)·max_s (F_s + B_s) + W_0 (DERIVED, module docstring): the last
    micro-batch enters stage 0 after m − 1 others, crosses every stage forward and back (its I on each, its W
    deferred), then stage 0 runs its W; Alpa's 1F1B path (Zheng et al. OSDI'22 §5 Eq. 2) with B full replaced by
    the input-gradient I. It binds only below p micro-batches at equal stages ((m + p − 1)(F + B) + W against the
    row's m·t + (p − 1)(F + B − W): (p − m)·W more). (N, S) arrays as `zbv_pipe_s`; F_s + B_s = t_s − W_s."""
    t, w = np.asarray(stage_mb, dtype=float), np.asarray(weight_s, dtype=float)
    position, count = np.asarray(position, dtype=float), np.asarray(multiplicity, dtype=float)
    exists = np.isfinite(t) & (count > 0)
    through = np.where(exists, t - w, 0.0)  # F_s + B_s
    first_w = np.sum(np.where(exists & (position == 0), w, 0.0), axis=1)
    m = np.asarray(m, dtype=float)
    return np.sum(count * through, axis=1) + (m - 1) * np.max(through, axis=1) + first_w


def zbh1_pipe_s(m, pp, stage_mb, fwd_s, weight_s, multiplicity, end_position, end_column, after) -> np.ndarray:
    """ZB-H1's T_pipe on each stage's own times: the longest path of the order moesim.des.orders._greedy_h1 builds
    (Qi et al. ICLR'24 §2.1, Figure 3's ZB-H1), among the paths that enter a station b1 with micro-batch 0's I,
    run its steady F I pairs, carry micro-batch m − 1's forward down to a station b2 ≥ b1, run b2's drain
    (I W ... I) and carry the last I up to device d ≤ b2, which runs its tail W's (DERIVED, session 23 zbpipe):
      ΣF + Σ_{s>b1} I_s + s_b1·(F + I)_b1 + Σ_{b1<s≤b2} F_s + k_b2·I_b2 + (k_b2 − 1)·W_b2 + Σ_{d≤s<b2} I_s
      + max(1, m − (p − 1 − d))·W_d,
    k_b = min(m, p − b) device b's warm-up forwards, s_b = m − k_b its steady pairs (b1 < b2 needs s_b1 ≥ 1).
    It is ΣF + A(b1) + B(b2) + C(d): at each b2 the largest A and C at or before it (prefix maxima). I_s = t_s − F_s −
    W_s. Along a run of like stages, left of x0 = p − m (where k, s and the tail bend) A + B is level and C falls, and
    right of it A is level and B, C are linear, so the largest lies at a run's ends: `end_position`, `end_column`
    (N, E) and `after` (N, E, S), stages.run_ends (position −1 pads, ascending). Stage arrays (N, S) as `zbv_pipe_s`
    (`stage_mb` −inf where none, `multiplicity` 0 pads). Equal to the order where one stage is heavier than the others
    (tests/des/test_zbh1_uneven_stages.py), never above it; session 22's form, one station at max_s (F_s + I_s) for
    all m − 1 pairs, counted F where its last k − 1 run W."""
    m, p = (np.asarray(a, dtype=float)[:, None] for a in (m, pp))
    t, f, w = (np.asarray(a, dtype=float) for a in (stage_mb, fwd_s, weight_s))
    count = np.asarray(multiplicity, dtype=float)
    exists = np.isfinite(t) & (count > 0)
    f, w = np.where(exists, f, 0.0), np.where(exists, w, 0.0)
    i = np.where(exists, t - f - w, 0.0)
    position, column = np.asarray(end_position, dtype=float), np.asarray(end_column)
    after = np.asarray(after, dtype=float)
    suffix = np.matmul(after, np.stack([i, f + i], axis=2))  # Σ_{s ≥ x} I_s and (F_s + I_s) at each run end x
    suffix_i, suffix_fi = suffix[:, :, 0], suffix[:, :, 1]
    f_x, i_x, w_x = (np.take_along_axis(a, column, axis=1) for a in (f, i, w))
    warm = np.minimum(m, p - position)  # k_x
    real = position >= 0
    a = suffix_fi + (m - warm - 1) * (f_x + i_x)
    b = np.where(real, warm * i_x + (warm - 1) * w_x - suffix_fi + f_x, -np.inf)
    c = np.where(real, suffix_i + np.maximum(1.0, m - (p - 1 - position)) * w_x, -np.inf)
    prefix_c = np.maximum.accumulate(c, axis=1)
    # b1 < b2 only from a station with a steady pair (s_b1 ≥ 1, b1 ≥ p − m + 1); b1 = b2 always.
    steady_a = np.maximum.accumulate(np.where(real & (position >= p - m + 1), a, -np.inf), axis=1)
    best = np.max(b + np.maximum(a, steady_a) + prefix_c, axis=1)
    return np.sum(count * f, axis=1) + best


def dualpipe_pairs(m, pp) -> np.ndarray:
    """n = min(m − 1.5p + 1, m − p − 1) in [0, m]: micro-batches a DualPipe rank runs in overlapped F&B pairs
    (module docstring)."""
    m, p = np.asarray(m, dtype=float), np.asarray(pp, dtype=float)
    return np.clip(np.minimum(m - 1.5 * p + 1, m - p - 1), 0, m)


def in_flight(schedule: np.ndarray, m, pp, vp, stage) -> np.ndarray:
    """Micro-batches of activations stage `stage` holds at peak (module docstring); broadcasts (N, S)."""
    m, p, v, s = (np.asarray(a, dtype=float) for a in (m, pp, vp, stage))
    sched = np.asarray(schedule)[..., None] if np.ndim(s) == 2 and np.ndim(schedule) == 1 else schedule
    out = np.minimum(m, p - s)  # 1F1B; dualpipe: 1F1B's per stage, two stages per device (module docstring)
    shape = np.broadcast_shapes(np.shape(sched), out.shape, v.shape)
    for name, held in (("gpipe", lambda: m),
                       ("interleaved", lambda: np.minimum(m * v, interleaved_warmup(p, v, s) + 1) / v),
                       ("zb-v", lambda: np.minimum(m, p))):
        at = is_schedule(sched, name)
        if at.any() or out.shape != shape:  # a schedule no row has changes nothing (once `out` has the full shape)
            out = np.where(at, held(), out)
    return out


def interleaved_order(m: int, pp: int, vp: int, device: int, a2a_overlap: bool = False
                      ) -> list[tuple[tuple[int, int] | None, tuple[int, int] | None]]:
    """Device `device`'s slots in Megatron's interleaved order, each (forward, backward), either (micro-batch,
    virtual stage) or None: warm-up 2(p − d − 1) + (v − 1)·p forwards (one more with the EP A2A overlap:
    get_pp_rank_microbatches l.966-970), then one forward and one backward a step, each a slot of its own or, with
    the overlap, one FB slot (combined 1F1B), then the cool-down backwards. Forward k runs chunk ⌊k/p⌋ mod v of
    micro-batch ⌊k/(p·v)⌋·p + k mod p, backward k chunk v − 1 − ⌊k/p⌋ mod v (Megatron-LM d98e8a64 schedules.py
    forward_backward_pipelining_with_interleaving, get_model_chunk_id; virtual stage c·p + d is device d's chunk c).
    The one order both engines run (moesim.des.orders builds its slots from it)."""
    m, p, v, d = int(m), int(pp), int(vp), int(device)
    total = m * v
    warm = min(interleaved_warmup(p, v, d) + int(a2a_overlap), total)

    def item(k: int, backward: bool) -> tuple[int, int]:
        chunk = (k // p) % v
        return (k // (p * v)) * p + k % p, ((v - 1 - chunk) if backward else chunk) * p + d

    order: list[tuple[tuple[int, int] | None, tuple[int, int] | None]] = [(item(k, False), None) for k in range(warm)]
    for i in range(total - warm):
        if a2a_overlap:
            order.append((item(warm + i, False), item(i, True)))
        else:
            order += [(item(warm + i, False), None), (None, item(i, True))]
    return order + [(None, item(k, True)) for k in range(total - warm, total)]


def layout_in_flight(chunk_layers, pp: int, vp: int, m: int, stage: int) -> float:
    """Interleaved in-flight micro-batches of device `stage` in units of its layers when its chunks are uneven (a
    pipeline layout; chunk_layers: decoder layers of each of the pp·vp virtual stages in layer order, virtual stage
    c·pp + stage being the device's chunk c): the W = min(m·v, 2(p − s − 1) + (v − 1)·p + 1) forwards held at peak
    (the table's count, Megatron-LM schedules.py num_warmup_microbatches plus one) run chunk (k mod p·v) // p for
    the k-th (Megatron-LM schedules.py get_model_chunk_id), so the device holds Σ_k layers(chunk of k) layer-micro-
    batches; over its layers that is the figure `in_flight` gives at equal chunks (W / v). Layers weigh alike
    (DERIVED: a layer class's activations differ, e.g. DeepSeek-V3's dense layers in chunk 0)."""
    p, v = int(pp), int(vp)
    own = [chunk_layers[c * p + stage] for c in range(v)]
    held = min(m * v, interleaved_warmup(p, v, stage) + 1)
    return sum(own[(k % (p * v)) // p] for k in range(held)) / sum(own)


def layout_pipe_s(chunk_s, chunk_fwd_s, m: int, pp: int, vp: int) -> float:
    """Interleaved 1F1B's T_pipe (sends aside) when the pp·vp virtual stages take their own times: the largest over
    the devices d of two lower bounds on device d's end (DERIVED from Megatron's schedule order, NVIDIA/Megatron-LM
    @ d98e8a64 schedules.py forward_backward_pipelining_with_interleaving; chunk_s[i] = F_i + B_i of virtual stage i
    per micro-batch, virtual stage c·p + d being device d's chunk c, chunk_fwd_s[i] = F_i, T_d = Σ_c chunk_s[c·p + d]):
      fill    Σ_{j<d} (F_j + B_j) + m·T_d: device d's first pass (micro-batch 0's chunk 0) waits for virtual stages
              0 … d − 1 and its last (the last micro-batch's chunk 0 backward, cooldown order v − 1 … 0) is followed
              by their backward; at equal chunks the last device gives Narayanan et al. SC'21 §2.2.2's
              m·t + (p − 1)·t/v exactly;
      steady  Σ_i F_i + Σ_{(v−1)p+d < i} B_i + m·T_d − Σ_{k ≤ w_d} F_chunk(k) + Σ_{j<d} B_j: device d's first
              backward (chunk v − 1 of micro-batch 0) waits for micro-batch 0's forward through every virtual stage
              and its backward down to its own, after w_d + 1 = min(m·v, 2(p − d − 1) + (v − 1)·p + 1) forwards
              (num_warmup_microbatches plus the steady state's first), the k-th in chunk (k mod p·v) // p
              (get_model_chunk_id); the rest of its work follows it. Equal chunks: (p − 1)(F + B)/v on the last
              device, the fill bound's; it binds where a heavy first device (embedding, dense layers) waits in its
              warm-up for a lighter pipeline.
    Both are bounds from below (the simulator's order may wait more); the estimate takes their maximum."""
    p, v = int(pp), int(vp)
    tau, f = np.asarray(chunk_s, dtype=float), np.asarray(chunk_fwd_s, dtype=float)
    b = tau - f
    device = tau.reshape(v, p).sum(axis=0)  # T_d: virtual stage c·p + d is device d's chunk c
    best = 0.0
    for d in range(p):
        fill = tau[:d].sum() + m * device[d]
        warm = min(m * v, interleaved_warmup(p, v, d) + 1)
        warm_f = sum(f[((k % (p * v)) // p) * p + d] for k in range(warm))
        steady = f.sum() + b[(v - 1) * p + d + 1:].sum() + m * device[d] - warm_f + b[:d].sum()
        best = max(best, fill, steady)
    return float(best)


def p2p_multiple(schedule: np.ndarray, vp) -> np.ndarray:
    """Pipeline sends per micro-batch relative to 1F1B: v (interleaved), 2 (zb-v), 1 otherwise."""
    v = np.asarray(vp, dtype=float)
    return np.where(is_schedule(schedule, "interleaved"), v, np.where(is_schedule(schedule, "zb-v"), 2.0, 1.0))


def parameter_multiple(schedule: np.ndarray) -> np.ndarray:
    """Parameter copies per device: 2 for dualpipe (DeepSeek-V3 Table 2), else 1."""
    return np.where(is_schedule(schedule, "dualpipe"), 2.0, 1.0)


WEIGHT_PARTS = ("dense_ffn", "router", "expert_ffn", "shared_experts")


def weight_grad_time_s(terms) -> np.ndarray:
    """W of one layer (ZB splits off dW as W, Qi et al. §2): the priced weight-gradient operators of its
    backward (ClassTerms.weight_grad_s, moesim/ops: every GEMM's wgrad pass). Without them, one forward time
    of every weight GEMM (attention projections, FFNs, router): a GEMM's backward is two products of its
    forward's size, dX and dW (Kaplan et al. 2020 §2.1); the attention core has no weights."""
    if getattr(terms, "weight_grad_s", None) is not None:
        return np.asarray(terms.weight_grad_s)
    fwd_parts_s, attention_core_time_s = terms.fwd_parts_s, terms.attention_core_time_s
    w = np.asarray(fwd_parts_s.get("attention", 0.0)) - np.asarray(attention_core_time_s)
    for name in WEIGHT_PARTS:
        w = w + np.asarray(fwd_parts_s.get(name, 0.0))
    return w
