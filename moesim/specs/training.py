"""Training spec: batch, sequence, dtypes, optimizer, ZeRO stage, recomputation, micro-batches.

Precision per tensor class (`dtype_for`): GEMM inputs, attention, working activations (elementwise
ops, tensor- and pipeline-parallel traffic), the output head, dispatch and combine all-to-alls,
activations stored for backward, gradients, parameters, master weights and optimizer states. A
named recipe (`precision_recipe`, moesim/precision_recipes.toml) fills these keys; any key the
scenario sets itself wins over the recipe (the loader merges them, see specs/load.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from moesim.errors import SpecError
from moesim.precision import SCALINGS, scale_bytes_per_element
from moesim.specs.param_overlap import check_param_overlap
from moesim.specs.ranges import check_ranges
from moesim.specs.hardware import DTYPE_BYTES, DTYPES

OPTIMIZERS = ("adam", "adafactor", "sgd")
RECOMPUTE_MODES = ("none", "selective", "full")
# What selective recomputation covers (Megatron-Core --recompute-modules names): the attention core (the default,
# Korthikanti §5), the norms and the MLA up-projections, whose outputs are then not stored (DeepSeek-V3 §3.2.3
# recomputes "all RMSNorm operations and MLA up-projections", not the core: moesim/estimate/selective.py).
# Megatron-LM 23e00ed0 core/transformer/transformer_config.py recompute_modules (l.304-317): all seven ("moe" and
# "shared_experts" since session 21's recompmods2; d98e8a64's gdn_* / gdp_* / mhc are for layer kinds moesim lacks)
RECOMPUTE_MODULES = ("core_attn", "layernorm", "mla_up_proj", "mlp", "moe_act", "moe", "shared_experts")
# What a per-layer CUDA graph captures in training (Megatron-LM --cuda-graph-impl local | transformer_engine with
# --cuda-graph-modules; NVIDIA/Megatron-LM @ d98e8a64 docs/user-guide/features/cuda_graph.md, "--cuda-graph-modules
# options"): attn TransformerLayer._forward_attention, mlp the dense layers' _forward_mlp, moe the MoE layers'
# _forward_mlp (drop-and-pad only), moe_router the router and the shared experts, moe_preprocess MoELayer.preprocess
# (with moe_router). moesim.ops.graphs prices what each captures.
CUDA_GRAPH_MODULES = ("attn", "mlp", "moe", "moe_router", "moe_preprocess")
# Or the whole iteration (--cuda-graph-impl full_iteration, whose --cuda-graph-modules "must be empty": cuda_graph.md's
# table of implementations), alone in the scope; moesim.ops.graphs.FULL_ITERATION prices it.
CUDA_GRAPH_SCOPES = (*CUDA_GRAPH_MODULES, "full_iteration")
PIPELINE_SCHEDULES = ("1f1b", "gpipe", "interleaved", "zb-h1", "zb-v", "dualpipe")  # moesim.des.orders
# The schedules Megatron-Core runs its EP A2A overlap with (training.moe_a2a_overlap; 1f1b at pp 1 only)
A2A_OVERLAP_SCHEDULES = ("interleaved", "1f1b")
DISPATCH_IMPLS = ("index", "dense_einsum")
# The attention core's kernel, for what it keeps for backward (moesim/memory.py attention_activation_bytes):
# "flash" a fused kernel that keeps Q, K, V, O and FP32 softmax statistics (FlashAttention, Dao et al. 2022,
# arXiv 2205.14135 Alg. 2; TransformerEngine 2.11 FusedAttnFunc); "unfused" the score, softmax and dropout
# tensors of Korthikanti et al. §4.1 (a·n² per sequence).
ATTENTION_KERNELS = ("flash", "unfused")
# How an FP8 recipe gives the weight gradient its token-dimension-scaled operands (moesim/precision.py
# `quantise_pass_bytes`): "cast_transpose" TransformerEngine's fused cast-transpose, both copies of a GEMM input
# written in forward and both of an output gradient in backward, each from one read; "requantise" DeepSeek-V3
# §3.5.2: the forward writes the 1x128-tile copy only, the backward reads the input again and re-quantises it
# transposed into 128x1 tiles, and casts the output gradient rowwise and transposed in two kernels.
FP8_TRANSPOSES = ("cast_transpose", "requantise")
# With fp8_weight_cache, how the Dgrad GEMM gets the weight's transposed FP8 copy (moesim/precision.py
# `weight_transpose_bytes`): "cached" both copies written by the per-step cast and held (TE caches the weight's
# rowwise and columnwise usage across micro-batches); "per_micro_batch" one rowwise copy held, transposed in FP8
# before each Dgrad GEMM of every micro-batch (DeepSeek's H800 trace: cuda::batched_transpose, one 128x128 block per
# CTA, no weight cast in the DualPipe pair). Without the cache every micro-batch casts both copies.
FP8_WEIGHT_TRANSPOSES = ("cached", "per_micro_batch")
# The training framework whose resident buffers a GPU step holds beyond model states and activations
# (moesim/memory_peak.py `framework_buffers`): "megatron-te" Megatron-LM with TransformerEngine (TE's dummy
# weight gradients, Megatron's output-layer all-gather buffer: the stack of every GPU run the operator tables and
# the B200 validation come from, hence the default); "none" no such buffers priced (a framework whose buffers no
# source gives, e.g. DeepSeek's HAI-LLM). TPU scenarios price none either way.
FRAMEWORKS = ("megatron-te", "none")
# How the expert all-to-all runs (moesim/collectives/dispatch.py): "nccl" the fastest of NCCL's pairwise
# all-to-all and the two-level (hierarchical) one; "pairwise"; "hierarchical" (Tutel/DeepSpeed 2DH);
# "deepep" DeepEP normal kernels (one copy per destination node over RDMA, NVLink forwarding);
# "deepep_ll" DeepEP low-latency kernels (pure RDMA, one message per selected expert); "hybridep" NVIDIA's HybridEP
# (Megatron-Core moe_flex_dispatcher_backend = "hybridep"): DeepEP's normal-kernel path at its published rates
# (moesim/collectives/hybridep.toml), BF16 dispatch only.
DISPATCH_BACKENDS = ("nccl", "pairwise", "hierarchical", "deepep", "deepep_ll", "hybridep")
# Which expert all-to-all kernels hold SMs while compute runs beside them in an overlapped pair (DualPipe,
# moe_a2a_overlap; moesim/ops/sm_share.py): "deepep" DeepEP's normal kernels only (as shipped); "hybridep" HybridEP's
# kernels too (hybridep.toml [sms]); "nccl" NCCL's all-to-all too (one CTA per p2p channel, nccl_tuning.toml [p2p]).
COMM_SM_SHARES = ("deepep", "hybridep", "nccl")
ZERO_STAGES = (0, 1, 2, 3)
# Where an exponential moving average of the parameters lives: none kept, in device memory (charged with the
# optimizer states, sharded as they are), or in host memory (DeepSeek-V3 §3.2.3: "EMA in CPU", updated
# asynchronously after each step: no device memory and no step time).
EMA_LOCATIONS = ("none", "device", "host")
# Tensor classes `dtype_for` answers (agreed with the operator layer, see the module docstring).
TENSOR_CLASSES = ("gemm", "attention", "activation", "head", "dispatch", "combine", "activation_storage",
                  "grad", "param", "optimizer_state", "master", "compute", "ema")
# Training keys a precision recipe may set (moesim/precision_recipes.toml).
PRECISION_KEYS = ("param_dtype", "compute_dtype", "gemm_dtype", "gemm_scaling", "attention_dtype", "activation_dtype",
                  "grad_dtype", "dispatch_dtype", "combine_dtype", "activation_storage_dtype",
                  "moe_activation_recompute", "optimizer_state_dtype", "master_weights", "fused_cross_entropy",
                  "fp8_weight_cache", "attention_output_storage_bits", "fp8_transpose", "fp8_weight_transpose",
                  "fp8_gemm_param_copy")
# Dtype fields that may be left "" (= derived, see dtype_for).
_DERIVED_DTYPES = ("combine_dtype", "gemm_dtype", "attention_dtype", "activation_dtype", "activation_storage_dtype")
FP8 = "float8"


@dataclass(frozen=True, kw_only=True)
class TrainingSpec:
    """How the model is trained. Batch sizes count sequences; lengths count tokens.

    For an encoder-decoder model `seq_len` is the encoder input length and `decoder_seq_len`
    the target length (T5 span corruption: 512 inputs, 114 targets); 0 takes the model default.
    """

    global_batch_sequences: int
    seq_len: int = 0
    decoder_seq_len: int = 0
    micro_batches: int = 1
    param_dtype: str = "bfloat16"
    compute_dtype: str = "bfloat16"
    grad_dtype: str = "float32"
    dispatch_dtype: str = "bfloat16"  # tokens on their way to the experts (the dispatch all-to-all)
    combine_dtype: str = ""  # expert outputs on their way back (the combine all-to-all); "" = activation dtype
    # A named preset of the precision keys (moesim/precision_recipes.toml), applied under the given keys by the
    # loader and TrainingSpec.with_recipe; the constructor itself only checks the name and records it.
    precision_recipe: str = ""
    gemm_dtype: str = ""  # inputs of every Linear's Fprop/Dgrad/Wgrad GEMM; "" = compute_dtype
    gemm_scaling: str = ""  # FP8 scaling (precision.SCALINGS); "" = per_tensor_delayed for FP8 GEMMs
    attention_dtype: str = ""  # the attention core (QK^T, softmax, AV); "" = activation dtype
    activation_dtype: str = ""  # working activations, tp/pp traffic, norms; "" = compute_dtype, BF16 if that is FP8
    activation_storage_dtype: str = ""  # GEMM inputs kept for the backward pass; "" = activation dtype
    moe_activation_recompute: bool = False  # expert SwiGLU recomputed from its stored input (DeepSeek-V3 §3.3.4)
    # The routing probability multiplies the experts' activation output, act(x)·p, so the gate's gradient comes from
    # the activation's saved input and no expert output is kept (Megatron-LM 23e00ed0 core/transformer/moe/
    # experts.py activation_func_with_probs, every expert implementation); false: p multiplies the expert output
    # in the combine, which keeps that output (GShard / Switch combine einsum).
    moe_probs_in_activation: bool = False
    fused_cross_entropy: bool = False  # CE keeps the logits in their own dtype, not an FP32 softmax (TE fused CE)
    # Megatron-Core's use_transformer_engine_op_fuser: its grouped MLP built from TransformerEngine's fusible ops, which
    # scale and add a biased expert FC2's bias inside TE's GroupedLinear (Megatron-LM core_v0.18.0 moe/experts.py
    # l.269-273 _with_fused_impl); false (Megatron's default): the bias is added after FC2 by TEGroupedMLP._apply_bias,
    # a loop over the local experts (moesim/ops/layer.py expert_bias_op). Read only for GPU megatron-te runs of a
    # model whose experts have biases.
    te_op_fuser: bool = False
    # FP8 GEMMs: keep the FP8 weight copies from the first micro-batch to the optimizer step (memory, one cast
    # per step; TE `is_first_microbatch`), or cast the weights again every micro-batch (time, no memory).
    fp8_weight_cache: bool = True
    fp8_transpose: str = "cast_transpose"  # FP8_TRANSPOSES: how Wgrad's transposed FP8 operands are made
    fp8_weight_transpose: str = "cached"  # FP8_WEIGHT_TRANSPOSES: how Dgrad's transposed FP8 weight is made
    # With fp8_weight_cache: whether a param_dtype copy of the FP8 GEMM weights (the Linears) is held beside the
    # cached FP8 copy (true: Megatron + TE keep their BF16 parameters); false: only the FP32 master (optimizer
    # states) and the FP8 copy, as DeepSeek-V3 arXiv 2412.19437 §3.3.1 states what it holds (FP8 GEMM inputs; master
    # weights, weight gradients and optimizer states in higher precision; BF16/FP32 kept for the embedding, head,
    # gating, norms). The other parameters keep their param_dtype copy either way.
    fp8_gemm_param_copy: bool = True
    # The input of the Linear after attention (the attention output) kept for backward in a format of this many
    # bits per element plus the recipe's scales; 0 = activation_storage_dtype (DeepSeek-V3 §3.3.4: E5M6, 12 bits).
    attention_output_storage_bits: int = 0
    ema_location: str = "none"  # EMA_LOCATIONS
    ema_dtype: str = "float32"  # the EMA copy's dtype (assumption: FP32 when kept; DeepSeek-V3 does not say)
    optimizer: str = "adam"
    optimizer_state_dtype: str = "float32"
    master_weights: bool = True
    zero_stage: int = 0
    recompute: str = "none"
    recompute_modules: tuple[str, ...] = ("core_attn",)  # with recompute = "selective" (RECOMPUTE_MODULES)
    cuda_graph_scope: tuple[str, ...] = ()  # CUDA_GRAPH_MODULES captured per layer, or ("full_iteration",); () none
    # flash: the attention operator is priced as a flash kernel (moesim/ops/attention.py), so the memory side
    # keeps what that kernel keeps; unfused: Korthikanti's score matrix (his Table 2).
    attention_kernel: str = "flash"  # ATTENTION_KERNELS
    framework: str = "megatron-te"  # FRAMEWORKS: whose framework_buffers a GPU step holds
    dropout: bool = True  # dropout masks stored, 1 byte per element (Korthikanti §4.1); false without dropout
    sequence_parallel: bool = True
    pipeline_schedule: str = "1f1b"
    # Megatron-Core's EP A2A overlap (overlap_moe_expert_parallel_comm with delay_wgrad_compute; Megatron-Bridge's
    # moe_a2a_overlap): the interleaved schedule's steady state runs each forward chunk with another micro-batch's
    # backward chunk, one's expert all-to-alls under the other's compute (megatron/core/models/common/
    # model_chunk_schedule_plan.py TransformerLayerSchedulePlan.run, priced in that order: moesim.estimate.a2a_order);
    # interleaved, or 1f1b at pp 1 (Megatron's combined_1f1b_schedule_for_no_pipelining; moesim.des.orders); ep > 1.
    moe_a2a_overlap: bool = False
    overlap_grad_reduce: bool = True
    # Megatron-Core's --overlap-param-gather (default False: arguments.py; every Megatron-Bridge recipe sets it,
    # recipes/common.py l.84 @ 067f987d): ZeRO >= 1's parameter all-gathers dispatched ahead of the next forward, a
    # layer's forward waiting on its bucket's (moesim/estimate/param_gather.py); needs overlap_grad_reduce.
    overlap_param_gather: bool = False
    # Megatron-LM's --overlap-param-gather-with-optimizer-step (interleaved only): each stage's chunk 0 gathers
    # dispatched right after its own optimizer step (estimate/param_gather.py; checks: specs/param_overlap.py)
    overlap_param_gather_with_optimizer_step: bool = False
    # Megatron-LM DDP's passes over every gradient buffer before the data-parallel reduction (core/distributed/
    # param_and_grad_buffer.py _ParamAndGradBucketGroup.start_grad_sync): check_grads' L2 norm (check_for_nan_in_grad,
    # on unless --no-check-for-nan-in-loss-and-grad) and, unless --ddp-average-in-collective, the 1/(dp·cp) pre-scale.
    grad_nan_check: bool = True
    grad_average_in_collective: bool = False
    dispatch_impl: str = "index"
    dispatch_backend: str = "nccl"
    comm_sm_share: str = "deepep"  # COMM_SM_SHARES; "deepep" is the shipped default (docs/collectives-history.md
    # "Session 22 (smshare2)": the NCCL figure rests on a channel count NCCL's topology search sets, not modelled)
    # The SMs the run gives DeepEP's normal / HybridEP's kernels (Megatron-Core moe_flex_dispatcher_num_sms, earlier
    # moe_deepep_num_sms / moe_hybridep_num_sms); None: the data files' figure (deepep.toml, hybridep.toml [sms]).
    a2a_kernel_sms: int | None = None
    capacity_factor: float | None = None  # None: the model's train capacity factor
    # Share of HBM left unused for allocator fragmentation: an assumption, no measured figure stored (usable =
    # hbm × (1 − this); the profile's memory_reserved_gib is charged inside the total on top of it).
    memory_headroom_fraction: float = 0.05
    # A limit the job must keep under, in GiB per device (another process's share, an operator's margin); None: none
    memory_limit_gib: float | None = None

    def __post_init__(self) -> None:
        check_ranges(self)
        for name in ("global_batch_sequences", "micro_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"must be an integer >= 1, got {value!r}", field=f"training.{name}", value=value)
        for name in ("seq_len", "decoder_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SpecError(f"must be an integer >= 0, got {value!r}", field=f"training.{name}", value=value)
        for name in ("param_dtype", "compute_dtype", "grad_dtype", "dispatch_dtype", "optimizer_state_dtype", "ema_dtype") \
                + _DERIVED_DTYPES:
            if getattr(self, name) not in DTYPES and not (name in _DERIVED_DTYPES and getattr(self, name) == ""):
                raise SpecError(f"unknown dtype '{getattr(self, name)}'", field=f"training.{name}",
                                value=getattr(self, name), allowed=DTYPES)
        if self.gemm_scaling not in SCALINGS + ("",):
            raise SpecError(f"unknown FP8 scaling '{self.gemm_scaling}'", field="training.gemm_scaling",
                            value=self.gemm_scaling, allowed=SCALINGS)
        if self.dtype_for("gemm") == FP8 and self.gemm_scaling == "none":
            raise SpecError("FP8 GEMMs need a scaling", field="training.gemm_scaling", value="none",
                            allowed=SCALINGS[1:])
        if self.precision_recipe:
            from moesim.precision import recipe_values  # the recipe names are data; check the name is known

            recipe_values(self.precision_recipe)
        checks = (("optimizer", OPTIMIZERS), ("recompute", RECOMPUTE_MODES),
                  ("pipeline_schedule", PIPELINE_SCHEDULES), ("dispatch_impl", DISPATCH_IMPLS),
                  ("dispatch_backend", DISPATCH_BACKENDS), ("comm_sm_share", COMM_SM_SHARES),
                  ("zero_stage", ZERO_STAGES), ("ema_location", EMA_LOCATIONS),
                  ("attention_kernel", ATTENTION_KERNELS), ("framework", FRAMEWORKS),
                  ("fp8_transpose", FP8_TRANSPOSES), ("fp8_weight_transpose", FP8_WEIGHT_TRANSPOSES))
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise SpecError(f"'{getattr(self, name)}' is not allowed", field=f"training.{name}",
                                value=getattr(self, name), allowed=allowed)
        check_param_overlap(self)  # overlap_param_gather and its with_optimizer_step (Megatron's asserts)
        if self.moe_a2a_overlap and self.pipeline_schedule not in A2A_OVERLAP_SCHEDULES:
            # Megatron-LM d98e8a64 transformer_config.py l.3007-3011: at pp > 1 the overlap needs virtual stages; at
            # pp 1 schedules.py l.778 runs combined_1f1b_schedule_for_no_pipelining (1f1b here, pp 1: the layout check)
            raise SpecError("moe_a2a_overlap runs with Megatron's interleaved schedule, or 1f1b at pp 1",
                            field="training.pipeline_schedule", value=self.pipeline_schedule,
                            allowed=A2A_OVERLAP_SCHEDULES)
        if self.moe_a2a_overlap and self.recompute == "full":
            # Megatron-LM d98e8a64 transformer_config.py l.3021-3023: "disable full recomputation when enabling
            # overlap_moe_expert_parallel_comm"
            raise SpecError("moe_a2a_overlap cannot run with full recomputation (Megatron-Core asserts it)",
                            field="training.recompute", value=self.recompute, allowed=("none", "selective"))
        if self.fp8_weight_transpose == "per_micro_batch" and self.fp8_scaling == "mxfp8":
            raise SpecError("MXFP8's 1x32 weight blocks cannot be transposed in FP8 (the columnwise copy is a cast)",
                            field="training.fp8_weight_transpose", value=self.fp8_weight_transpose,
                            allowed=("cached",))
        if not self.fp8_gemm_param_copy and (self.dtype_for("gemm") != FP8 or not self.fp8_weight_cache):
            raise SpecError("dropping the param_dtype copy of the GEMM weights needs FP8 GEMMs that read a cached FP8 "
                            "copy (gemm_dtype = float8, fp8_weight_cache = true): otherwise the GEMMs read that copy",
                            field="training.fp8_gemm_param_copy", value=False, allowed=("true",))
        object.__setattr__(self, "cuda_graph_scope", tuple(self.cuda_graph_scope))  # a list from a file
        for module in self.cuda_graph_scope:
            if module not in CUDA_GRAPH_SCOPES or self.cuda_graph_scope.count(module) > 1:
                raise SpecError(f"'{module}' is not allowed (or given twice)", field="training.cuda_graph_scope",
                                value=list(self.cuda_graph_scope), allowed=CUDA_GRAPH_SCOPES)
        if "full_iteration" in self.cuda_graph_scope and len(self.cuda_graph_scope) > 1:
            # cuda_graph.md: full_iteration "one graph per training iteration; --cuda-graph-modules must be empty"
            raise SpecError("a whole-iteration CUDA graph captures every module: give full_iteration alone "
                            "(Megatron-LM cuda_graph.md)", field="training.cuda_graph_scope",
                            value=list(self.cuda_graph_scope), allowed=[["full_iteration"], list(CUDA_GRAPH_MODULES)])
        if "moe_preprocess" in self.cuda_graph_scope and "moe_router" not in self.cuda_graph_scope:
            # cuda_graph.md: "moe_preprocess | MoELayer.preprocess() — must be paired with moe_router"
            raise SpecError("moe_preprocess must be captured with moe_router (Megatron-LM cuda_graph.md)",
                            field="training.cuda_graph_scope", value=list(self.cuda_graph_scope),
                            allowed=CUDA_GRAPH_MODULES)
        if "moe" in self.cuda_graph_scope and "moe_router" in self.cuda_graph_scope:
            # Megatron-LM d98e8a64 transformer_config.py l.2817-2820: "cuda_graph_modules must not contain both moe and
            # moe_router" (the moe graph holds the router already)
            raise SpecError("moe and moe_router cannot both be captured: the moe graph holds the router (Megatron-LM "
                            "transformer_config.py)", field="training.cuda_graph_scope",
                            value=list(self.cuda_graph_scope), allowed=[["moe"], ["moe_router", "moe_preprocess"]])
        if self.recompute == "full" and self.cuda_graph_scope and "full_iteration" not in self.cuda_graph_scope:
            # Megatron-LM d98e8a64 transformer_config.py l.2854-2858: "full recompute is only supported with full
            # iteration CUDA graph"
            raise SpecError("full recomputation runs with per-layer CUDA graphs only as a whole-iteration graph "
                            "(Megatron-LM transformer_config.py): use recompute none / selective, or cuda_graph_scope "
                            "= [\"full_iteration\"]", field="training.recompute", value=self.recompute,
                            allowed=("none", "selective"))
        object.__setattr__(self, "recompute_modules", tuple(self.recompute_modules))  # a list from a file
        for module in self.recompute_modules:
            if module not in RECOMPUTE_MODULES:
                raise SpecError(f"'{module}' is not allowed", field="training.recompute_modules", value=module,
                                allowed=RECOMPUTE_MODULES)
        if "moe_act" in self.recompute_modules and self.moe_activation_recompute:
            raise SpecError("moe_act (Megatron's recompute module: routed experts, BF16 input kept) and "
                            "moe_activation_recompute (DeepSeek-V3 §3.3.4: FP8 input, shared experts too) both "
                            "recompute the expert activation: choose one", field="training.recompute_modules",
                            value=list(self.recompute_modules),
                            allowed=[m for m in RECOMPUTE_MODULES if m != "moe_act"])
        layer_checkpoint = self.recompute == "selective" and "moe" in self.recompute_modules
        if layer_checkpoint and self.moe_a2a_overlap:
            # Megatron-LM d98e8a64 models/gpt/fine_grained_callables.py l.125-216 (23e00ed0 l.358-429): the EP A2A
            # overlap calls the MoE layer's pieces itself, so MoELayer.forward's checkpoint (moe_layer.py l.701) never
            # runs: "moe" would be listed and not done
            raise SpecError("the moe recompute module does not run under moe_a2a_overlap (Megatron's overlap calls "
                            "the MoE layer's pieces, not its checkpointed forward)", field="training.recompute_modules",
                            value=list(self.recompute_modules), allowed=[m for m in RECOMPUTE_MODULES if m != "moe"])
        if layer_checkpoint and "moe_router" in self.cuda_graph_scope:
            # Megatron-LM d98e8a64 transformer_config.py l.2861-2870: "moe recompute is not supported with moe_router
            # CUDA graph" (transformer_engine graphs; a recompute module must not cover a graph's scope)
            raise SpecError("the moe recompute module cannot run with the moe_router CUDA graph (Megatron-LM "
                            "transformer_config.py)", field="training.cuda_graph_scope",
                            value=list(self.cuda_graph_scope),
                            allowed=[m for m in CUDA_GRAPH_MODULES if m not in ("moe_router", "moe_preprocess")])
        graphed_moe = "moe" in self.cuda_graph_scope or "full_iteration" in self.cuda_graph_scope
        if layer_checkpoint and graphed_moe and self.dropout:
            # Megatron-LM d98e8a64 transformer_config.py l.2884-2897: "hidden dropout is not supported with graphed
            # MLP/MoE recomputation" (a graphed recompute takes no random numbers)
            raise SpecError("the moe recompute module inside a CUDA graph needs dropout off (Megatron-LM "
                            "transformer_config.py)", field="training.dropout", value=self.dropout, allowed=[False])
        delayed = [m for m in ("moe_act", "layernorm") if m in self.recompute_modules]
        if delayed and self.fp8_scaling == "per_tensor_delayed":
            # Megatron-LM 23e00ed0 transformer_config.py l.916: "Delayed scaling does not support moe_act and
            # layernorm recompute for fp8" (their discarded outputs are FP8 GEMM inputs re-quantised in backward)
            raise SpecError(f"{' and '.join(delayed)} recompute does not run with FP8 delayed scaling (Megatron-LM "
                            "transformer_config.py)", field="training.gemm_scaling", value=self.fp8_scaling,
                            allowed=[s for s in SCALINGS if s not in ("none", "per_tensor_delayed")])
        if not self.recompute_modules:  # core_attn may be left out: DeepSeek-V3 §3.2.3 recomputes norms and MLA only
            raise SpecError("selective recomputation needs at least one module", field="training.recompute_modules",
                            value=[], allowed=RECOMPUTE_MODULES)
        if self.capacity_factor is not None and self.capacity_factor <= 0:
            raise SpecError("capacity_factor must be > 0", field="training.capacity_factor",
                            value=self.capacity_factor)
        if not 0 <= self.memory_headroom_fraction < 1:
            raise SpecError("memory_headroom_fraction must be in [0, 1)", field="training.memory_headroom_fraction",
                            value=self.memory_headroom_fraction)

    def check_a2a_kernel_sms(self, hardware_name: str, sm_count: int | None, file: str | None = None) -> None:
        """Raise unless a2a_kernel_sms (where set) leaves SMs to compute on a chip of `sm_count` SMs (None: no SM
        count, nothing to check): the overlapped pair prices compute at (SMs − these) / SMs (moesim.ops.sm_share)."""
        if self.a2a_kernel_sms is not None and sm_count is not None and self.a2a_kernel_sms >= sm_count:
            raise SpecError(f"{self.a2a_kernel_sms} SMs for the all-to-all's kernels leave none of {hardware_name}'s "
                            f"{sm_count} to compute", file=file, field="training.a2a_kernel_sms",
                            value=self.a2a_kernel_sms, allowed=f"1 .. {sm_count - 1}")

    def refused_recompute_modes(self) -> dict[str, str]:
        """{mode: why} for the recompute modes this spec's other options refuse (Megatron-LM's checks in
        __post_init__: full recomputation under moe_a2a_overlap or per-layer CUDA graphs; the moe module with the
        moe_router graph), so that the search and its closest-miss levers do not rank or suggest them."""
        out = {}
        for mode in RECOMPUTE_MODES:
            try:
                replace(self, recompute=mode)
            except SpecError as err:
                out[mode] = err.message
        return out

    @classmethod
    def with_recipe(cls, **keys) -> "TrainingSpec":
        """A TrainingSpec from `keys`, the precision keys of `keys["precision_recipe"]` (if any) filled in
        underneath: a key given here wins over the recipe's."""
        name = keys.get("precision_recipe") or ""
        if name:
            from moesim.precision import recipe_values

            keys = {**recipe_values(name), **keys}
        return cls(**keys)

    def dtype_for(self, cls: str) -> str:
        """The dtype of tensor class `cls` (TENSOR_CLASSES), derived keys resolved.

        activation: activation_dtype, else compute_dtype, BF16 when that is FP8 (no recipe runs
        elementwise ops in FP8: wave2.md §6.1, DeepSeek-V3 §3.3). gemm: gemm_dtype, else compute_dtype.
        attention, head (output projection and embedding: BF16 in DeepSeek-V3 §3.3 and Megatron, whose
        output layer is not a TE layer), combine and activation_storage default to the activation dtype.
        master: FP32 with master weights below 32 bits, else the parameter dtype."""
        if cls not in TENSOR_CLASSES:
            raise SpecError(f"unknown tensor class '{cls}'", field="dtype_for", value=cls, allowed=TENSOR_CLASSES)
        if cls == "activation":
            return self.activation_dtype or ("bfloat16" if self.compute_dtype == FP8 else self.compute_dtype)
        if cls == "gemm":
            return self.gemm_dtype or self.compute_dtype
        if cls == "head":
            return self.dtype_for("activation")
        if cls == "master":
            return "float32" if self.master_weights and DTYPE_BYTES[self.param_dtype] < 4 else self.param_dtype
        if cls in ("attention", "combine", "activation_storage"):
            return getattr(self, f"{cls}_dtype") or self.dtype_for("activation")
        return getattr(self, f"{cls}_dtype")

    @property
    def fp8_scaling(self) -> str:
        """The FP8 scaling scheme of the GEMM inputs (and of every other FP8 tensor): "none" without FP8 GEMMs."""
        if self.dtype_for("gemm") != FP8:
            return "none"
        return self.gemm_scaling or "per_tensor_delayed"

    def usable_memory_bytes(self, hbm_bytes: float) -> float:
        """Memory per device a layout may fill: HBM x (1 - memory_headroom_fraction), at most memory_limit_gib."""
        usable = hbm_bytes * (1 - self.memory_headroom_fraction)
        return usable if self.memory_limit_gib is None else min(usable, self.memory_limit_gib * 2**30)

    def bytes_of(self, which: str) -> int:
        """Bytes per element of tensor class `which` (TENSOR_CLASSES; "compute" is compute_dtype itself)."""
        return DTYPE_BYTES[self.dtype_for(which)]

    @property
    def attention_output_storage_bytes(self) -> float:
        """Bytes per element of the attention output kept for the output projection's backward: bits/8 plus
        the recipe's FP8 scales (DeepSeek-V3 §3.3.4: E5M6, 1×128 tiles, power-of-two scales), else
        element_bytes("activation_storage")."""
        if not self.attention_output_storage_bits:
            return self.element_bytes("activation_storage")
        return self.attention_output_storage_bits / 8 + scale_bytes_per_element(self.fp8_scaling)

    def element_bytes(self, which: str) -> float:
        """Bytes per element of class `which` with its FP8 scales: 1 + s for an FP8 tensor (s from
        precision.scale_bytes_per_element of the recipe's scaling; DeepEP's FP8 dispatch sends
        hidden + hidden/128·4 bytes per token, wave2.md §3.1), else the dtype's bytes."""
        q = self.bytes_of(which)
        if self.dtype_for(which) == FP8 and self.fp8_scaling != "none":
            return q + scale_bytes_per_element(self.fp8_scaling)
        return float(q)
