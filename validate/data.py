"""Deterministic weights and tokens from a config seed (same values on every rank and device).

All tensors are drawn on the CPU from a ``torch.Generator`` seeded from (config seed, tag), then
moved/cast by the caller, so the distributed layer and the reference see identical values.
"""

from __future__ import annotations

import math
import zlib

import torch

from validate.config import LayerConfig

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

INIT_SCALE = 0.1
"""Switch §2.3: truncated normal with std sqrt(s / fan_in), s = 0.1 (10x below the default)."""


def generator(seed: int, tag: str) -> torch.Generator:
    """A CPU generator seeded from the config seed and a tag (stable across runs and hosts)."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{tag}".encode()) + (seed << 32))


def _switch_init(shape: tuple[int, ...], fan_in: int, gen: torch.Generator) -> torch.Tensor:
    std = math.sqrt(INIT_SCALE / fan_in)  # Switch §2.3 initialisation
    t = torch.empty(shape, dtype=torch.float32)
    return torch.nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std, generator=gen)


def router_weight(cfg: LayerConfig) -> torch.Tensor:
    """Router weight [E, d_model], float32 (the router always runs in float32)."""
    return _switch_init((cfg.num_experts, cfg.d_model), cfg.d_model, generator(cfg.seed, "router"))


def expert_weights(cfg: LayerConfig, expert: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_in [d_model, d_ff], W_out [d_ff, d_model]) of global expert ``expert``, float32."""
    gen = generator(cfg.seed, f"expert/{expert}")
    w_in = _switch_init((cfg.d_model, cfg.d_ff), cfg.d_model, gen)
    w_out = _switch_init((cfg.d_ff, cfg.d_model), cfg.d_ff, gen)
    return w_in, w_out


def tokens(cfg: LayerConfig, rank: int) -> torch.Tensor:
    """Input activations of ``rank``: [tokens_per_rank, d_model] standard normal, float32."""
    gen = generator(cfg.seed, f"tokens/{rank}")
    return torch.randn(cfg.tokens_per_rank, cfg.d_model, generator=gen)


def upstream_grad(cfg: LayerConfig, rank: int) -> torch.Tensor:
    """Gradient arriving at the layer output of ``rank`` (stands in for the rest of the network)."""
    gen = generator(cfg.seed, f"grad/{rank}")
    return torch.randn(cfg.tokens_per_rank, cfg.d_model, generator=gen)
