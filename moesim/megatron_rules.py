"""Megatron-LM's own layout refusals (23e00ed0), which the search applies where a scenario runs
training.framework = "megatron-te" on GPUs, and which an explicit layout (`estimate --layout`, `simulate`) is warned
of: it is priced as given. Outside moesim.search so that `moesim estimate` does not import the search."""

from __future__ import annotations


# The training.framework whose refusals the search applies (GPU scenarios only), and the backends whose flex
# dispatcher asserts tp·ep > 1: DeepEP's kernels. Not HybridEP: Megatron-LM d98e8a64 token_dispatcher.py l.1835-1836
# asserts it for moe_flex_dispatcher_backend "deepep" (and "ncclep") only, its "hybridep" branch (l.1845) does not.
MEGATRON_FRAMEWORK = "megatron-te"
DEEPEP_BACKENDS = ("deepep", "deepep_ll")

# Rule name: reason text, in the order megatron_fails lists them (search.enumerate.REASONS holds them in its order).
MEGATRON_REASONS = {
    "megatron_query_groups_not_divisible_by_tp":
        "num_kv_heads % tp != 0 (Megatron-LM 23e00ed0 transformer_config.py l.696 raises: no kv-head replication)",
    "megatron_moe_tp_needs_sequence_parallel":
        "MoE, tp > 1, sequence_parallel false (Megatron-LM 23e00ed0 moe_layer.py l.258 raises; the search prices the "
        "scenario's SP for every layout: set it true for tp > 1)",
    "megatron_flex_dispatcher_needs_etp_ep_above_1":
        "etp·ep = 1 with dispatch_backend deepep (Megatron-LM 23e00ed0 token_dispatcher.py l.1163 asserts in flex, "
        "its only DeepEP path)",
    "megatron_a2a_overlap_needs_ep_above_1":
        "ep = 1 with training.moe_a2a_overlap (Megatron-LM d98e8a64 transformer_config.py l.3013-3015 asserts "
        "expert_model_parallel_size > 1 for overlap_moe_expert_parallel_comm)",
}


def runs_megatron_te(framework: str, device_kind: str) -> bool:
    """Whether a run is Megatron-LM + TransformerEngine: training.framework = "megatron-te" on GPUs (not framework
    "none", e.g. DeepSeek's HAI-LLM, nor TPU scenarios, whose framework key is not read)."""
    return framework == MEGATRON_FRAMEWORK and device_kind == "gpu"


# The GPU architecture (specs.hardware.NCCL_ARCHS) on which TransformerEngine v2.14 runs a GroupedLinear's GEMMs as one
# cuBLASLt GEMM per local expert: general_grouped_gemm (pytorch/module/grouped_linear.py l.207 / l.411) ->
# nvte_multi_tensor_gemm (pytorch/csrc/extensions/gemm.cpp l.603) -> multi_stream_cublas_gemm (common/gemm/
# cublaslt_gemm.cu l.969-1010) unless NVTE_USE_CUTLASS_GROUPED_GEMM is set (default false; BF16 / FP16 only,
# l.1051-1110); cuBLASLt's grouped GEMM needs SM100 (cublaslt_grouped_gemm.cu l.304), so Blackwell keeps one kernel.
TE_GEMM_LOOP_ARCH = "hopper"


def te_expert_gemm_loop(framework: str, device_kind: str, gpu_arch: str) -> bool:
    """Whether a run's routed-expert GEMMs are TE's loop of per-expert cuBLAS GEMMs (TE_GEMM_LOOP_ARCH): Megatron-LM +
    TransformerEngine (runs_megatron_te) on a Hopper profile (HardwareProfile.gpu_arch); not DeepSeek's own framework
    (framework "none": DeepGEMM's grouped kernels), not Blackwell (cuBLASLt's grouped GEMM)."""
    return runs_megatron_te(framework, device_kind) and gpu_arch == TE_GEMM_LOOP_ARCH


def megatron_rules(scenario) -> bool:
    """Whether the search applies Megatron-LM's own layout refusals (runs_megatron_te)."""
    return runs_megatron_te(scenario.training.framework, scenario.hardware.device_kind)


def megatron_fails(scenario, g: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Megatron-LM's four refusals (MEGATRON_REASONS, in order) for each combination of g's tp / ep /
    etp; the first three all False where megatron_rules does not apply."""
    tp, moe = g["tp"], scenario.model.moe
    megatron = megatron_rules(scenario)
    megatron_moe = bool(moe) and megatron
    deepep = scenario.training.dispatch_backend in DEEPEP_BACKENDS
    return [
        # Megatron-LM 23e00ed0 transformer_config.py l.696: `num_query_groups % tensor_model_parallel_size != 0`
        (scenario.model.attention.num_kv_heads % tp != 0) & megatron,
        # Megatron-LM 23e00ed0 moe_layer.py l.258: `attn_tp_group.size() > 1 and not config.sequence_parallel`
        (tp > 1) & (megatron_moe and not scenario.training.sequence_parallel),
        # Megatron-LM 23e00ed0 token_dispatcher.py l.1163: `assert self.tp_size * self.ep_size > 1` (expert tp)
        (g["etp"] * g["ep"] == 1) & (megatron_moe and deepep),
        # Megatron-LM d98e8a64 transformer_config.py l.3013-3015: `assert self.expert_model_parallel_size > 1` under
        # overlap_moe_expert_parallel_comm (the overlap is Megatron-Core's own: refused whatever the framework)
        (g["ep"] == 1) & bool(moe and scenario.training.moe_a2a_overlap),
    ]


def megatron_layout_warnings(scenario, layout) -> list[str]:
    """One line per Megatron-LM refusal an explicit layout breaks (the search's rules, which `estimate --layout`
    and `simulate` do not enforce: they price the layout as given); empty where megatron_rules does not apply."""
    import numpy as np  # here, not at the top: `moesim --version` / `--help` import this module (search_cmd)

    g = {axis: np.array([getattr(layout, axis)]) for axis in ("tp", "ep", "etp")}
    return [f"Megatron-LM refuses this layout ({scenario.training.framework} on {scenario.hardware.name}): "
            f"{MEGATRON_REASONS[name]} [{name}]; priced as given, `moesim search` does not rank it"
            for name, fails in zip(MEGATRON_REASONS, megatron_fails(scenario, g)) if bool(fails[0])]


SP_RULE = "megatron_moe_tp_needs_sequence_parallel"


def sequence_parallel_note(scenario: str, rejected: dict[str, int]) -> str | None:
    """What a scenario with sequence_parallel = false costs a search whose rejection counts are `rejected` (SP_RULE
    refused some layouts), and how to rank tp > 1; None where the rule refused none (`search`'s text, the report)."""
    refused = rejected.get(SP_RULE, 0)
    if not refused:
        return None
    # Megatron-LM 23e00ed0 training/arguments.py l.836-842: SP is turned off at tp 1, so it moves no tp = 1 figure
    return (f"sequence_parallel is false in the scenario: {refused:,} layouts at tp > 1 were refused [{SP_RULE}], not "
            "priced, so the ranking has tp = 1 only. Megatron-LM turns SP off itself at tp 1 (23e00ed0 "
            "training/arguments.py l.836-842), so SP on moves no tp = 1 figure: to rank tp > 1 as well, set "
            "training.sequence_parallel = true in the scenario file, or compare the best of each with "
            f"`moesim sweep {scenario} --vary training.sequence_parallel=false,true`")
