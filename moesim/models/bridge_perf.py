"""Megatron-Bridge's published MoE pre-training throughputs, priced by moesim (validation only, never fitted).

The rows (system, model, layout, batch, precision and the measured tokens / s / GPU) are data:
tests/data/bridge_perf/megatron_bridge_moe.toml (NVIDIA-NeMo/Megatron-Bridge @ df0289c1,
docs/performance-summary.md), every field cited there and what the page does not state marked as assumed.
`row_scenario` writes a row as a scenario in code (its model, hardware profile, device count, batch, precision
recipe and layout); `price_row` gives moesim's step time; `render_block` is the generated table of
docs/operators.md (scripts/bridge_perf_check.py writes and checks it). Published step time
= gbs · seq_len / (tokens_per_s_per_gpu · gpus); error = moesim / published − 1 (negative: moesim too fast).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Session 25 (tidy25): the rows and their reader in bridge_rows.py, the generated blocks in bridge_render.py; every
# name is still importable from here (tests/test_module_split.py MOVED).
from moesim.models.bridge_overlap import param_overlap_keys, priced_vp  # noqa: F401  (priced_vp: the tests' name)
from moesim.models.bridge_render import (  # noqa: F401
    FLOP_SPREAD, OLDER_RELEASES, PARTS, RELEASES, flop_outlier, not_written, release_spread, render_block,
    render_newer_block, same_release, same_run)
from moesim.models.bridge_rows import (  # noqa: F401
    A2A_OVERLAP, DATA, DATA_NEWER, DISPATCH_BACKEND, FIELDS, HARDWARE, HARDWARE_LABEL, MODEL_LABEL, OPTIONAL_FIELDS,
    PRECISION_RECIPE, RECIPE_FLAG, ROUTER_DATA, SM_COUNT_DISPATCHERS, BridgeRow, load_newer_rows, load_rows,
    router_dtype_table, router_dtypes)

_same_release, _same_run = same_release, same_run  # their names here before the split

# Where neither the page nor a matching recipe states recompute: tried in this order, the first under which
# moesim's own memory estimate fits is priced (the data file's header). (recompute, recompute_modules, MLA only)
RECOMPUTE_LADDER = (("none", (), False), ("selective", ("mla_up_proj",), True), ("full", (), False))
# Rows the simulator also runs (the agreement column): 26.02's three Qwen3-30B-A3B rows, one DeepSeek-V3 row per
# Blackwell system and one Qwen3-235B-A22B row.
DES_CASES = ("26.02-gb200-qwen3-30b-fp8mx-ep8", "26.02-b200-qwen3-30b-fp8mx-ep8",
             "26.02-h100-qwen3-30b-fp8cs-pp2vp12ep8", "26.02-gb200-dsv3-fp8mx-pp4vp4ep64",
             "25.11-b200-dsv3-fp8mx-pp16ep8", "26.02-b200-qwen3-235b-fp8mx-pp8ep8")


def row_scenario(row: BridgeRow, recompute: str, modules: tuple[str, ...]):
    """The row as a scenario: its model (MTP off where the row runs without), hardware, gpus, batch
    (micro-batches = GA, so the micro-batch is mbs sequences), precision recipe, ZeRO-1, the given recompute,
    SP at tp > 1 (Megatron requires it with EP and TP), the router GEMM's dtypes (router_dtypes.toml), the dispatcher,
    Megatron-Core's routing probability inside the expert activation, the recipe's gradient-buffer dtype, FP8
    parameters and HybridEP SM count where read, and its layout (vp only where moesim can write it; the recipe's
    first / last stage layers where it gives them)."""
    from moesim.specs.fields import Table
    from moesim.specs.model_file import load_model
    from moesim.specs.scenario_file import scenario_from_table

    model = load_model(row.model)
    vp = priced_vp(row, model.num_layers)
    training = {"global_batch_sequences": row.gbs, "seq_len": row.seq_len, "micro_batches": row.ga,
                "precision_recipe": PRECISION_RECIPE[row.precision], "zero_stage": 1, "recompute": recompute,
                "sequence_parallel": row.tp > 1, "overlap_grad_reduce": True,
                # overlap_param_gather at dp > 1, its with_optimizer_step where the perf scripts set it (bridge_overlap.py)
                **param_overlap_keys(row, vp, RELEASES),
                "dispatch_backend": DISPATCH_BACKEND[row.dispatcher],
                # the recipe's per-layer modules, or ["full_iteration"] (cuda_graph_impl "full_iteration":
                # moesim.ops.graphs.FULL_ITERATION, session 21 bridgerows2)
                "cuda_graph_scope": list(row.cuda_graph_scope),
                "pipeline_schedule": "interleaved" if vp > 1 else "1f1b",
                # the recipe's EP A2A overlap where moesim prices the schedule Megatron runs it with: interleaved, or
                # at pp 1 combined_1f1b_schedule_for_no_pipelining (Megatron-LM d98e8a64 schedules.py l.778; 1f1b here)
                "moe_a2a_overlap": row.moe_a2a_overlap == "on" and (vp > 1 or row.pp == 1),
                # Megatron-Core's grouped experts multiply the routing probability inside the activation (Megatron-LM
                # core/transformer/moe/experts.py TEGroupedMLP bias_act_func: weighted_bias_swiglu_impl(..,
                # permuted_probs)), so no expert output is kept: every row runs Megatron-Core (session 21, bridgemem)
                "moe_probs_in_activation": True,
                # Megatron-Bridge runs the fused cross-entropy on every pretraining recipe: GPTModelProvider's default
                # cross_entropy_loss_fusion = True (models/gpt_provider.py l.201 @ 63b08b397, since 958fb9b7d),
                # DeepSeek-V3's recipe sets it with impl "te" (recipes/deepseek/deepseek_v3.py l.172-173), and the
                # perf scripts set cross_entropy_fusion_impl = "te" on every row (scripts/performance/utils/
                # overrides.py l.69-70, since bf75c658c): TE's parallel_cross_entropy (session 23, bwfp8)
                "fused_cross_entropy": True}
    if row.grad_reduce_in_fp32 == "false":
        # Megatron-LM param_and_grad_buffer.py: grad_dtype = torch.float if grad_reduce_in_fp32 else param.dtype
        # (BF16 gradient buffers, reduced in BF16: both engines read bytes_of("grad"))
        training["grad_dtype"] = "bfloat16"
    if row.fp8_param_gather == "true":
        # Megatron-LM fp8_utils.py: --fp8-param-gather builds the model under TE's fp8_model_init, the Linear weights
        # FP8 tensors with no BF16 copy (FP32 masters in the distributed optimizer): moesim's fp8_gemm_param_copy
        training["fp8_gemm_param_copy"] = False
    if row.te_op_fuser == "true":
        # Megatron-Core's grouped MLP as TE's fusible ops (Megatron-LM core_v0.18.0 moe/experts.py l.269-273): the
        # expert FC2's bias inside TE's GroupedLinear, not Megatron's per-expert loop (moesim/ops/layer.py)
        training["te_op_fuser"] = True
    if row.a2a_kernel_sms:
        # the recipe's moe_hybridep_num_sms (Megatron-Bridge perf_recipes/_common.py _benchmark_common, or
        # scripts/performance/utils/overrides.py _set_common_perf_overrides: 32): compute beside HybridEP's kernels
        # at the SMs left (moesim/ops/sm_share.py), the row's own setting, not moesim's default
        training |= {"comm_sm_share": "hybridep", "a2a_kernel_sms": row.a2a_kernel_sms}
    if recompute == "selective":  # the recipe's list as given, Megatron's default ["core_attn"] where it gives none
        # (Megatron-LM 23e00ed0 transformer_config.py l.864-865; attention.py l.177-180: the core is checkpointed only
        # when named). The s·s scores a flash kernel never keeps come from training.attention_kernel, not the list.
        training["recompute_modules"] = list(modules) or ["core_attn"]
    layout = {"dp": row.dp, "tp": row.tp, "ep": row.ep, "pp": row.pp} | ({"vp": vp} if vp > 1 else {}) | (
        {"cp": row.cp} if row.cp > 1 else {})
    layout |= {k: n for k, n in (("first_stage_layers", row.first_stage_layers),
                                 ("last_stage_layers", row.last_stage_layers)) if n}
    layout |= {"pipeline_layout": row.pipeline_layout} if row.pipeline_layout else {}
    router_fwd, router_bwd = router_dtypes(row.model)  # tests/data/bridge_perf/router_dtypes.toml
    table = {"schema_version": 1, "name": row.case, "model": row.model, "hardware": row.hardware,
             "devices": row.gpus, "training": training, "layout": layout,
             "moe": {"router_dtype": router_fwd, "router_bwd_dtype": router_bwd},
             "source": f"Megatron-Bridge performance summary, {row.release} {row.system} {row.source_model}"}
    sc = scenario_from_table(Table(table, file=str(DATA), path=row.case), base_dir=DATA.parent)
    if not row.mtp and sc.model.mtp_depth:
        sc = dataclasses.replace(sc, model=dataclasses.replace(sc.model, mtp_depth=0))
    return sc


@dataclass(frozen=True)
class Priced:
    """moesim's figures for one row."""

    row: BridgeRow
    step_s: float
    # the recompute priced (the recipe's, else the ladder's first that fits, or its last): mode and modules
    recompute_mode: str
    recompute_modules: tuple[str, ...]
    fits: bool
    memory_gib: float  # moesim's peak per device on its fullest stage, reserved included
    vp: int  # the vp priced
    parts_s: dict[str, float]  # the estimate's compute, exposed communication, bubble and optimizer time
    des_step_s: float | None = None

    @property
    def step_error(self) -> float:
        return self.step_s / self.row.published_step_s - 1

    @property
    def recompute(self) -> str:
        """The recompute priced, as the block prints it ("selective (mla_up_proj)")."""
        if self.recompute_mode != "selective":
            return self.recompute_mode
        return "selective (" + ", ".join(self.recompute_modules) + ")"


def price_row(row: BridgeRow, *, simulate: bool = False) -> Priced:
    from moesim.collectives.select import model_for
    from moesim.estimate import evaluate, step_estimate
    from moesim.estimate.candidates import single
    from moesim.specs.model_file import load_model

    mla = load_model(row.model).attention.kind == "mla"
    ladder = ((row.recompute, row.recompute_modules, False),) if row.recompute else RECOMPUTE_LADDER
    for recompute, modules, mla_only in ladder:
        if mla_only and not mla:
            continue
        sc = row_scenario(row, recompute, modules)
        layout = sc.resolve()
        ev = evaluate(sc, single(sc, layout), model_for(sc))
        if bool(ev.fits[0]):
            break
    est = step_estimate(sc, ev, 0)
    des = None
    if simulate:
        from moesim.des import SimOptions
        from moesim.des import simulate as run

        des = float(run(sc, layout, SimOptions(contention=False, expected_loads=True, trace=False)).step_times_s[0])
    parts = {"compute": est.compute_time_s, "exposed communication": est.exposed_communication_time_s,
             "bubble": est.bubble_time_s, "optimizer": est.optimizer_time_s}
    return Priced(row, est.step_time_s, recompute, tuple(modules), bool(ev.fits[0]),
                  est.memory_bytes_per_device["total"] / 2**30, layout.vp, parts, des)


def price_all(rows: tuple[BridgeRow, ...] | None = None) -> list[Priced]:
    rows = load_rows() if rows is None else rows
    return [price_row(r, simulate=r.case in DES_CASES) for r in rows]


def __getattr__(name: str):
    """ROUTER_DTYPES, as before session 25: model -> (forward, backward dtype), now read from router_dtypes.toml."""
    if name == "ROUTER_DTYPES":
        return router_dtype_table()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
