"""Published figures of the library's models, each with its source and the tolerance moesim must meet.

The single place these numbers live: `tests/models/test_reproductions.py` asserts every row and
`docs/reproductions.md` is rendered from them (`docs/make_reproductions.py`), so the two cannot
drift. Quantities (computed in `moesim.models.reproductions`):
  total_params, active_params          ParamCounts.total / .active (active includes the embedding)
  active_params_no_embedding           active minus the input embedding (DeepSeek's convention:
                                       README_WEIGHTS.md counts 36.6B "including 0.9B for the output Head")
  forward_flops_per_sequence_kaplan    Kaplan et al. 2020 forward FLOPs at the model's default lengths
  forward_flops_per_token_kaplan       the same per token (decoder-only)
  training_flops_per_token_kaplan      3 x the forward figure (6N + attention)
  step_time_s                          `estimate()` of `scenario` (uncalibrated hardware profiles)
  device_hours_per_trillion_tokens     devices x 1e12 / (tokens/s of `estimate()`) / 3600
Tolerances: parameter counts 2 % or half the printed figure's last digit, whichever is larger
(the bar of tests/test_arithmetic.py); FLOPs 2 % where the convention is the paper's, wider
where it is not stated; step times and costs come from uncalibrated efficiency priors, so their
tolerance says how far the analytical model is allowed to be today, and the error column says
how far it is.
"""

from __future__ import annotations

from dataclasses import dataclass

QUANTITIES = ("total_params", "active_params", "active_params_no_embedding", "forward_flops_per_sequence_kaplan",
              "forward_flops_per_token_kaplan", "training_flops_per_token_kaplan", "step_time_s",
              "device_hours_per_trillion_tokens")
SCENARIO_QUANTITIES = ("step_time_s", "device_hours_per_trillion_tokens")


@dataclass(frozen=True, kw_only=True)
class Published:
    """One published figure of one model, and how close moesim must come to it."""

    model: str
    quantity: str
    value: float
    tolerance: float  # relative: |moesim − published| / published must not exceed it
    source: str
    note: str = ""
    scenario: str = ""  # for step times and costs: the scenario that reproduces the set-up
    capacity_factor: float | None = None  # training capacity factor replacing the scenario's
    num_heads: int = 0  # attention heads replacing the model's (Switch-C's Table 9 row prints 32)

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise ValueError(f"unknown quantity {self.quantity!r}; allowed: {', '.join(QUANTITIES)}")
        if (self.quantity in SCENARIO_QUANTITIES) != bool(self.scenario):
            raise ValueError(f"{self.model} {self.quantity}: a scenario is needed exactly for {SCENARIO_QUANTITIES}")
        if self.value <= 0 or not 0 < self.tolerance < 1:
            raise ValueError(f"{self.model} {self.quantity}: value must be > 0 and tolerance in (0, 1)")


def _printed(value: float, unit: float) -> float:
    """2 %, or half of the printed figure's last digit when that is larger."""
    return max(0.02, unit / 2 / value)


SWITCH = "Switch Transformers (arXiv 2101.03961)"
_P = Published
FIGURES: tuple[Published, ...] = (
    # --- T5 and Switch (Fedus et al.) ------------------------------------------------------
    _P(model="t5-base", quantity="total_params", value=223e6, tolerance=_printed(223e6, 1e6), source=f"{SWITCH} Table 6: 223M"),
    _P(model="t5-base", quantity="forward_flops_per_sequence_kaplan", value=124e9, tolerance=0.02, source=f"{SWITCH} Table 9: 124B FLOPs/seq"),
    _P(model="t5-large", quantity="total_params", value=739e6, tolerance=_printed(739e6, 1e6), source=f"{SWITCH} Table 6: 739M"),
    _P(model="t5-large", quantity="forward_flops_per_sequence_kaplan", value=425e9, tolerance=0.02, source=f"{SWITCH} Table 9: 425B FLOPs/seq"),
    _P(model="t5-xxl", quantity="total_params", value=11e9, tolerance=_printed(11e9, 1e9), source=f"{SWITCH} Table 9: 11B"),
    _P(model="t5-xxl", quantity="forward_flops_per_sequence_kaplan", value=6.3e12, tolerance=0.02, source=f"{SWITCH} Table 9: 6.3T FLOPs/seq"),
    _P(model="switch-base-16", quantity="total_params", value=1.1e9, tolerance=_printed(1.1e9, 0.1e9), source=f"{SWITCH} Table 7: 1.1B"),
    _P(model="switch-base-32", quantity="total_params", value=2.0e9, tolerance=_printed(2.0e9, 0.1e9), source=f"{SWITCH} Table 7: 2.0B"),
    _P(model="switch-base-64", quantity="total_params", value=3.8e9, tolerance=_printed(3.8e9, 0.1e9), source=f"{SWITCH} Table 7: 3.8B (Table 6: 3,800M)"),
    _P(model="switch-base-128", quantity="total_params", value=7410e6, tolerance=_printed(7410e6, 10e6), source=f"{SWITCH} Table 8: 7410M (Table 9: 7B)"),
    _P(model="switch-base-128", quantity="forward_flops_per_sequence_kaplan", value=124e9, tolerance=0.02, source=f"{SWITCH} Table 9: 124B FLOPs/seq (Switch-Base)"),
    _P(model="switch-base-256", quantity="total_params", value=14.7e9, tolerance=_printed(14.7e9, 0.1e9), source=f"{SWITCH} Table 7: 14.7B"),
    _P(model="switch-large-128", quantity="total_params", value=26e9, tolerance=_printed(26e9, 1e9), source=f"{SWITCH} Table 9: 26B"),
    _P(model="switch-large-128", quantity="forward_flops_per_sequence_kaplan", value=425e9, tolerance=0.02, source=f"{SWITCH} Table 9: 425B FLOPs/seq"),
    _P(model="switch-xxl-128", quantity="total_params", value=395e9, tolerance=_printed(395e9, 1e9), source=f"{SWITCH} Table 9: 395B",
       note="128 experts as released (Table 9 prints 64; 64 would give 201B)"),
    _P(model="switch-xxl-128", quantity="forward_flops_per_sequence_kaplan", value=6.3e12, tolerance=0.02, source=f"{SWITCH} Table 9: 6.3T FLOPs/seq"),
    _P(model="switch-c-2048", quantity="total_params", value=1571e9, tolerance=_printed(1571e9, 1e9), source=f"{SWITCH} Table 9: 1571B"),
    _P(model="switch-c-2048", quantity="forward_flops_per_sequence_kaplan", value=890e9, tolerance=0.02, num_heads=32,
       source=f"{SWITCH} Table 9: 890B FLOPs/seq", note="with the Table 9 row's own 32 heads; the released 30 heads give -2.4%"),
    # --- GShard, GLaM, ST-MoE (Google) -----------------------------------------------------
    _P(model="gshard-600b", quantity="total_params", value=600e9, tolerance=0.05, source="GShard (arXiv 2006.16668) Table 1: 600B weights",
       note="the abstract says 'beyond 600 billion'; FFN type and vocabularies assumed (see model notes)"),
    _P(model="gshard-600b", quantity="step_time_s", value=1 / 0.72, tolerance=0.4, scenario="gshard-600b-tpu-v3",
       source="GShard Table 3: 0.72 steps/s on 2048 TPU v3 cores, 4M tokens per batch (source-side tokens: "
              "§4.1, footnote 7, 1T tokens in 250k steps)",
       note="KNOWN MISS: predicted about 31 % too fast. GShard §5.2 / Fig. 8 measured the 2048-expert MoE and "
            "Transformer layers at 48 % of their roofline, the all-to-all at 36 % of their time and attention "
            "at about 30 % of peak; moesim's uncalibrated TPU v3 prior runs matmuls, attention included, at "
            "55-70 % of peak and the all-to-all at the torus bisection bound (22 % of those layers' forward "
            "time here). Sequence lengths unpublished (512 + 512 assumed)"),
    _P(model="glam-64b-64e", quantity="total_params", value=1.2e12, tolerance=_printed(1.2e12, 0.1e12), source="GLaM (arXiv 2112.06905) Table 4: 1.2T"),
    _P(model="glam-64b-64e", quantity="active_params", value=96.6e9, tolerance=0.02, source="GLaM Table 4: 96.6B activated per token"),
    _P(model="glam-64b-64e", quantity="forward_flops_per_token_kaplan", value=180e9, tolerance=0.1,
       source="GLaM Table 1: 180 GFLOPs per token at inference", note="convention not stated; 2 x 96.6B alone is 193G"),
    _P(model="glam-64b-64e", quantity="device_hours_per_trillion_tokens", value=1024 * 574 / 0.280, tolerance=0.3,
       scenario="glam-64b-64e-tpu-v4", source="GLaM §6.4: 1024 TPU v4 chips for 574 hours on 280B tokens (= 2.10M chip-hours per trillion tokens)",
       note="mesh split, ZeRO-3 and rematerialisation assumed; uncalibrated TPU v4 profile"),
    _P(model="st-moe-32b", quantity="total_params", value=269e9, tolerance=_printed(269e9, 1e9), source="ST-MoE (arXiv 2202.08906) Table 11: 269B"),
    _P(model="st-moe-32b", quantity="forward_flops_per_sequence_kaplan", value=20.2e12, tolerance=0.02,
       source="ST-MoE Table 11: 20.2T FLOPs/seq", note="Kaplan convention at 512 inputs + 114 targets, as Switch Table 9"),
    _P(model="st-moe-32b", quantity="step_time_s", value=4.244, tolerance=0.3, scenario="st-moe-32b-tpu-v3",
       source="ST-MoE Table 9: 4.244 s per step at train capacity factor 1.25", note="TPU generation and batch assumed"),
    _P(model="st-moe-32b", quantity="step_time_s", value=4.819, tolerance=0.3, scenario="st-moe-32b-tpu-v3", capacity_factor=2.0,
       source="ST-MoE Table 9: 4.819 s per step at train capacity factor 2.0 (+14%)"),
    # --- Mixtral, DBRX, OLMoE, Qwen ----------------------------------------------------------
    _P(model="mixtral-8x7b", quantity="total_params", value=46.7e9, tolerance=0.02, source="mistral.ai/news/mixtral-of-experts: 46.7B total"),
    _P(model="mixtral-8x7b", quantity="active_params", value=12.9e9, tolerance=0.02, source="mistral.ai/news/mixtral-of-experts: 12.9B per token"),
    _P(model="mixtral-8x22b", quantity="total_params", value=141e9, tolerance=0.02, source="mistral.ai/news/mixtral-8x22b: 141B"),
    _P(model="mixtral-8x22b", quantity="active_params", value=39e9, tolerance=0.02, source="mistral.ai/news/mixtral-8x22b: 39B active"),
    _P(model="dbrx", quantity="total_params", value=132e9, tolerance=0.02, source="Databricks DBRX announcement: 132B total"),
    _P(model="dbrx", quantity="active_params", value=36e9, tolerance=_printed(36e9, 1e9), source="Databricks DBRX announcement: 36B active"),
    _P(model="olmoe-1b-7b", quantity="total_params", value=6.9e9, tolerance=0.02, source="OLMoE (arXiv 2409.02060) Table 1: 6.9B"),
    _P(model="olmoe-1b-7b", quantity="active_params", value=1.3e9, tolerance=0.02, source="OLMoE Table 1: 1.3B active"),
    _P(model="qwen1.5-moe-a2.7b", quantity="total_params", value=14.3e9, tolerance=0.02, source="qwenlm.github.io/blog/qwen-moe: 14.3B"),
    _P(model="qwen1.5-moe-a2.7b", quantity="active_params", value=2.7e9, tolerance=0.02, source="qwenlm.github.io/blog/qwen-moe: 2.7B activated"),
    _P(model="qwen2-57b-a14b", quantity="total_params", value=57e9, tolerance=_printed(57e9, 1e9), source="Qwen2 report (arXiv 2407.10671) Table 1: 57B"),
    _P(model="qwen2-57b-a14b", quantity="active_params", value=14e9, tolerance=_printed(14e9, 1e9), source="Qwen2 report Table 1: 14B activated"),
    _P(model="qwen3-30b-a3b", quantity="total_params", value=30.5e9, tolerance=0.02, source="HF Qwen/Qwen3-30B-A3B model card: 30.5B"),
    _P(model="qwen3-30b-a3b", quantity="active_params", value=3.3e9, tolerance=0.02, source="HF Qwen/Qwen3-30B-A3B model card: 3.3B activated"),
    _P(model="qwen3-235b-a22b", quantity="total_params", value=235e9, tolerance=_printed(235e9, 1e9), source="HF Qwen/Qwen3-235B-A22B model card: 235B in total"),
    _P(model="qwen3-235b-a22b", quantity="active_params", value=22e9, tolerance=_printed(22e9, 1e9), source="HF Qwen/Qwen3-235B-A22B model card: 22B activated"),
    _P(model="gpt-oss-120b", quantity="total_params", value=116.83e9, tolerance=_printed(116.83e9, 0.01e9),
       source="OpenAI gpt-oss-120b & gpt-oss-20b model card (arXiv 2508.10925) Table 1: 116.83B total"),
    _P(model="gpt-oss-120b", quantity="active_params_no_embedding", value=5.13e9, tolerance=_printed(5.13e9, 0.01e9),
       source="the same Table 1: 5.13B active per token (the unembedding counted, the embedding not)"),
    # --- DeepSeek --------------------------------------------------------------------------
    _P(model="deepseek-v2", quantity="total_params", value=236e9, tolerance=_printed(236e9, 1e9), source="DeepSeek-V2 (arXiv 2405.04434) abstract: 236B"),
    _P(model="deepseek-v2", quantity="active_params_no_embedding", value=21e9, tolerance=_printed(21e9, 1e9),
       source="DeepSeek-V2 abstract: 21B activated per token"),
    _P(model="deepseek-v2-lite", quantity="total_params", value=15.7e9, tolerance=0.02, source="DeepSeek-V2 App. B / HF model card: 15.7B"),
    _P(model="deepseek-v2-lite", quantity="active_params_no_embedding", value=2.4e9, tolerance=0.03,
       source="DeepSeek-V2 App. B / HF model card: 2.4B activated",
       note="2.45B rounds to 2.5B: the published figure looks truncated; with the input embedding 2.66B"),
    _P(model="deepseek-v3", quantity="total_params", value=671e9, tolerance=_printed(671e9, 1e9), source="DeepSeek-V3 (arXiv 2412.19437) abstract: 671B"),
    _P(model="deepseek-v3", quantity="active_params_no_embedding", value=36.6e9, tolerance=0.02,
       source="deepseek-ai/DeepSeek-V3 README_WEIGHTS.md: 36.6B activated (incl. 0.9B output head); abstract: 37B"),
    _P(model="deepseek-v3", quantity="training_flops_per_token_kaplan", value=250e9, tolerance=0.05,
       source="Insights into DeepSeek-V3 (arXiv 2505.09343) Table 2: 250 GFLOPs per training token at 4096 tokens, as quoted by secondary summaries"),
    _P(model="deepseek-v3", quantity="device_hours_per_trillion_tokens", value=180e3, tolerance=0.45, scenario="deepseek-v3-h800",
       source="DeepSeek-V3 §1 / Table 1: 180K H800 GPU hours per trillion tokens (2.664M for 14.8T pre-training; 2.788M in all)",
       note="FP8 recipe with BF16 combine, attention and head, MTP module on the last stage, DeepEP dispatch with "
            "node-limited routing (4 nodes); DualPipe (each pair's all-to-alls hidden under the other chunk's "
            "compute in both engines; the simulator, scheduling whole kernels, 18.66 s against the estimate's "
            "18.09 s); the input embedding's operators on the first stage (the MTP module's lookup is not "
            "priced); the router GEMM in BF16 and its gating at the times DeepSeek's H800 trace measured "
            "(docs/operators.md); the recomputation of §3.2.3 (norms and MLA up-projections, not the attention "
            "core), MLA's RoPE and copies, DeepSeek's transposed FP8 re-quantisation (§3.5.2) with the MoE input cast "
            "once per token before the FP8 dispatch (§3.3.4), the FP8 casts and the norms at the trace's H800 "
            "bandwidth and the FP8 forward, weight- and dense input-gradient GEMMs at the trace's H800 rate "
            "(operator-level, in-sample for the trace); one FP8 weight copy cached "
            "and transposed every micro-batch, the E5M6 attention output cast and cast back (at the trace's rate), "
            "the SwiGLU inputs "
            "stored in FP8 and dequantised before their recomputation (the trace's kernels), no BF16 copy of the "
            "FP8 GEMM weights "
            "(§3.3.1: 65.40 GiB on the fullest rank, inside moesim's usable 70.78); 61 layers as 3 | 14 x 4 | 2 + "
            "MTP (split not published: the fastest that fits); a pair's GEMMs on the 112 SMs DeepEP's 20 "
            "leave (§3.2.2); uncalibrated H800 profile. Validation only, not fitted"),
    # --- dense baselines ---------------------------------------------------------------------
    _P(model="llama-2-7b", quantity="total_params", value=7e9, tolerance=_printed(7e9, 1e9), source="Llama 2 (arXiv 2307.09288) Table 1: 7B"),
    _P(model="llama-3-8b", quantity="total_params", value=8e9, tolerance=_printed(8e9, 1e9), source="Llama 3 (arXiv 2407.21783) Table 3: 8B"),
    _P(model="mistral-7b", quantity="total_params", value=7.3e9, tolerance=0.02, source="mistral.ai/news/announcing-mistral-7b: 7.3B"),
)
