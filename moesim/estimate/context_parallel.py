"""Context parallelism (Megatron CP): the sequence split over cp devices; its traffic, memory and balance.

Notation (per device, per micro-batch, per layer): b sequences, n tokens per sequence, c = cp degree,
h d_model, kv = num_kv_heads · head_dim (K or V width), q bytes per activation element.

Each CP rank holds n/c tokens of every sequence: every per-token cost (projections, FFN, experts,
their collectives, stored activations) falls by c, and with causal load balancing (TE
"DualChunkSwap": 2c chunks, rank r takes chunks r and 2c−1−r) so do the attention scores. The
cost model therefore prices a layer as b/c sequences (`tokens_divisor`), plus:
  p2p (ring attention)  per pass c − 1 ring steps, each a send/recv of one KV chunk
                        2·b·(n/c)·kv·q bytes, overlapped with the attention of the previous chunk
                        (Megatron CP doc; Liu et al. arXiv 2310.01889 §3.2); backward sends KV again
                        and dKV: 2 × forward (../shared/reference/wave2.md §5.2).
  a2a (Ulysses)         per pass an all-to-all of Q, K, V (b·(n/c)·(h + 2kv)·q bytes per device) before
                        attention and of the output (b·(n/c)·h·q) after it; not overlapped
                        (DeepSpeed-Ulysses, arXiv 2309.14509: 4Nh/P per link per layer).
                        Memory: the attention output held twice, before and after its all-to-all
                        (`a2a_output_copy_bytes`, TE v2.11), where no layer is recomputed.
Without balancing, a contiguous split gives rank r causal work ∝ r + ½ chunks: the slowest rank
does (2c − 1)/c times the mean (`causal_imbalance`).
"""

from __future__ import annotations

import numpy as np

RING_BACKWARD_MULTIPLE = 2  # backward moves KV and dKV: twice the forward volume (wave2.md §5.2)
CP_COMM_CODES = {"p2p": 0, "a2a": 1}


def tokens_divisor(cp) -> np.ndarray:
    """Per-token work and memory on a CP rank: ÷c (Megatron CP doc: activations and compute fall by ×CP)."""
    return np.asarray(cp, dtype=float)


def causal_imbalance(cp, balanced: bool = True) -> np.ndarray:
    """Slowest rank's causal attention work over the mean: 1 balanced (2·c chunks), (2c − 1)/c contiguous.

    Source: TE `attn_forward_func_with_cp` docstring (DualChunkSwap); contiguous split DERIVED."""
    c = np.asarray(cp, dtype=float)
    return np.ones_like(c) if balanced else (2 * c - 1) / c


def ring_chunk_bytes(b, n, cp, kv_width: int, q_bytes: float) -> np.ndarray:
    """One ring step's KV chunk: 2·b·(n/c)·kv·q bytes (K and V). Source: wave2.md §5.2 (Megatron CP doc)."""
    return 2 * np.asarray(b, dtype=float) * n / np.asarray(cp, dtype=float) * kv_width * q_bytes


def ring_steps(cp) -> np.ndarray:
    """Ring steps per pass: c − 1 (each rank receives every other rank's KV chunk)."""
    return np.asarray(cp, dtype=float) - 1


def ulysses_bytes(b, n, cp, h: int, kv_width: int, q_bytes: float) -> tuple[np.ndarray, np.ndarray]:
    """(QKV all-to-all, output all-to-all) bytes per device per pass: b·(n/c)·(h + 2kv)·q and b·(n/c)·h·q.

    Source: DeepSpeed-Ulysses (arXiv 2309.14509 §3.1; wave2.md §5.2)."""
    tokens = np.asarray(b, dtype=float) * n / np.asarray(cp, dtype=float)
    return tokens * (h + 2 * kv_width) * q_bytes, tokens * h * q_bytes


def ring_buffer_bytes(b, n, cp, kv_width: int, q_bytes: float) -> np.ndarray:
    """Transient ring buffers of one layer: the current and the incoming KV chunk (Liu et al. §3.2)."""
    return 2 * ring_chunk_bytes(b, n, cp, kv_width, q_bytes)


def a2a_output_copy_bytes(b, n, cp, out_width: int, q_bytes: float) -> np.ndarray:
    """The attention output a2a CP keeps a second time, per device per layer: b·(n/c)·(a·d_v)·q bytes (÷ tp by the
    caller). TE v2.11 AttnFuncWithCPAndQKVOA2A saves the kernel's output before the output all-to-all (`out_part`,
    attention/dot_product_attention/context_parallel.py l.3569-3582) and returns the a2a's new tensor
    (flash_attn_a2a_communicate l.464, `empty_like`), which Megatron-LM 23e00ed0 passes to linear_proj
    (core/transformer/attention.py l.846) and TE's Linear saves as its input (module/linear.py l.404, 433): two
    storages of the same a·d_v per token where the kernel without CP saves one (moesim.memory's `proj_in`).
    Q, K and V are saved once either way (after the input all-to-all, same elements per device)."""
    return np.asarray(b, dtype=float) * n / np.asarray(cp, dtype=float) * out_width * q_bytes


def comm_calls(b, n, cp, cp_comm, h: int, kv_width: int, q_bytes: float, recompute_full) -> list[tuple]:
    """CP collectives of one attention block: (name, op, size_bytes, calls per layer per micro-batch).

    `b` is the micro-batch's sequences (not divided by c); calls are 0 where cp = 1 or the variant is
    the other one. p2p: c − 1 sends forward, 2(c − 1) backward, c − 1 more in a full recompute."""
    cp = np.asarray(cp, dtype=float)
    ring = np.asarray(cp_comm) == CP_COMM_CODES["p2p"]
    extra = np.where(recompute_full, 1, 0)
    on = cp > 1
    qkv, out = ulysses_bytes(b, n, cp, h, kv_width, q_bytes)
    passes = 2 + extra
    return [
        ("cp_ring_send_recv", "send_recv", ring_chunk_bytes(b, n, cp, kv_width, q_bytes),
         np.where(on & ring, ring_steps(cp) * (1 + RING_BACKWARD_MULTIPLE + extra), 0.0)),
        ("cp_all_to_all_qkv", "all_to_all", qkv, np.where(on & ~ring, passes, 0.0)),
        ("cp_all_to_all_out", "all_to_all", out, np.where(on & ~ring, passes, 0.0)),
    ]


def exposed_ring_time_s(ring_time_s, attention_time_s) -> np.ndarray:
    """Ring attention hides each KV transfer under the previous chunk's attention: exposed max(0, T_ring − T_att).

    Source: Liu et al. arXiv 2310.01889 §3.2 (overlap when the block compute outlasts the transfer)."""
    return np.maximum(0.0, np.asarray(ring_time_s) - np.asarray(attention_time_s))
