"""With uniform expected routing, no stragglers, no noise and no contention the simulator adds
nothing the analytical model leaves out, so the two agree (within 2 %) over scenarios and layouts.

Where they still differ, the simulator's schedule is the finer one: a real 1F1B/GPipe pipeline
instead of Σ_s t_s + (m − 1)·max_s t_s (Alpa, Zheng et al. OSDI 2022, §5 Eq. 2; (m + pp − 1)·max-stage
before session 18's pipebound), gradient buckets that overlap backward collectives too, and a last
bucket that nothing can hide (see benchmarks/RESULTS.md, Simulator)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from moesim.des import SimOptions, simulate
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

TOLERANCE = 0.02
GLAM_1024 = str(Path(__file__).parent / "data" / "glam-64e-1024-h100.toml")
GPT_OSS_L6 = str(Path(__file__).parent / "data" / "gpt-oss-l6-h100.toml")

CASES = [
    # (id, scenario, training changes, layout or None for the scenario's)
    ("switch-base-128", "switch-base-128-tpu-v3", {}, None),
    ("switch-base-128 dp32 ep16", "switch-base-128-tpu-v3", {}, Layout(dp=32, ep=16)),
    ("switch-base-128 tp2 dp16 ep16", "switch-base-128-tpu-v3", {}, Layout(dp=16, tp=2, ep=16)),
    ("switch-base-128 zero1 index", "switch-base-128-tpu-v3", {"zero_stage": 1, "dispatch_impl": "index"}, None),
    ("switch-c-2048", "switch-c-2048-tpu-v3", {}, None),
    ("mixtral-8x7b pp4 m16 1f1b", "mixtral-8x7b-h100", {}, None),
    ("mixtral-8x7b pp4 m16 gpipe", "mixtral-8x7b-h100", {"pipeline_schedule": "gpipe"}, None),
    ("mixtral-8x7b full recompute", "mixtral-8x7b-h100", {"recompute": "full"}, None),
    ("mixtral-8x7b tp2 ep4 pp4", "mixtral-8x7b-h100", {"global_batch_sequences": 128}, Layout(dp=8, tp=2, ep=4, pp=4)),
    ("mixtral-8x7b etp2 pp4", "mixtral-8x7b-h100", {"global_batch_sequences": 128},
     Layout(dp=8, tp=2, ep=4, etp=2, pp=4)),
    ("st-moe-32b", "st-moe-32b-tpu-v3", {}, None),
    ("glam tpu-v4 zero3 recompute", "glam-64b-64e-tpu-v4", {}, None),
    ("gshard-600b", "gshard-600b-tpu-v3", {}, None),
    ("glam 1024 h100 pp4 m8", GLAM_1024, {}, None),  # +0.01 % (+2.95 % before gradsync): GRAD_SYNC_CASES
    # The model's ends (moesim.ops.vocab): the embedding's and the head's tp collectives, with and without SP.
    ("llama3-70b b200 tp8 sp", "llama3-70b-l12-b200-tp8", {}, None),
    ("llama3-70b b200 tp8 no sp, fused ce", "llama3-70b-l12-b200-tp8",
     {"sequence_parallel": False, "fused_cross_entropy": True}, None),
    ("llama3-70b b200 tp4 pp2 interleaved", "llama3-70b-l12-b200-tp8", {"pipeline_schedule": "interleaved"},
     Layout(dp=1, tp=4, pp=2, vp=2)),
    # Uneven ends (session 18, pipebound): the embedding on the first stage, the head and cross-entropy on the last,
    # 3 layers each at pp 4, (1, 1, 1, 2, 2, 2, 2, 1) at pp 8; dp = 1, so nothing but the pipeline differs. The
    # estimate's (m + pp − 1)·max-stage put the simulator 8.99 % (pp 4) and 12.23 % (pp 8) under it; Alpa's Eq. 2:
    # -0.24 % and -0.89 %. Mixtral pp 8 (4 layers each, dp 8): -3.18 -> -0.56 %.
    ("llama3-70b b200 tp2 pp4 m8 1f1b", "llama3-70b-l12-b200-tp8",
     {"global_batch_sequences": 8, "micro_batches": 8, "pipeline_schedule": "1f1b"}, Layout(dp=1, tp=2, pp=4)),
    ("llama3-70b b200 tp2 pp4 m8 gpipe", "llama3-70b-l12-b200-tp8",
     {"global_batch_sequences": 8, "micro_batches": 8, "pipeline_schedule": "gpipe"}, Layout(dp=1, tp=2, pp=4)),
    # ZB-V runs the head on device 0 beside the embedding (session 19, leftovers19: so does the estimate now; it was
    # +0.86 % with the head charged to the last stage, -1.66 % with it on the first, where the ZB-V bubble's
    # slowest-stage t charges every stage the first one's heavier time).
    ("llama3-70b b200 tp2 pp4 m8 zb-v", "llama3-70b-l12-b200-tp8",
     {"global_batch_sequences": 8, "micro_batches": 8, "pipeline_schedule": "zb-v"}, Layout(dp=1, tp=2, pp=4)),
    ("llama3-70b b200 tp1 pp8 m16 1f1b", "llama3-70b-l12-b200-tp8",
     {"global_batch_sequences": 16, "micro_batches": 16, "pipeline_schedule": "1f1b"}, Layout(dp=1, tp=1, pp=8)),
    ("mixtral-8x7b pp8 1f1b", "mixtral-8x7b-h100", {"global_batch_sequences": 128}, Layout(dp=8, ep=8, pp=8)),
    # Megatron-Core's EP A2A overlap (session 21, a2aoverlap): interleaved steady-state forward-backward pairs, priced
    # in Megatron's per-layer order (session 21, a2aorder: estimate.a2a_order against the simulator's FB slots keyed in
    # Megatron's issue order with delay_wgrad_compute's W off the chain; before it, DualPipe's max per pair and list
    # schedule: -1.30 / +1.25 %, after -1.63 / +0.63 %); NCCL and DeepEP (SM share); and the EP group across two nodes
    # (tp 2), whose all-to-all the order cannot all hide: -2.99 % (its plain interleaved twin -2.80 %: SCHEDULE_CASES).
    # Session 22 (spoverlap): the estimate counts the last device's pairs (schedules.interleaved_pairs) and syncs an
    # interleaved stage's gradients chunk by chunk (grad_buckets.interleaved_chunks_exposed_s): the two tp 1 cases
    # -1.62 -> -0.82 -> -0.17 % (NCCL) and +0.63 -> -0.75 -> -0.15 % (DeepEP), their plain twin -1.03 -> -0.40 %.
    ("mixtral-8x7b pp4 vp2 a2a overlap", "mixtral-8x7b-h100",
     {"pipeline_schedule": "interleaved", "moe_a2a_overlap": True}, Layout(dp=16, ep=8, pp=4, vp=2)),
    # At pp 1 (session 21, overlapep1): Megatron-Core's combined_1f1b_schedule_for_no_pipelining, F0 alone, forward i
    # beside backward i − 1, the last backward alone (moesim.des.orders): -0.09 % and -0.13 % (plain twin -0.08 %).
    ("mixtral-8x7b pp1 a2a overlap", "mixtral-8x7b-h100", {"moe_a2a_overlap": True, "micro_batches": 4},
     Layout(dp=64, ep=8)),
    ("mixtral-8x7b tp2 pp1 a2a overlap", "mixtral-8x7b-h100",
     {"moe_a2a_overlap": True, "micro_batches": 4, "global_batch_sequences": 128}, Layout(dp=32, tp=2, ep=8)),
    ("mixtral-8x7b pp4 vp2 a2a overlap deepep", "mixtral-8x7b-h100",
     {"pipeline_schedule": "interleaved", "moe_a2a_overlap": True, "dispatch_backend": "deepep"},
     Layout(dp=16, ep=8, pp=4, vp=2)),
    # Session 21's other keys (review21), each read by both engines: HybridEP's published B200 rate on DeepEP's path
    # (+0.00 %; the deepep backend on the same slice prices 0.529 s, HybridEP 0.534 s), per-layer CUDA graphs (one
    # launch a captured part and pass: DeepSeek-V3 slice +0.00 %, Mixtral −0.52 %), and a pipeline layout of uneven
    # chunks (3, 4, 4, 4, 5, 4, 4, 4): −1.18 %, the estimate pricing the devices' sums (equal here: 2.3408 s, as the
    # even layout's, against which the simulator is −1.04 %; bridgekeys' Left: the chunk split is not in its bubble).
    # Session 21 (unevenbubble): the estimate's interleaved bubble from each chunk's own time
    # (schedules.layout_pipe_s): 2.3212 s, −0.35 %. Session 22 (spoverlap), the interleaved gradient sync chunk by
    # chunk (grad_buckets.interleaved_chunks_exposed_s): +0.30 %.
    ("deepseek-v3 l4 b200 hybridep", "deepseek-v3-l4-b200-ep8", {"dispatch_backend": "hybridep"}, None),
    ("deepseek-v3 l4 b200 cuda graphs attn moe_router", "deepseek-v3-l4-b200-ep8",
     {"cuda_graph_scope": ("attn", "moe_router")}, None),
    ("mixtral-8x7b cuda graphs attn moe_router moe_preprocess", "mixtral-8x7b-h100",
     {"cuda_graph_scope": ("attn", "moe_router", "moe_preprocess")}, None),
    ("mixtral-8x7b pp4 vp2 uneven pipeline layout", "mixtral-8x7b-h100", {"pipeline_schedule": "interleaved"},
     Layout(dp=16, ep=8, pp=4, vp=2, first_stage_layers=8, last_stage_layers=8,
            pipeline_layout="Et*3|t*4|t*4|t*4|t*5|t*4|t*4|t*4L")),
    # DeepSeek-V3's recipe layout (Megatron-Bridge df0289c1 deepseek_v3.py layout_map) at (4, 4) and (8, 2), 16
    # micro-batches: the first chunk holds the embedding and the 3 dense layers, the last 1 layer, the MTP module and
    # the loss. Before unevenbubble (bubble (p − 1)·t/v of the slowest device) −1.03 % / −0.89 %; after −1.00 % /
    # −0.76 % (64 micro-batches: −0.27 -> −0.26 %, −0.27 -> −0.22 %); session 22 (spoverlap), the interleaved gradient
    # sync chunk by chunk: −0.20 % / −0.23 %.
    ("deepseek-v3 pp4 vp4 layout Et*4|(t*4|)*14tmL", "deepseek-v3-h800",
     {"pipeline_schedule": "interleaved", "micro_batches": 16, "global_batch_sequences": 16 * 512},
     Layout(dp=512, ep=64, pp=4, vp=4, first_stage_layers=16, last_stage_layers=13,
            pipeline_layout="Et*4|(t*4|)*14tmL")),
    ("deepseek-v3 pp8 vp2 layout Et*4|(t*4|)*14tmL", "deepseek-v3-h800",
     {"pipeline_schedule": "interleaved", "micro_batches": 16, "global_batch_sequences": 16 * 256},
     Layout(dp=256, ep=64, pp=8, vp=2, first_stage_layers=8, last_stage_layers=5,
            pipeline_layout="Et*4|(t*4|)*14tmL")),
    # Megatron's "mlp" and "moe_act" recompute modules (session 21, recompmods): both engines read the recomputed
    # operators' time from the one operator list (moesim/estimate/selective.py recomputed_ops).
    ("deepseek-v2-l4 b200 selective mlp", "deepseek-v2-l4-b200-ep8",
     {"recompute": "selective", "recompute_modules": ("mlp",)}, None),
    ("llama3-70b b200 tp8 sp selective mlp", "llama3-70b-l12-b200-tp8",
     {"recompute": "selective", "recompute_modules": ("core_attn", "mlp")}, None),
    ("mixtral-8x7b selective moe_act", "mixtral-8x7b-h100", {"recompute_modules": ("core_attn", "moe_act")}, None),
    # Megatron's "moe" and "shared_experts" (session 21, recompmods2): the MoE layer's forward again in the recompute
    # phase, its all-to-alls with it (moesim/des/schedule.py), and the shared experts' operators again.
    ("deepseek-v2-l4 b200 selective moe", "deepseek-v2-l4-b200-ep8",
     {"recompute": "selective", "recompute_modules": ("core_attn", "moe")}, None),
    ("mixtral-8x7b selective moe", "mixtral-8x7b-h100", {"recompute_modules": ("core_attn", "moe")}, None),
    ("deepseek-v2-l4 b200 selective shared_experts", "deepseek-v2-l4-b200-ep8",
     {"recompute": "selective", "recompute_modules": ("core_attn", "shared_experts")}, None),
    ("mixtral-8x7b tp2 pp4 vp2 a2a overlap, ep over 2 nodes", "mixtral-8x7b-h100",
     {"pipeline_schedule": "interleaved", "moe_a2a_overlap": True, "global_batch_sequences": 128,
      "sequence_parallel": False}, Layout(dp=8, tp=2, ep=8, pp=4, vp=2)),
    # Attention per layer (session 22, gptoss): GPT-OSS's 128-token window on odd layers, causal on even ones, and its
    # sinks, each layer's attention core priced on its own mask by both engines; stage 0 runs two windowed layers and
    # one causal, stage 1 the reverse: +0.36 % (every layer causal: 0.5000 s estimated, the pattern 0.4908 s).
    ("gpt-oss l6 alternating window pp2", GPT_OSS_L6, {}, None),
    # The Mixtral tp2 pp4 vp2 overlap case above with sequence parallelism, as the scenario runs it since session 21
    # (session 22, spoverlap).
    ("mixtral-8x7b tp2 pp4 vp2 a2a overlap, ep over 2 nodes, sp", "mixtral-8x7b-h100",
     {"pipeline_schedule": "interleaved", "moe_a2a_overlap": True, "global_batch_sequences": 128},
     Layout(dp=8, tp=2, ep=8, pp=4, vp=2)),
    # The two cases above at m 24 and 32 (session 23, slotwalk): the FB slots' waits on the pipeline sends grow with
    # the micro-batches (session 22, sendsoverlap), which the estimate's slot walk prices (a2a_order.slot_walk_s):
    # SP off +0.64 / +0.76 -> +0.06 / +0.05 %, SP on +0.02 / +0.10 -> +0.12 / +0.12 %.
    *((f"mixtral-8x7b tp2 pp4 vp2 a2a overlap, ep over 2 nodes, m {m}{', sp' if sp else ''}", "mixtral-8x7b-h100",
       {"pipeline_schedule": "interleaved", "moe_a2a_overlap": True, "global_batch_sequences": 8 * m,
        "micro_batches": m, "sequence_parallel": sp}, Layout(dp=8, tp=2, ep=8, pp=4, vp=2))
      for m in (24, 32) for sp in (False, True)),
    # The same slice at pp 2 (session 23, pp2tail): the slot walk ends where the simulator's pipeline does, the
    # estimate's step after it stood 18-23 ms over: it priced the first stage's later chunks in 1/v of the stage's
    # MCore buckets where MCore syncs each in one bucket (training.py l.2504-2515), larger and faster:
    # vp 4 m 8 / 16 -1.71 / -0.96 -> -0.29 / -0.17 %, vp 2 m 8 -1.31 -> -0.20 %.
    *((f"mixtral-8x7b tp2 pp2 vp{v} m {m} a2a overlap", "mixtral-8x7b-h100",
       {"pipeline_schedule": "interleaved", "moe_a2a_overlap": True, "global_batch_sequences": 16 * m,
        "micro_batches": m, "sequence_parallel": False}, Layout(dp=16, tp=2, ep=8, pp=2, vp=v))
      for v, m in ((4, 8), (4, 16), (2, 8))),
    # The GPT-OSS slice at pp 1 (session 22, pp1gap): the gradient sync with the model's ends in MCore's buckets, the
    # output layer's alone first (ready once the head's backward ends: the simulator had launched it after the last
    # layer's backward) and the word embedding's last (never hidden: the estimate had spread both over the buckets
    # and hidden them under the whole last backward, the head's included): +5.13 -> -0.28 %; with the EP all-to-all
    # overlap (DeepEP) +5.21 -> -0.28 %. The pp 2 case above: +0.36 -> -0.80 % (overlap_grad_reduce off: -0.75 %,
    # the sync was hiding a pipeline gap), Mixtral pp 8 -0.63 -> -0.73 % (off: -0.71 %). Session 23 (buckets23): both
    # engines on MCore's unequal buckets from one rule (grad_buckets.mcore_buckets): -0.28 -> -0.00 % and -0.28 ->
    # +0.00 %, held to 0.1 % (SCHEDULE_CASES; was 0.5 %).
    ("gpt-oss l6 pp1 dp16 ep8", GPT_OSS_L6, {"micro_batches": 4}, Layout(dp=16, ep=8)),
    ("gpt-oss l6 pp1 dp16 ep8 a2a overlap deepep", GPT_OSS_L6,
     {"micro_batches": 4, "moe_a2a_overlap": True, "dispatch_backend": "deepep"}, Layout(dp=16, ep=8)),
    # overlap_param_gather (session 24, paramoverlap): each stage's parameter all-gathers in its first forward, a layer
    # waiting on its bucket's, the next dispatched once one is waited on (the simulator: moesim.des.schedule
    # param_wait); the estimate's closed form per stage summed over the fill (estimate/param_gather.py
    # forward_exposed_s; interleaved, align_param_gather: chunks 0 and 1 at the start, k + 1 one chunk ahead,
    # aligned_exposed_s). Measured: -0.00, -0.82, -0.38, -0.38, -0.57, -0.71 %; interleaved -0.24, -0.32, -0.02 %.
    *((f"{name} overlap_param_gather", scenario, {**changes, "zero_stage": 1, "overlap_param_gather": True}, layout)
      for name, scenario, changes, layout in (
          ("switch-base-128 zero1", "switch-base-128-tpu-v3", {"dispatch_impl": "index"}, None),
          ("mixtral-8x7b pp1 dp64", "mixtral-8x7b-h100", {"micro_batches": 4}, Layout(dp=64, ep=8)),
          ("mixtral-8x7b pp4 m16 1f1b", "mixtral-8x7b-h100", {}, None),
          ("mixtral-8x7b pp4 m16 gpipe", "mixtral-8x7b-h100", {"pipeline_schedule": "gpipe"}, None),
          ("mixtral-8x7b tp2 ep4 pp4", "mixtral-8x7b-h100", {"global_batch_sequences": 128},
           Layout(dp=8, tp=2, ep=4, pp=4)),
          ("glam 1024 h100 pp4 m8", GLAM_1024, {}, None),
          ("mixtral-8x7b pp4 vp2", "mixtral-8x7b-h100", {"pipeline_schedule": "interleaved"},
           Layout(dp=16, ep=8, pp=4, vp=2)),
          ("mixtral-8x7b tp2 ep4 pp4 vp2", "mixtral-8x7b-h100",
           {"pipeline_schedule": "interleaved", "global_batch_sequences": 128}, Layout(dp=8, tp=2, ep=4, pp=4, vp=2)),
          ("mixtral-8x7b tp2 pp2 vp4 m16", "mixtral-8x7b-h100",
           {"pipeline_schedule": "interleaved", "global_batch_sequences": 256, "micro_batches": 16,
            "sequence_parallel": False}, Layout(dp=16, tp=2, ep=8, pp=2, vp=4)))),
]
# Session 25 (paramoverlap2): cases above run again with overlap_param_gather under Megatron's combined order of
# moe_a2a_overlap (the same dispatches: estimate/param_gather.py), measured +0.17, -0.83, -0.27, -0.08 %; and with
# overlap_param_gather_with_optimizer_step (chunk 0's gathers after its own optimizer step, every chunk one bucket),
# measured -0.40, -0.36, -0.17, -0.00, -0.31 %. Bars in SCHEDULE_CASES.
A2A_PARAM_CASES = ("mixtral-8x7b pp4 vp2 a2a overlap", "mixtral-8x7b pp1 a2a overlap",
                   "gpt-oss l6 pp1 dp16 ep8 a2a overlap deepep", "mixtral-8x7b tp2 pp2 vp4 m 8 a2a overlap")
WITH_STEP_CASES = ("mixtral-8x7b pp4 vp2 overlap_param_gather", "mixtral-8x7b tp2 ep4 pp4 vp2 overlap_param_gather",
                   "mixtral-8x7b tp2 pp2 vp4 m16 overlap_param_gather", "mixtral-8x7b pp4 vp2 a2a overlap",
                   "mixtral-8x7b tp2 pp2 vp4 m 8 a2a overlap")
CASES += [
    *((f"{name} overlap_param_gather", scenario, {**changes, "zero_stage": 1, "overlap_param_gather": True}, layout)
      for name, scenario, changes, layout in list(CASES) if name in A2A_PARAM_CASES),
    *((f"{name} with_optimizer_step", scenario, {**changes, "zero_stage": 1, "overlap_param_gather": True,
                                                 "overlap_param_gather_with_optimizer_step": True}, layout)
      for name, scenario, changes, layout in list(CASES) if name in WITH_STEP_CASES),
]
# The gradient sync (session 18, gradsync): the simulator runs it bucket by bucket (40e6 parameters each, MCore's
# floor), the estimate priced one collective per axis over the stage's whole gradient and hid it under the slowest
# stage's last backward. GLaM's first stage: 0.74366 s in 24 buckets vs 0.68242 s in one, 88 % of the +2.95 % the
# simulator stood over the estimate (0.035 allowed here). With the buckets priced (moesim.estimate.grad_buckets) and
# each stage's sync hidden under its own last backward: +0.01 %. Overlap off, both engines run one bucket per axis
# after the backward (MCore's bucket size None) and the simulator's step reads it: -0.06 %, 0.027 s slower.
# Session 19 (leftovers19): the bucket is MCore's max(40e6, 1e6·dp·cp) parameters in both engines (at dp 2048 one
# bucket: Switch-C's and GShard's syncs no longer hide in the simulator, +2.32 % / +1.65 % until the estimate, too,
# stopped hiding the last bucket and the first bucket's fill: -0.00 % each).
GRAD_SYNC_CASES = {"glam 1024 h100 pp4 m8": TOLERANCE}
# ZB-V (session 20, zbvagree): -1.98 % before gradadds, -2.29 % after, then +0.00 %. The agreement had been two errors
# cancelling: the simulator cut the 12 layers into 2p = 8 pieces on their own (stage_layers(12, 8): devices of 2, 3, 3
# and 4 layers) where the estimate, the layout and sail-sg's ZB-V (L/pp layers a device, half a chunk) give 3 each
# (workload.v_shape_ranges now); its I slots ran the head's dW that their W ran again (pieces._backward_start); and the
# estimate charged the slowest device, the first (embedding and head), the V's start-up skew (p − 1)·F/2 that only
# the last device waits (schedules.zbv_pipe_s: each stage its own). The first device runs without a gap.
# Interleaved at tp 2 (session 21, a2aorder): the simulator runs the plain interleaved schedule 2.80 % under the
# estimate at this layout (the overlap's twin, not an agreement case; -2.88 % with sequence parallelism), the overlap
# on it -2.99 % (SP on: -3.57 %). Session 22 (spoverlap), term by term: both engines price a pair of chunks alike to
# 1e-5 s with SP on and off (the simulator's FB slots against a2a_order's walk; SP's all-gathers and reduce-scatters
# inside the compute nodes in both). The overlap's own share was the pair count: the estimate counted the first
# device's (m·v − 11)/v = 10.5 pairs, the longest path runs the last device's (m·v − 5)/v = 13.5
# (schedules.interleaved_pairs): -2.99 -> -2.17 % (SP off), -3.57 -> -2.75 % (SP on). With the pipeline sends free in
# the simulator its saving is then the estimate's (0.0487 / 0.0483 s against 0.0483); priced, the sends on the ring
# from the last device to the first and back delay FB slots that wait for both inputs (0.0390 / 0.0454 s saved; SP
# halves the send; not priced). The plain twin's gap was 0.032 s of gradient sync: the estimate hid the first stage's
# whole sync under one micro-batch's backward where MCore syncs each later chunk in the cool-down
# (grad_buckets.interleaved_chunks_exposed_s): plain -2.79 / -2.88 -> -0.33 / -0.36 %, the cases +0.40 / -0.13 %,
# held to 1 % (was 3.5 %). Session 23 (slotwalk): the estimate walks the slots of Megatron's order, each FB slot
# waiting on its two sends as the simulator's (a2a_order.slot_walk_s): +0.08 / +0.13 %, held to 0.5 % with the m 24
# and 32 variants; the tp 1 cases (NCCL, DeepEP) -0.17 / -0.15 -> +0.01 / +0.01 %, held to 0.5 % too (were 2 %).
SCHEDULE_CASES: dict[str, float] = {"mixtral-8x7b tp2 pp4 vp2 a2a overlap, ep over 2 nodes": 0.005,
                                    "mixtral-8x7b tp2 pp4 vp2 a2a overlap, ep over 2 nodes, sp": 0.005,
                                    **{f"mixtral-8x7b tp2 pp4 vp2 a2a overlap, ep over 2 nodes, m {m}{sp}": 0.005
                                       for m in (24, 32) for sp in ("", ", sp")},
                                    "mixtral-8x7b pp4 vp2 a2a overlap": 0.005,
                                    **{f"mixtral-8x7b tp2 pp2 vp{v} m {m} a2a overlap": 0.005
                                       for v, m in ((4, 8), (4, 16), (2, 8))},
                                    "mixtral-8x7b pp4 vp2 a2a overlap deepep": 0.005,
                                    "gpt-oss l6 pp1 dp16 ep8": 0.001,
                                    "gpt-oss l6 pp1 dp16 ep8 a2a overlap deepep": 0.001,
                                    # overlap_param_gather (session 24, paramoverlap): the measured figure's bar
                                    **{f"{name} overlap_param_gather": bar for name, bar in (
                                        ("switch-base-128 zero1", 0.001), ("mixtral-8x7b pp1 dp64", 0.01),
                                        ("mixtral-8x7b pp4 m16 1f1b", 0.005), ("mixtral-8x7b pp4 m16 gpipe", 0.005),
                                        ("mixtral-8x7b tp2 ep4 pp4", 0.0075), ("glam 1024 h100 pp4 m8", 0.0075),
                                        ("mixtral-8x7b pp4 vp2", 0.005), ("mixtral-8x7b tp2 ep4 pp4 vp2", 0.005),
                                        ("mixtral-8x7b tp2 pp2 vp4 m16", 0.001))},
                                    # Session 25 (paramoverlap2): the measured figures' bars (the twins' own, or 0.5 %)
                                    **{f"{name} overlap_param_gather": bar for name, bar in zip(
                                        A2A_PARAM_CASES, (0.005, 0.01, 0.005, 0.005))},
                                    **{f"{name} with_optimizer_step": 0.005 for name in WITH_STEP_CASES}}
ONE_DEVICE_PER_STAGE = {"llama3-70b b200 tp1 pp8 m16 1f1b"}  # tp = dp = 1: nothing to aggregate, all 8 simulated


@pytest.mark.parametrize("name, scenario, changes, layout", CASES, ids=[c[0] for c in CASES])
def test_simulated_step_agrees_with_the_estimate(name, scenario, changes, layout):
    sc = load_scenario(scenario)
    if changes:
        sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, **changes))
    result = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.mode == ("full" if name in ONE_DEVICE_PER_STAGE else "aggregated")
    tolerance = GRAD_SYNC_CASES.get(name, SCHEDULE_CASES.get(name, TOLERANCE))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=tolerance)
    if name in GRAD_SYNC_CASES:
        exposed = dataclasses.replace(sc, training=dataclasses.replace(sc.training, overlap_grad_reduce=False))
        again = simulate(exposed, layout, SimOptions(contention=False, expected_loads=True, trace=False))
        assert again.step_times_s[0] > result.step_times_s[0]  # the simulator reads overlap_grad_reduce
        assert again.step_times_s[0] == pytest.approx(again.analytical_step_time_s, rel=TOLERANCE)


OVERHEAD_CASES = [
    ("mixtral-8x7b pp4 m16 1f1b", "mixtral-8x7b-h100", {}),
    ("mixtral-8x7b full recompute", "mixtral-8x7b-h100", {"recompute": "full"}),
    ("switch-base-128", "switch-base-128-tpu-v3", {}),
]


@pytest.mark.parametrize("name, scenario, changes", OVERHEAD_CASES, ids=[c[0] for c in OVERHEAD_CASES])
def test_layer_overhead_keeps_the_simulator_in_agreement(name, scenario, changes):
    """A per-layer host overhead (here 200 µs per pass, large against these layers) runs in the simulator as
    one compute op per layer pass, so the two still agree and both grow."""
    sc = load_scenario(scenario)
    sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, **changes))
    hw = sc.hardware
    slow = dataclasses.replace(sc, hardware=dataclasses.replace(
        hw, efficiency=dataclasses.replace(hw.efficiency, layer_overhead_s=200e-6)))
    options = SimOptions(contention=False, expected_loads=True, trace=False)
    base, result = simulate(sc, None, options), simulate(slow, None, options)
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=TOLERANCE)
    assert result.step_times_s[0] > base.step_times_s[0]
    assert result.analytical_step_time_s > base.analytical_step_time_s


UNEVEN_TOLERANCE = 0.01  # test docstring: -0.41 % .. +0.40 % measured
UNEVEN_CASES = [
    # (id, scenario, devices, training changes, layout): pp ∤ layers, stages split by specs.layout.stage_layers
    ("mixtral-8x7b pp3 (11, 11, 10) 1f1b", "mixtral-8x7b-h100", 48, {}, Layout(dp=16, ep=8, pp=3)),
    ("mixtral-8x7b pp3 (11, 11, 10) gpipe", "mixtral-8x7b-h100", 48, {"pipeline_schedule": "gpipe"},
     Layout(dp=16, ep=8, pp=3)),
    ("deepseek-v3 61 layers pp16 (15 x 4, 1) + MTP, FP8 recipe, 1f1b", "deepseek-v3-h800", None,
     {"pipeline_schedule": "1f1b"}, Layout(dp=128, ep=64, pp=16, last_stage_layers=1)),
]


@pytest.mark.parametrize("name, scenario, devices, changes, layout", UNEVEN_CASES, ids=[c[0] for c in UNEVEN_CASES])
def test_uneven_stages_agree_with_the_estimate(name, scenario, devices, changes, layout):
    """Uneven stages: the estimate prices 1F1B and GPipe as Σ_s t_s + (m − 1)·max_s t_s (Alpa, Zheng et al. OSDI
    2022, §5 Eq. 2), the pipeline filling and draining through every stage at its own time, and stays within 1 %
    of the simulated pipeline here. Not a bound either way: Mixtral (dp 16) is +0.33 % (1F1B) and +0.40 % (GPipe)
    over it, the gradient sync the simulator hides less of (see GRAD_SYNC_CASES), and DeepSeek-V3 -0.41 % under it.
    Session 18 (pipebound): the estimate was (m + pp − 1)·max-stage, a bound from above within 0.2 % of Mixtral's
    (+0.03 %, +0.10 %) and 1.41 % over DeepSeek-V3's (2.5 % allowed: its heavy last stage)."""
    sc = load_scenario(scenario, devices=devices)
    if changes:
        sc = dataclasses.replace(sc, training=dataclasses.replace(sc.training, **changes))
    layout = layout or sc.resolve()
    assert len(set(layout.stage_layers(sc.model.num_layers))) >= 2
    result = simulate(sc, layout, SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=UNEVEN_TOLERANCE)
