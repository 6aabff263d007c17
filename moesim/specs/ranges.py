"""Valid ranges of every numeric spec field, in one declarative table, checked at construction.

Each spec dataclass calls `check_ranges(self)` first thing in `__post_init__`, so a value from any
source (a TOML/YAML/JSON file, a HuggingFace config.json, `--vary`, `dataclasses.replace`) is
checked before any arithmetic or allocation uses it: non-numbers, NaN, ±inf, a wrong sign and
sizes no real run has are one `SpecError` naming the field, the value and the allowed range.

To add a numeric field to a spec, declare its range here (`tests/test_ranges.py` fails for a
numeric field with none). Bounds are "what can be real", chosen generously above every published
run so that no real set-up is refused, and low enough that the per-layer / per-expert /
per-token loops and arrays stay bounded (a `layers = 1e8` model would loop for minutes):

1. layers ≤ 4096: the deepest published transformers have ~ 100–200 layers (PaLM 118,
   Megatron-Turing 105).
2. widths (d_model, d_ff, heads × head_dim) ≤ 2^20 elements: the widest are ~ 2^15 (PaLM d_ff 73728).
3. experts ≤ 2^20 (PEER, arXiv 2407.04153, uses 1024² tiny experts); top_k ≤ 1024.
4. vocabulary ≤ 2^24 (largest published ~ 2^18).
5. sequence length ≤ 2^24 tokens (published contexts reach 2^20–2^23).
6. devices ≤ 2^24; a global batch ≤ 2^24 sequences and ≤ 2^40 tokens per step (the largest
   published batches are ~ 2^26 tokens: DeepSeek-V3 15360 × 4096).
7. capacity factor in (0, 1024]: beyond E/k no token is ever dropped; 1024 covers E/k of any
   real model with a capacity rule (Switch-C 2048 experts uses 1.0–2.0).
8. per-chip peak ≤ 10^6 TFLOP/s, HBM ≤ 2^20 GiB, bandwidths ≤ 10^6 GB/s, latencies ≤ 1 s:
   10³–10⁴× above today's parts, so only a typo or garbage lands outside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from moesim.errors import SpecError

GIB = 2**30


@dataclass(frozen=True)
class Range:
    """lo ≤ value ≤ hi (lo < value when `lo_open`, value < hi when `hi_open`), finite; `integer` requires an int;
    `unit` for the message."""

    lo: float
    hi: float
    lo_open: bool = False
    integer: bool = False
    unit: str = ""
    hi_open: bool = False

    def describe(self) -> str:
        def fmt(x: float) -> str:
            if isinstance(x, int) or (float(x).is_integer() and abs(x) < 1e15):  # an int bound exactly (2**63 - 1)
                return str(int(x))
            return f"{x:g}"

        low = f"> {fmt(self.lo)}" if self.lo_open else f">= {fmt(self.lo)}"
        kind = "an integer" if self.integer else "a finite number"
        unit = f" {self.unit}" if self.unit else ""
        return f"{kind} {low} and {'<' if self.hi_open else '<='} {fmt(self.hi)}{unit}"

    def problem(self, value: Any) -> str | None:
        """Why `value` is outside this range, or None."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected {'an integer' if self.integer else 'a number'}, got {value!r}"
        if self.integer and not isinstance(value, int):
            return f"expected an integer, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not a finite number"
        low_bad = value <= self.lo if self.lo_open else value < self.lo
        if low_bad or (value >= self.hi if self.hi_open else value > self.hi):
            shown = value if isinstance(value, float) or abs(value) < 10**15 else f"{float(value):.3g}"
            return f"{shown} is out of range"
        return None

    def check(self, value: Any, *, field: str, file: str | None = None) -> None:
        problem = self.problem(value)
        if problem:
            raise SpecError(problem, file=file, field=field, value=value, allowed=self.describe())


def count(lo: int, hi: int, unit: str = "") -> Range:
    """An integer count in [lo, hi]."""
    return Range(lo, hi, integer=True, unit=unit)


def positive(hi: float, unit: str = "") -> Range:
    """A finite number in (0, hi]."""
    return Range(0, hi, lo_open=True, unit=unit)


def non_negative(hi: float, unit: str = "") -> Range:
    """A finite number in [0, hi]."""
    return Range(0, hi, unit=unit)


def fraction(*, lo_open: bool = True) -> Range:
    """A fraction in (0, 1] (or [0, 1])."""
    return Range(0, 1, lo_open=lo_open)


MAX_LAYERS = 4096
MAX_WIDTH = 2**20
MAX_EXPERTS = 2**20
MAX_SEQ_LEN = 2**24
MAX_DEVICES = 2**24
MAX_BATCH_SEQUENCES = 2**24
MAX_TOKENS_PER_STEP = 2**40
MAX_CAPACITY_FACTOR = 1024.0
MAX_MICRO_BATCHES = 2**20

_CF = Range(0, MAX_CAPACITY_FACTOR, lo_open=True)

# Spec class name → field → range. Tuple-valued fields (dims, capacity_factors) check each element;
# None (an "unset" optional) is not checked.
RANGES: dict[str, dict[str, Range]] = {
    "AttentionSpec": {
        "num_heads": count(1, 2**16),
        "head_dim": count(1, 2**16),
        "num_kv_heads": count(0, 2**16),
        "q_lora_rank": count(0, MAX_WIDTH),
        "kv_lora_rank": count(0, MAX_WIDTH),
        "qk_rope_head_dim": count(0, 2**16),
        "v_head_dim": count(0, 2**16),
        "window_tokens": count(0, MAX_SEQ_LEN, "tokens"),  # 0 = no sliding window
        "sparse_stride_tokens": count(0, MAX_SEQ_LEN, "tokens"),
        "sparse_summary_tokens": count(0, MAX_SEQ_LEN, "tokens"),
    },
    "MoESpec": {
        "num_experts": count(1, MAX_EXPERTS),
        "top_k": count(1, 1024),
        "expert_d_ff": count(1, MAX_WIDTH),
        "layer_freq": count(1, MAX_LAYERS),
        "leading_dense_layers": count(0, MAX_LAYERS),
        "num_shared_experts": count(0, 1024),
        "shared_expert_d_ff": count(0, MAX_WIDTH),
        "capacity_factor_train": _CF,
        "capacity_factor_eval": _CF,
        "min_expert_capacity": count(0, 2**30, "tokens"),
        "group_size_tokens": count(0, MAX_TOKENS_PER_STEP, "tokens"),
        "max_nodes_per_token": count(0, MAX_DEVICES, "nodes"),  # 0 = no node limit
    },
    "ModelSpec": {
        "d_model": count(1, MAX_WIDTH),
        "encoder_layers": count(0, MAX_LAYERS),
        "decoder_layers": count(1, MAX_LAYERS),
        "vocab_size": count(1, 2**24),
        "d_ff": count(1, MAX_WIDTH),
        "relative_attention_num_buckets": count(0, 2**16),
        "max_position_embeddings": count(0, MAX_SEQ_LEN, "tokens"),
        "default_seq_len": count(1, MAX_SEQ_LEN, "tokens"),
        "default_decoder_seq_len": count(0, MAX_SEQ_LEN, "tokens"),
        "mtp_depth": count(0, MAX_LAYERS, "layers"),  # multi-token prediction modules (DeepSeek-V3: 1)
    },
    "TrainingSpec": {
        "global_batch_sequences": count(1, MAX_BATCH_SEQUENCES, "sequences"),
        "seq_len": count(0, MAX_SEQ_LEN, "tokens"),
        "decoder_seq_len": count(0, MAX_SEQ_LEN, "tokens"),
        "micro_batches": count(1, MAX_MICRO_BATCHES),
        "zero_stage": count(0, 3),
        "capacity_factor": _CF,
        "a2a_kernel_sms": count(1, 4096, "SMs per device"),  # as ChipSpec.sm_count; below the chip's: sm_share.py
        "memory_headroom_fraction": Range(0, 0.99),
        "memory_limit_gib": positive(2**20, "GiB per device"),
        "attention_output_storage_bits": count(0, 32, "bits"),  # 0: activation_storage_dtype; E5M6 = 12
    },
    "ChipSpec": {
        "devices_per_chip": count(1, 1024),
        "peak_flops_per_s": positive(1e18, "FLOP/s per device"),  # 10^6 TFLOP/s
        "hbm_bytes": positive(2**20 * GIB, "bytes per device"),
        "hbm_bw_bytes_per_s": positive(1e15, "bytes/s per device"),  # 10^6 GB/s
        "sm_count": count(1, 4096, "SMs per device"),
    },
    "ComputeEfficiency": {
        "memory_bandwidth": fraction(),
        "layer_overhead_s": non_negative(1.0, "s"),
        "kernel_launch_s": non_negative(1.0, "s"),
    },
    "EfficiencyTable": {},  # checked point by point in EfficiencyTable itself
    "InterconnectLevel": {
        "domain_devices": count(1, MAX_DEVICES, "devices"),
        "link_bw_bytes_per_s": positive(1e15, "bytes/s, one direction"),
        "latency_s": non_negative(1.0, "s"),
        "collective_overhead_s": non_negative(1.0, "s"),
        "dims": count(1, 2**12, "chips per axis"),
        "links_per_chip": count(0, 1024),
        "oversubscription": Range(1, 1024),
        "switch_radix": count(0, 2**16, "ports"),
        "rails": count(1, 1024),
        "nvls_efficiency": Range(0, 1),  # 0 = no NVLink SHARP
        "nvlstree_efficiency": Range(0, 1),  # unset = nvls_efficiency
        "nvlstree_net_factor": Range(0, 4),  # unset = 1; hardware.MAX_NVLSTREE_NET_FACTOR
        "p2p_factor": Range(0, 4),  # unset = 1; hardware.MAX_NVLSTREE_NET_FACTOR
        "p2p_latency_s": non_negative(1.0, "s"),  # unset = latency_s
        "alltoall_p2p_factor": Range(0, 4),  # unset = p2p_factor; hardware.MAX_NVLSTREE_NET_FACTOR
        "nonring_latency_s": non_negative(1.0, "s"),  # unset = latency_s
        "ll_latency_s": non_negative(1.0, "s"),  # unset = latency_s
        "ll128_latency_s": non_negative(1.0, "s"),  # unset = latency_s
        "fill_bytes": Range(4096.0, 64.0 * 2**30, unit="bytes"),  # unset = nccl_tuning.toml [pipeline]; hardware.MIN/MAX_FILL_BYTES
    },
    "HardwareProfile": {
        "max_devices": count(1, MAX_DEVICES, "devices"),
        "memory_reserved_bytes": non_negative(2**20 * GIB, "bytes per device"),
        "price_per_device_hour_usd": non_negative(1e4, "USD per device-hour"),
    },
    "SearchSpace": {
        "capacity_factors": _CF,
        "zero_stages": count(0, 3),
        "max_micro_batches": count(1, MAX_MICRO_BATCHES),
        "virtual_stages": count(1, MAX_LAYERS),
        "context_parallel": count(1, MAX_DEVICES),
        "tensor_parallel": count(1, MAX_DEVICES),
        "pipeline_parallel": count(1, MAX_LAYERS),
        "expert_parallel": count(1, MAX_DEVICES),
    },
    "Layout": {
        "dp": count(1, MAX_DEVICES),
        "tp": count(1, MAX_DEVICES),
        "ep": count(1, MAX_DEVICES),
        "pp": count(1, MAX_LAYERS),
        "etp": count(1, MAX_DEVICES),
        "first_stage_layers": count(1, MAX_LAYERS),
        "last_stage_layers": count(1, MAX_LAYERS),
        "vp": count(1, MAX_LAYERS),  # virtual pipeline stages per device
        "cp": count(1, MAX_DEVICES),  # context-parallel degree
    },
    "Scenario": {
        "devices": count(1, MAX_DEVICES, "devices"),
    },
    "SimOptions": {
        "steps": count(1, 10**4),
        "seed": count(0, 2**63 - 1),
        "chunks": count(1, 1024),
        "straggler_fraction": Range(0, 1),
        "straggler_slowdown": Range(1, 1000),
        "noise_sigma": non_negative(10),  # σ of a log-normal: e^10 is already 22000x
        "grad_bucket_params": count(1, 2**40, "parameters"),
    },
}

# Numeric command-line values, by argparse `dest`, checked by the CLI before any command runs; a flag that sets a
# spec field takes that field's range (one table to keep in step).
_SIM = RANGES["SimOptions"]
ARG_RANGES: dict[str, Range] = {
    "devices": RANGES["Scenario"]["devices"],
    "seq_len": count(1, MAX_SEQ_LEN, "tokens"),
    "decoder_seq_len": count(1, MAX_SEQ_LEN, "tokens"),
    "top": count(0, 10**4),
    "refine_des": count(0, 10**4),
    "steps": _SIM["steps"],
    "seed": _SIM["seed"],
    "chunks": _SIM["chunks"],
    "straggler_fraction": _SIM["straggler_fraction"],
    "straggler_slowdown": _SIM["straggler_slowdown"],
    "noise": _SIM["noise_sigma"],
    "workers": count(1, 4096),
    "holdout_fraction": Range(0, 1, hi_open=True),  # [0, 1): 0 holds nothing out (calibrate/records.py split_holdout)
    "bootstrap": count(0, 10**5),
    "group_stride": count(1, MAX_DEVICES),
    "concurrent": count(1, MAX_DEVICES),
    "ranks": count(1, MAX_DEVICES),
    "gpus_per_thread": count(1, MAX_DEVICES, "GPUs"),  # nccl-tests -g N: GPUs one thread launches per iteration
    # a run's NCCL channel variables (collectives/nccl_channels.py): NCCL itself lowers them to MAXCHANNELS = 64
    "nccl_min_nchannels": count(0, 2**31 - 1, "channels"),
    "nccl_max_nchannels": count(1, 2**31 - 1, "channels"),
    "nccl_nvls_nchannels": count(1, 2**31 - 1, "channels"),
    "nccl_min_ctas": count(1, 2**31 - 1, "channels"),
    "nccl_max_ctas": count(1, 2**31 - 1, "channels"),
    # the ringnet option (collectives/nccl_plan.ring_net_caps): GB/s per ring channel across the network
    "ring_net_channel_gbps": Range(0, 10_000, lo_open=True, unit="GB/s"),
    # NCCL's p2p channels across nodes (collectives/nccl_p2p.p2p_net_nchannels): 1 to MAXCHANNELS = 64
    "p2p_net_nchannels": count(1, 64, "channels"),
}

# Field path prefixes the specs use in their own error messages.
_PREFIX = {"AttentionSpec": "attention.", "MoESpec": "moe.", "TrainingSpec": "training.", "ChipSpec": "chip.",
           "ComputeEfficiency": "efficiency.", "SearchSpace": "search.", "Layout": "layout."}


def check_ranges(spec: Any, *, prefix: str | None = None, file: str | None = None) -> None:
    """Raise a SpecError for the first field of `spec` outside its range in RANGES."""
    name = type(spec).__name__
    prefix = _PREFIX.get(name, "") if prefix is None else prefix
    for key, rng in RANGES[name].items():
        value = getattr(spec, key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            items = [(f"{key}.{k}", v) for k, v in value.items()]
        elif isinstance(value, (tuple, list)):
            items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
        else:
            items = [(key, value)]
        for where, v in items:
            rng.check(v, field=prefix + where, file=file)


def check_value(value: Any, rng: Range, *, field: str, file: str | None = None) -> Any:
    """`value` if inside `rng`, else a SpecError (for command-line values and data outside the specs)."""
    rng.check(value, field=field, file=file)
    return value
