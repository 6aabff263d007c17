"""Megatron-Bridge's published MoE pre-training rows as data (validation only, never fitted): the row's fields, the
page's labels, and the strict reader of tests/data/bridge_perf/ (session 25, tidy25: moved out of
moesim/models/bridge_perf.py, which still exports every name). The router GEMM's dtypes per model are data too:
tests/data/bridge_perf/router_dtypes.toml (`router_dtypes`), every row's model checked against it when read.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from moesim.errors import SpecError
from moesim.models.row_table import read_rows, row_fields, typed_fields
from moesim.paths import read_versioned_toml
from moesim.specs.training import CUDA_GRAPH_SCOPES

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
# The recipe's moe_flex_dispatcher_backend -> moesim's dispatch_backend: DeepEP is moesim's `deepep`, HybridEP its
# `hybridep` (session 21: DeepEP's path at HybridEP's published rates); a dispatcher the recipe does not name is
# priced as the NCCL all-to-all.
DISPATCH_BACKEND = {"": "nccl", "deepep": "deepep", "hybridep": "hybridep"}
# The router's logits GEMM's dtypes by the row's model (forward, backward: the scenario's [moe] router_dtype /
# router_bwd_dtype), with their sources (Megatron-LM @ d98e8a64 moe_utils.py l.1389-1432; the data file's header)
ROUTER_DATA = DATA.with_name("router_dtypes.toml")
ROUTER_KEYS = ("router_dtype", "router_bwd_dtype")
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
    router_dtypes(row.model)  # a model router_dtypes.toml has no table for: its error
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


@lru_cache(maxsize=None)
def router_dtype_table(path: Path = ROUTER_DATA) -> dict[str, tuple[str, str]]:
    """router_dtypes.toml, strictly: model -> (forward dtype, backward dtype), each model's table exactly ROUTER_KEYS,
    strings."""
    data = read_versioned_toml(path)
    models = data.get("model")
    if set(data) != {"schema_version", "model"} or not isinstance(models, dict) or not models:
        raise SpecError("needs schema_version and [model.NAME] tables", file=str(path), value=sorted(data),
                        allowed=["schema_version", "model"])
    out = {}
    for model, entry in models.items():
        if not isinstance(entry, dict) or set(entry) != set(ROUTER_KEYS) or not all(
                isinstance(entry[k], str) and entry[k] for k in ROUTER_KEYS):
            raise SpecError(f"model {model!r} needs exactly router_dtype and router_bwd_dtype, dtype names",
                            file=str(path), field=f"model.{model}", value=entry, allowed=list(ROUTER_KEYS))
        out[model] = (entry["router_dtype"], entry["router_bwd_dtype"])
    return out


def router_dtypes(model: str, path: Path = ROUTER_DATA) -> tuple[str, str]:
    """(router_dtype, router_bwd_dtype) of a row's `model` (router_dtypes.toml); a model it has no table for is a
    SpecError naming the file and the model."""
    table = router_dtype_table(path)
    if model not in table:
        raise SpecError(f"no router dtypes for model {model!r} (add a [model.{model}] table with router_dtype and "
                        "router_bwd_dtype)", file=str(path), field=f"model.{model}", value=model,
                        allowed=sorted(table))
    return table[model]
