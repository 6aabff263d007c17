"""Scenario spec: a model on a system with a training set-up and, optionally, a layout."""

from __future__ import annotations

from dataclasses import dataclass, field

from moesim.errors import SpecError
from moesim.precision import SCALINGS
from moesim.specs.hardware import HardwareProfile
from moesim.specs.layout import Layout, a2a_overlap_problems, layout_problems, resolve_layout
from moesim.specs.model import ModelSpec
from moesim.specs.ranges import MAX_TOKENS_PER_STEP, check_ranges
from moesim.specs.training import CUDA_GRAPH_MODULES, TrainingSpec

# What a dropless MoE model may capture per layer (not the whole MoE layer: Megatron-LM cuda_graph.md, "moe" is
# drop-and-pad only)
DROPLESS_GRAPH_MODULES = [m for m in CUDA_GRAPH_MODULES if m != "moe"]
MXFP8_ARCH = "blackwell"  # the GPU architecture (specs.hardware.NCCL_ARCHS) TransformerEngine runs MXFP8 GEMMs on


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """What a layout search may vary beyond the parallel degrees (empty = scenario's own value)."""

    capacity_factors: tuple[float, ...] = ()
    zero_stages: tuple[int, ...] = (0, 1, 2, 3)
    recompute_modes: tuple[str, ...] = ("none", "selective", "full")
    max_micro_batches: int = 64
    orders: tuple[tuple[str, ...], ...] = ()
    pipeline_schedules: tuple[str, ...] = ()  # empty: the training's own schedule
    virtual_stages: tuple[int, ...] = (2, 4, 8)  # vp choices of the interleaved schedule (others: vp = 1)
    context_parallel: tuple[int, ...] = (1,)  # cp degrees
    cp_comms: tuple[str, ...] = ("p2p",)  # cp variants tried where cp > 1
    # degrees a user fixes (a checkpoint's tp, a pipeline the framework runs); empty: every divisor the devices allow
    tensor_parallel: tuple[int, ...] = ()
    pipeline_parallel: tuple[int, ...] = ()
    expert_parallel: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Everything one estimate needs. `layout` is None when the scenario leaves it to the defaults."""

    name: str
    model: ModelSpec
    hardware: HardwareProfile
    devices: int
    training: TrainingSpec
    layout_given: dict = field(default_factory=dict)
    search: SearchSpace = field(default_factory=SearchSpace)
    description: str = ""
    source: str = ""
    file: str = ""
    nccl_version: str = ""  # [system] nccl_version: the NCCL release its collectives are priced at ("": today's)

    def __post_init__(self) -> None:
        check_ranges(self, file=self.file or None)
        try:
            self.hardware.check_devices(self.devices)
        except SpecError as err:
            raise err.in_file(self.file) if self.file else err
        if "mla_up_proj" in self.training.recompute_modules and self.model.attention.kind != "mla":
            raise SpecError(f"recomputing MLA up-projections needs an MLA model ('{self.model.name}' has "
                            f"{self.model.attention.kind} attention)", file=self.file or None,
                            field="training.recompute_modules", value="mla_up_proj")
        moe = self.model.moe
        if "moe_act" in self.training.recompute_modules and moe is None:
            # Megatron-LM 23e00ed0 moe/experts.py l.804-806: the routed experts' (grouped) MLP only
            raise SpecError(f"moe_act recomputes the routed experts' activation: '{self.model.name}' has no MoE "
                            "layers", file=self.file or None, field="training.recompute_modules", value="moe_act")
        if "moe" in self.training.recompute_modules and moe is None:
            # Megatron-LM 23e00ed0 moe/moe_layer.py l.115-117: the checkpoint is MoELayer's own
            raise SpecError(f"moe recomputes MoE layers: '{self.model.name}' has no MoE layers",
                            file=self.file or None, field="training.recompute_modules", value="moe")
        if "shared_experts" in self.training.recompute_modules and not (moe and moe.num_shared_experts):
            # Megatron-LM 23e00ed0 moe/moe_layer.py l.118-121, l.204-220: the MoE layer's shared experts only
            raise SpecError(f"shared_experts recomputes the shared experts: '{self.model.name}' has none",
                            file=self.file or None, field="training.recompute_modules", value="shared_experts")
        if "mlp" in self.training.recompute_modules and self.model.num_moe_layers == self.model.num_layers:
            # Megatron-LM 23e00ed0 transformer_layer.py l.425-427: "mlp" checkpoints dense MLPs, not an MoELayer
            raise SpecError(f"mlp recomputes dense MLP layers: every layer of '{self.model.name}' is an MoE layer "
                            "(recompute the experts' activation with moe_act)", file=self.file or None,
                            field="training.recompute_modules", value="mlp")
        self._check_mxfp8()
        self._check_gemm_peak()
        self.training.check_a2a_kernel_sms(self.hardware.name, self.hardware.chip.sm_count, self.file or None)
        if self.training.cuda_graph_scope and self.hardware.device_kind != "gpu":
            raise SpecError(f"CUDA graphs run on GPUs; hardware '{self.hardware.name}' is a "
                            f"{self.hardware.device_kind}", file=self.file or None, field="training.cuda_graph_scope",
                            value=list(self.training.cuda_graph_scope), allowed="[] (none) off a GPU")
        if self.training.cuda_graph_scope:
            self._check_graph_modules()
        if "moe" in self.training.cuda_graph_scope and moe is not None and moe.dropless \
                and self.training.capacity_factor is None:
            # Megatron-LM cuda_graph.md: "moe | _forward_mlp() for MoE layers (drop-and-pad only)"
            raise SpecError("a CUDA graph of the whole MoE layer needs drop-and-pad routing (Megatron-LM "
                            "cuda_graph.md); this model is dropless: capture moe_router / moe_preprocess instead",
                            file=self.file or None, field="training.cuda_graph_scope",
                            value=list(self.training.cuda_graph_scope), allowed=DROPLESS_GRAPH_MODULES)
        if "full_iteration" in self.training.cuda_graph_scope and moe is not None and moe.dropless \
                and self.training.capacity_factor is None and self.training.dispatch_backend != "hybridep":
            # static shapes: HybridEP's budget (Megatron-LM token_dispatcher.py, moe_expert_rank_capacity_factor:
            # without it "HybridEP sizes buffers dynamically (CPU sync in dispatch)"); cuda_graph.md's MoE example
            raise SpecError("a whole-iteration CUDA graph of a dropless MoE model needs static dispatch shapes, "
                            "which Megatron-LM gets from HybridEP's capacity budget (cuda_graph.md): set "
                            "training.dispatch_backend = \"hybridep\" or capture per layer",
                            file=self.file or None, field="training.cuda_graph_scope",
                            value=list(self.training.cuda_graph_scope), allowed=DROPLESS_GRAPH_MODULES)
        if moe is not None and moe.router_impl and self.hardware.device_kind != "gpu":
            # the named implementation's kernels are CUDA launches (moesim/ops/mcore_moe.toml); XLA has none
            raise SpecError(f"names a GPU framework's kernels, but hardware '{self.hardware.name}' is a "
                            f"{self.hardware.device_kind}", file=self.file or None, field="moe.router_impl",
                            value=moe.router_impl, allowed="a GPU hardware profile")
        if self.model.architecture == "encoder_decoder" and not self.seq_lens[1]:
            raise SpecError("an encoder-decoder model needs decoder_seq_len", file=self.file or None,
                            field="training.decoder_seq_len")
        tokens = self.training.global_batch_sequences * sum(self.seq_lens)
        if tokens > MAX_TOKENS_PER_STEP:
            raise SpecError(f"{tokens:.3g} tokens per step is out of range", file=self.file or None,
                            field="training.global_batch_sequences", value=self.training.global_batch_sequences,
                            allowed=f"global_batch_sequences x sequence length <= 2^40 tokens")

    def _check_mxfp8(self) -> None:
        """MXFP8 GEMMs need Blackwell (compute capability 10.x): TransformerEngine refuses them on an older GPU. The
        profile's GPU architecture is its levels' nccl_arch (NCCL's tuner indexes its tables by it); a GPU profile
        that states none is not refused."""
        if self.training.fp8_scaling != "mxfp8" or self.hardware.device_kind != "gpu":
            return
        arch = self.hardware.gpu_arch
        if arch and arch != MXFP8_ARCH:
            # NVIDIA/TransformerEngine @ d0067d0d transformer_engine/pytorch/quantization.py l.162-168: "Device compute
            # capability 10.0 or higher required for MXFP8 execution"
            raise SpecError(f"MXFP8 GEMMs run on Blackwell GPUs only (TransformerEngine: compute capability 10.0 or "
                            f"higher); hardware '{self.hardware.name}' is {arch}", file=self.file or None,
                            field="training.gemm_scaling", value="mxfp8",
                            allowed=[s for s in SCALINGS if s not in ("none", "mxfp8")])

    def _check_gemm_peak(self) -> None:
        """The GEMM dtype needs a peak on the chip (HardwareProfile.peak_for): said as the scenario's key that chose
        it, with its file, not as the profile's field from inside the estimate (an FP8 recipe on an A100)."""
        dtype, tr = self.training.dtype_for("gemm"), self.training
        try:
            self.hardware.chip.peak_for(dtype)
        except SpecError as err:
            key = "precision_recipe" if tr.precision_recipe else "gemm_dtype" if tr.gemm_dtype else "compute_dtype"
            value = getattr(tr, key)
            raise SpecError(f"GEMMs in {dtype} ({key} = {value!r}) need a {dtype} peak, and hardware "
                            f"'{self.hardware.name}' states none", file=self.file or None, field=f"training.{key}",
                            value=value, allowed=f"GEMM dtypes with a peak on {self.hardware.name}: "
                                                 + ", ".join(map(str, err.allowed or ()))) from None

    def _check_graph_modules(self) -> None:
        """Megatron-LM's refusals of per-layer CUDA graph modules the model has no layer for."""
        from moesim.ops.graphs import MOE_ONLY  # here: numpy stays out of `moesim --help`

        scope = self.training.cuda_graph_scope
        moe_graphs = [m for m in scope if m in MOE_ONLY]
        if moe_graphs and self.model.moe is None:
            # Megatron-LM d98e8a64 transformer_config.py l.2825-2829: "moe cuda graph is only supported for MoE"
            verb = "captures" if len(moe_graphs) == 1 else "capture"
            raise SpecError(f"{', '.join(moe_graphs)} {verb} MoE layers: '{self.model.name}' has none (Megatron-LM "
                            "transformer_config.py)", file=self.file or None, field="training.cuda_graph_scope",
                            value=list(scope),
                            allowed=[m for m in CUDA_GRAPH_MODULES if m not in MOE_ONLY] + ["full_iteration"])
        if "mlp" in scope and self.model.num_moe_layers == self.model.num_layers:
            # Megatron-LM d98e8a64 transformer_config.py l.2831-2837: "mlp cuda graph is only supported for dense
            # layers, but not found in the model"
            raise SpecError(f"mlp captures dense MLP layers: every layer of '{self.model.name}' is an MoE layer "
                            "(capture the MoE layers with moe_router, or moe where drop-and-pad; Megatron-LM "
                            "transformer_config.py)", file=self.file or None, field="training.cuda_graph_scope",
                            value=list(scope),
                            allowed=[m for m in CUDA_GRAPH_MODULES if m != "mlp"] + ["full_iteration"])

    @property
    def seq_lens(self) -> tuple[int, int]:
        """(encoder or decoder-only length, decoder target length; 0 for decoder-only), in tokens."""
        seq = self.training.seq_len or self.model.default_seq_len
        if self.model.architecture != "encoder_decoder":
            return seq, 0
        return seq, self.training.decoder_seq_len or self.model.default_decoder_seq_len

    def resolve(self, given: dict | None = None, *, source: str = "layout") -> Layout:
        """The layout from `given` (else the scenario's own), defaults filled, checked; raises SpecError."""
        given = self.layout_given if given is None else given
        moe = self.model.moe
        try:
            layout = resolve_layout(given, devices=self.devices, num_experts=moe.num_experts if moe else 1,
                                    source=source)
        except SpecError as err:  # a degree of the file's [layout] out of range: the file's error
            raise (err.in_file(self.file) if self.file else err) from None
        self.check(layout, source=source)
        return layout

    def check(self, layout: Layout, *, source: str = "layout", micro_batches: int | None = None,
              training=None) -> None:
        """Raise a SpecError listing every reason `layout` cannot run this scenario (with `micro_batches`
        per step and `training`'s batch and pipeline schedule, defaults the scenario's)."""
        problems = self.problems(layout, micro_batches, training)
        if problems:
            raise SpecError("impossible layout: " + "; ".join(problems), file=self.file or None, field=source,
                            value=layout.describe())

    def problems(self, layout: Layout, micro_batches: int | None = None, training=None) -> list[str]:
        training = training or self.training
        moe = self.model.moe
        att = self.model.attention
        overlap = a2a_overlap_problems(training.moe_a2a_overlap, training.pipeline_schedule, layout.pp, layout.ep)
        return layout_problems(
            layout, devices=self.devices, num_experts=moe.num_experts if moe else 1,
            num_heads=att.num_heads, num_kv_heads=att.num_kv_heads, d_ff=self.model.d_ff,
            expert_d_ff=moe.expert_d_ff if moe else self.model.d_ff, num_layers=self.model.num_layers,
            global_batch_sequences=training.global_batch_sequences,
            micro_batches=micro_batches or training.micro_batches,
            schedule=training.pipeline_schedule, seq_len=self.seq_lens[0], mtp_depth=self.model.mtp_depth,
        ) + overlap  # last, as the search's order has them (moesim.search.enumerate.REASONS)
