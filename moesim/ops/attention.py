"""Attention masks and the work a fused (flash) kernel does under them.

Two FLOP conventions, both reported:
- model FLOPs (MFU) stay in the PaLM convention: the full score matrix, 4·s_q·s_kv·d per head
  forward, whatever the mask (Chowdhery et al. 2022, arXiv 2204.02311, App. B);
- the kernel's time is priced on the tiles it computes: a flash kernel walks (T × T) tiles of the
  score matrix and skips the tiles the mask empties (Dao 2023, arXiv 2307.08691 §3.1.1, causal block
  skipping; T = 128, the FlashAttention-2 forward tile). `work_fraction` is computed tiles / all tiles.

Masks (s_q = s_kv = s for self-attention, nb = ceil(s/T) tile rows, row tile a = 0..nb−1):
  full                  every tile
  causal                tiles on or below the diagonal: Σ (a + 1) = nb(nb + 1)/2
  sliding_window        causal band of w tokens (Beltagy et al. 2020, arXiv 2004.05150): row a computes
                        min(a, ceil((w − 1)/T)) + 1 tiles
  block_sparse_fixed    Child et al. 2019 (arXiv 1904.10509) §4.2 "fixed", causal: query i sees its own
                        block of l tokens and the last c tokens of every earlier block: row a computes
                        its block's tiles up to a, plus ceil(c/T) summary tiles per earlier block
  block_sparse_strided  Child et al. §4.1 "strided", causal: the previous l tokens, and every l-th
                        token before them; with l a multiple of T the strided keys of a tile row fall
                        in one tile per earlier period: min(a, l/T) + 1 + max(0, floor(a·T/l) − 1)
GPT-3 alternates dense and locally banded sparse layers (Brown et al. 2020, arXiv 2005.14165 §2.1), GPT-OSS a
128-token window and causal attention: a model's `attention.layer_pattern` gives each layer its own mask (its layer
class carries it: moesim.workload), otherwise one mask applies to every self-attention layer of a model.
`attended_fraction` counts the (query, key) pairs a mask keeps, exactly, for FLOP conventions that count those
(Megatron-Bridge's: tests/ops/test_attention_pattern.py).
"""

from __future__ import annotations

import math

import numpy as np

MASKS = ("full", "causal", "sliding_window", "block_sparse_fixed", "block_sparse_strided")
TILE_TOKENS = 128  # FlashAttention-2 forward tile (Dao 2023 §3.3)


def tiles_per_row(mask: str, nb: int, tile: int = TILE_TOKENS, window_tokens: int = 0, stride_tokens: int = 0,
                  summary_tokens: int = 0) -> np.ndarray:
    """Tiles computed in each of the nb tile rows (module docstring)."""
    a = np.arange(nb)
    if mask == "full":
        return np.full(nb, nb)
    if mask == "causal":
        return a + 1
    if mask == "sliding_window":
        reach = math.ceil(max(window_tokens - 1, 0) / tile)
        return np.minimum(a, reach) + 1
    block = max(1, math.ceil(stride_tokens / tile))  # l in tiles
    if mask == "block_sparse_fixed":
        own = a - (a // block) * block + 1
        summary = (a // block) * min(block, math.ceil(max(summary_tokens, 1) / tile))
        return np.minimum(own + summary, a + 1)
    if mask == "block_sparse_strided":
        strided = np.maximum(0, (a * tile) // max(stride_tokens, 1) - 1)
        return np.minimum(np.minimum(a, block) + 1 + strided, a + 1)
    raise ValueError(f"unknown attention mask {mask!r}")


def work_fraction(mask: str, seq_q: int, seq_kv: int, tile: int = TILE_TOKENS, **params) -> float:
    """Computed tiles / all tiles of the s_q × s_kv score matrix; cross-attention (s_q ≠ s_kv) is full."""
    if mask == "full" or seq_q != seq_kv:
        return 1.0
    nb = max(1, math.ceil(seq_q / tile))
    return float(tiles_per_row(mask, nb, tile, **params).sum()) / (nb * nb)


def attended_fraction(mask: str, seq: int, window_tokens: int = 0) -> float:
    """(Query, key) pairs the mask keeps / s²: full 1; causal (s + 1)/(2s); sliding_window Σ_i min(i + 1, w) / s²,
    i.e. (w − w(w − 1)/(2s))/s for w < s (Megatron-Bridge 067f987d src/megatron/bridge/training/utils/flop_utils.py
    l.1367-1373, "exact average causal SWA context"), causal's for w >= s."""
    if mask == "full":
        return 1.0
    w = window_tokens if mask == "sliding_window" and window_tokens < seq else seq
    if mask not in ("causal", "sliding_window"):
        raise ValueError(f"attended_fraction counts full, causal and sliding_window masks, not {mask!r}")
    return (w - w * (w - 1) / (2 * seq)) / seq
