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
from functools import lru_cache
from pathlib import Path

import numpy as np

from moesim.collectives.dispatch import hybridep_published_ranks
from moesim.errors import SpecError
from moesim.models.bridge_overlap import param_overlap_keys, priced_vp  # noqa: F401  (priced_vp: the tests' name)
from moesim.models.row_table import read_rows, row_fields, typed_fields
from moesim.specs.training import CUDA_GRAPH_SCOPES
from moesim.units import format_fraction_pct as _pct

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "bridge_perf" / "megatron_bridge_moe.toml"
# The newer releases' rows (26.02.01 to 26.08, Megatron-Bridge @ 067f987d): same fields, their own generated block.
DATA_NEWER = DATA.with_name("megatron_bridge_moe_2602_2608.toml")
# The page's Precision column -> moesim's precision recipe (moesim/precision_recipes.toml): BF16 the baseline,
# FP8-MX TransformerEngine's MXFP8BlockScaling, FP8-CS TE's Float8CurrentScaling (the recipes' own sources); the
# newer tables' "MXFP8" is FP8-MX, their "FP8" (DGX-H100) names no scaling: current scaling, assumed
# (megatron_bridge_moe_2602_2608.toml's header).
PRECISION_RECIPE = {"BF16": "bf16", "FP8-MX": "mxfp8-blackwell", "FP8-CS": "te-current-scaling",
                    "MXFP8": "mxfp8-blackwell", "FP8": "te-current-scaling"}
# moesim's profiles of the page's systems -> their labels (DGX-B300 / GB300 in the newer tables only;
# hardware_profiles/, vendor figures)
HARDWARE_LABEL = {"h100-sxm": "H100", "b200": "B200", "gb200-nvl72": "GB200", "b300": "B300", "gb300-nvl72": "GB300"}
HARDWARE = tuple(HARDWARE_LABEL)
# GPT-OSS-120B in the newer tables' rows only (moesim/models/library/gpt-oss-120b.toml)
MODEL_LABEL = {"deepseek-v3": "DeepSeek-V3", "qwen3-30b-a3b": "Qwen3-30B-A3B", "qwen3-235b-a22b": "Qwen3-235B-A22B",
               "gpt-oss-120b": "GPT-OSS-120B"}
# Where neither the page nor a matching recipe states recompute: tried in this order, the first under which
# moesim's own memory estimate fits is priced (the data file's header). (recompute, recompute_modules, MLA only)
RECOMPUTE_LADDER = (("none", (), False), ("selective", ("mla_up_proj",), True), ("full", (), False))
# The recipe's moe_flex_dispatcher_backend -> moesim's dispatch_backend: DeepEP is moesim's `deepep`, HybridEP its
# `hybridep` (session 21: DeepEP's path at HybridEP's published rates); a dispatcher the recipe does not name is
# priced as the NCCL all-to-all.
DISPATCH_BACKEND = {"": "nccl", "deepep": "deepep", "hybridep": "hybridep"}
# The router's logits GEMM as Megatron-Core computes it, by the row's model: (forward dtype, backward dtype), the
# scenario's [moe] router_dtype / router_bwd_dtype. Megatron-LM since 0f058666a8 (core_v0.13.0, before every release
# here) runs it through TE's general_gemm (d98e8a64 moe_utils.py RouterGatingLinearFunction l.1389-1394): the BF16
# input and weight as they are, moe_router_dtype only the output's dtype, so the forward is a BF16 GEMM; the backward
# casts the weight / input to moe_router_dtype (l.1425-1432), and TE computes an all-FP32 GEMM as
# CUBLAS_COMPUTE_32F_FAST_TF32 (TransformerEngine d0067d0da common/gemm/cublaslt_gemm.cu l.445-449; so since its
# first commit 996ea169c): TF32.
# DeepSeek-V3: Megatron-Bridge's provider sets moe_router_dtype = "fp32" at every release commit read
# (models/deepseek/deepseek_provider.py l.79 @ fa0315ae2 / 5776a6d90, deepseek_v3_bridge.py l.66-75 @ df0289c1 ..
# 4ab94dfad; only the GB300 FSDP / HSDP perf configs set "bf16", which no row runs). Qwen3 and GPT-OSS set none:
# Megatron's default None (transformer_config.py l.811), the input's dtype, BF16, every pass.
ROUTER_DTYPES = {"deepseek-v3": ("bfloat16", "tfloat32"), "qwen3-30b-a3b": ("bfloat16", "bfloat16"),
                 "qwen3-235b-a22b": ("bfloat16", "bfloat16"), "gpt-oss-120b": ("bfloat16", "bfloat16")}
# The recipe's moe_a2a_overlap (Megatron-Core overlap_moe_expert_parallel_comm + delay_wgrad_compute, the combined
# 1F1B schedule: Megatron-LM megatron/core/models/common/model_chunk_schedule_plan.py TransformerLayerSchedulePlan.run):
# priced (training.moe_a2a_overlap) where moesim prices the row's interleaved schedule or the row runs pp 1, else named
# as not written.
A2A_OVERLAP = ("on", "off", "")
# A recipe's boolean setting as written down: "true" / "false" as the recipe sets it, "" where it was not read.
RECIPE_FLAG = ("true", "false", "")
# Optional row fields (session 21, bridgemem) and their value where a row leaves them out: not read.
OPTIONAL_FIELDS = {"pipeline_layout": "", "grad_reduce_in_fp32": "", "fp8_param_gather": "", "a2a_kernel_sms": 0,
                   "te_op_fuser": ""}
# Dispatchers whose kernels a recipe gives an SM count (Megatron-Core moe_hybridep_num_sms; session 22 bridgesms)
SM_COUNT_DISPATCHERS = ("hybridep",)
# Rows the simulator also runs (the agreement column): 26.02's three Qwen3-30B-A3B rows, one DeepSeek-V3 row per
# Blackwell system and one Qwen3-235B-A22B row.
DES_CASES = ("26.02-gb200-qwen3-30b-fp8mx-ep8", "26.02-b200-qwen3-30b-fp8mx-ep8",
             "26.02-h100-qwen3-30b-fp8cs-pp2vp12ep8", "26.02-gb200-dsv3-fp8mx-pp4vp4ep64",
             "25.11-b200-dsv3-fp8mx-pp16ep8", "26.02-b200-qwen3-235b-fp8mx-pp8ep8")


@dataclass(frozen=True)
class BridgeRow:
    """One published row (fields as tests/data/bridge_perf/megatron_bridge_moe.toml documents them)."""

    case: str
    release: str
    system: str
    source_model: str
    model: str
    hardware: str
    gpus: int
    precision: str
    precision_stated: bool
    gbs: int
    mbs: int
    seq_len: int
    fsdp: int
    tp: int
    pp: int
    cp: int
    vp: int
    ep: int
    ga: int
    tokens_per_s_per_gpu: float
    model_tflops_per_gpu: float
    mtp: bool
    moe_a2a_overlap: str  # A2A_OVERLAP: the recipe's moe_a2a_overlap, "" where no recipe was read
    recipe: str
    recompute: str
    recompute_modules: tuple[str, ...]
    first_stage_layers: int
    last_stage_layers: int
    pipeline_layout: str  # Megatron's --pipeline-model-parallel-layout of the recipe ("": none given)
    dispatcher: str
    cuda_graph_scope: tuple[str, ...]
    assumed: tuple[str, ...]
    # RECIPE_FLAG: the recipe's grad_reduce_in_fp32 (Megatron DDP's gradient buffers in FP32, else in the parameters'
    # BF16) and fp8_param_gather (the Linear weights stored as FP8 tensors, no BF16 copy); "" where not read
    grad_reduce_in_fp32: str = ""
    fp8_param_gather: str = ""
    # the recipe's moe_hybridep_num_sms (the SMs HybridEP's kernels hold; session 22 bridgesms), priced as the row's
    # own training.comm_sm_share = "hybridep" and training.a2a_kernel_sms; 0 where no recipe sets it or none was read
    a2a_kernel_sms: int = 0
    # RECIPE_FLAG: the recipe's use_transformer_engine_op_fuser (session 23, gptossgap; training.te_op_fuser: a biased
    # expert FC2's bias inside TE's GroupedLinear, else Megatron-Core's per-expert loop); "" not set by the recipe
    # read, or no recipe read: Megatron's default (off)
    te_op_fuser: str = ""

    @property
    def dp(self) -> int:
        return self.gpus // (self.tp * self.cp * self.pp)

    @property
    def published_step_s(self) -> float:
        """gbs · seq_len tokens per step over gpus · tokens / s / GPU."""
        # the page's "Tokens / sec / GPU: Throughput per GPU" (performance-summary.md, Performance Metrics)
        return self.gbs * self.seq_len / (self.tokens_per_s_per_gpu * self.gpus)

    @property
    def published_gflop_per_token(self) -> float:
        """The page's own model FLOPs per token: Model TFLOP / s / GPU over tokens / s / GPU (a consistency check
        between the two printed columns; the same model and sequence should give the same figure)."""
        return self.model_tflops_per_gpu * 1e3 / self.tokens_per_s_per_gpu

    @property
    def layout_text(self) -> str:
        text = f"tp{self.tp}·pp{self.pp}" + (f"·vp{self.vp}" if self.vp > 1 else "") + f"·ep{self.ep}·dp{self.dp}"
        return text + (f"·cp{self.cp}" if self.cp > 1 else "")


FIELDS = row_fields(BridgeRow)  # the data file's fields: the row's, typed as it declares them


def _row(raw: dict, index: int, path: Path) -> BridgeRow:
    where = f"row[{index}]"
    raw = OPTIONAL_FIELDS | raw  # optional (session 21): "" = none / not read
    row = BridgeRow(**typed_fields(raw, FIELDS, where, path))
    if row.precision not in PRECISION_RECIPE:
        raise SpecError(f"{row.case}: unknown precision", file=str(path), field=f"{where}.precision",
                        value=row.precision, allowed=sorted(PRECISION_RECIPE))
    if row.hardware not in HARDWARE:
        raise SpecError(f"{row.case}: unknown hardware", file=str(path), field=f"{where}.hardware",
                        value=row.hardware, allowed=HARDWARE)
    if row.model not in MODEL_LABEL:
        raise SpecError(f"{row.case}: unknown model", file=str(path), field=f"{where}.model", value=row.model,
                        allowed=sorted(MODEL_LABEL))
    if row.dispatcher not in DISPATCH_BACKEND:
        raise SpecError(f"{row.case}: unknown dispatcher", file=str(path), field=f"{where}.dispatcher",
                        value=row.dispatcher, allowed=sorted(DISPATCH_BACKEND))
    if row.moe_a2a_overlap not in A2A_OVERLAP:
        raise SpecError(f"{row.case}: unknown moe_a2a_overlap", file=str(path), field=f"{where}.moe_a2a_overlap",
                        value=row.moe_a2a_overlap, allowed=list(A2A_OVERLAP))
    for name in ("grad_reduce_in_fp32", "fp8_param_gather", "te_op_fuser"):
        if getattr(row, name) not in RECIPE_FLAG:
            raise SpecError(f"{row.case}: unknown {name}", file=str(path), field=f"{where}.{name}",
                            value=getattr(row, name), allowed=list(RECIPE_FLAG))
    if row.a2a_kernel_sms and row.dispatcher not in SM_COUNT_DISPATCHERS:
        raise SpecError(f"{row.case}: an SM count for the all-to-all's kernels on a row whose dispatcher sets none",
                        file=str(path), field=f"{where}.a2a_kernel_sms", value=row.a2a_kernel_sms,
                        allowed=f"0 unless dispatcher is one of {list(SM_COUNT_DISPATCHERS)}")
    if row.a2a_kernel_sms < 0:
        raise SpecError(f"{row.case}: negative SM count", file=str(path), field=f"{where}.a2a_kernel_sms",
                        value=row.a2a_kernel_sms, allowed=">= 0 (0: not read)")
    if row.fp8_param_gather == "true" and row.precision == "BF16":
        raise SpecError(f"{row.case}: fp8_param_gather on a BF16 row (no FP8 weights to store)", file=str(path),
                        field=f"{where}.fp8_param_gather", value=row.fp8_param_gather, allowed=["false", ""])
    if any(m not in CUDA_GRAPH_SCOPES for m in row.cuda_graph_scope):
        raise SpecError(f"{row.case}: unknown cuda_graph_scope module", file=str(path),
                        field=f"{where}.cuda_graph_scope", value=list(row.cuda_graph_scope),
                        allowed=list(CUDA_GRAPH_SCOPES))
    if row.recompute not in ("", "none", "selective", "full"):
        raise SpecError(f"{row.case}: unknown recompute", file=str(path), field=f"{where}.recompute",
                        value=row.recompute, allowed=["", "none", "selective", "full"])
    if row.fsdp != 0:
        raise SpecError(f"{row.case}: FSDP rows are not written down (moesim prices ZeRO-1 here)",
                        file=str(path), field=f"{where}.fsdp", value=row.fsdp, allowed=[0])
    if row.gpus % (row.tp * row.cp * row.pp) or row.mbs * row.ga * row.dp != row.gbs:
        raise SpecError(f"{row.case}: tp·cp·pp must divide gpus and mbs·ga·dp must equal gbs", file=str(path),
                        field=where)
    if row.pipeline_layout:
        from moesim.specs.pipeline_layout import parse

        pl = parse(row.pipeline_layout, row.pp, field=f"{where}.pipeline_layout", file=str(path))
        ends = [(k, n, d) for k, n, d in (("first_stage_layers", row.first_stage_layers, pl.device_layers[0]),
                                          ("last_stage_layers", row.last_stage_layers, pl.device_layers[-1]))
                if n and n != d]
        if pl.vp != row.vp or ends:
            raise SpecError(f"{row.case}: the pipeline layout has vp {pl.vp} and end stages of "
                            f"{pl.device_layers[0]} / {pl.device_layers[-1]} layers, the row vp {row.vp} and "
                            + ", ".join(f"{k} {n}" for k, n, _ in ends), file=str(path),
                            field=f"{where}.pipeline_layout", value=row.pipeline_layout)
    return row


@lru_cache(maxsize=None)
def load_rows(path: Path = DATA) -> tuple[BridgeRow, ...]:
    return tuple(_row(r, i, path) for i, r in enumerate(read_rows(path, "the Megatron-Bridge table")))


def load_newer_rows() -> tuple[BridgeRow, ...]:
    """The 26.02.01 to 26.08 rows (tests/data/bridge_perf/megatron_bridge_moe_2602_2608.toml)."""
    return load_rows(DATA_NEWER)


def row_scenario(row: BridgeRow, recompute: str, modules: tuple[str, ...]):
    """The row as a scenario: its model (MTP off where the row runs without), hardware, gpus, batch
    (micro-batches = GA, so the micro-batch is mbs sequences), precision recipe, ZeRO-1, the given recompute,
    SP at tp > 1 (Megatron requires it with EP and TP), the router GEMM's dtypes (ROUTER_DTYPES), the dispatcher,
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
    router_fwd, router_bwd = ROUTER_DTYPES[row.model]
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


PARTS = ("compute", "exposed communication", "bubble", "optimizer")


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


def _same_release(row: BridgeRow, rows: tuple[BridgeRow, ...]) -> tuple[BridgeRow, ...]:
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
                   f"{'; '.join(not_written(p, _same_release(r, rows) if by_release else rows))} |")
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


def _same_run(row: BridgeRow) -> tuple:
    """What makes two releases' rows one run to moesim: system, model, precision recipe, GPUs, batch and layout."""
    return (row.hardware, row.model, PRECISION_RECIPE[row.precision], row.gpus, row.gbs, row.mbs, row.seq_len,
            row.tp, row.pp, row.cp, row.vp, row.ep)


def release_spread(rows: tuple[BridgeRow, ...]) -> list[tuple[tuple, list[BridgeRow]]]:
    """Runs published in more than one release with the same layout (moesim prices them alike but for what a
    row's recipe states), each with its rows in release order."""
    runs: dict[tuple, list[BridgeRow]] = {}
    for r in rows:
        runs.setdefault(_same_run(r), []).append(r)
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
