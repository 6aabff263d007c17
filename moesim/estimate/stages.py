"""Pipeline stages of a batch of candidates, one representative per distinct kind of stage.

Stages holding the same layers (layer-class counts: uneven splits give stages of ⌊L/pp⌋ and
⌊L/pp⌋ + 1 layers, see specs.layout.stage_layers), in the same place (first, last) and sending
and receiving the same boundary activations take the same time per micro-batch. Of such a
kind, the earliest stage holds the most micro-batches in flight (1F1B: min(m, pp − s); GPipe: m
everywhere), so it also needs the most memory. Every maximum the cost model takes over stages
(slowest stage, largest memory, longest gradient sync, optimizer pass) is therefore reached on
the earliest stage of some kind, and the earliest index still wins ties: evaluating only those
representatives gives the same figures as evaluating all pp stages, with at most a handful of
stage columns instead of up to pp (a decoder-only model has three kinds: first, middle, last; an
uneven split adds middle stages of the other size and the boundaries between them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from moesim.workload import Workload, stage_class_counts, stage_ranges


@dataclass(frozen=True)
class Stages:
    """Representative stages per candidate; arrays (N, S) over candidates and representatives."""

    index: np.ndarray  # the stage's position in the pipeline, 0-based; -1 pads a shorter pipeline
    counts: np.ndarray  # (N, S, classes): layers of each class on the stage
    tokens_out: np.ndarray  # tokens per sequence sent to the next stage (0 on the last)
    tokens_in: np.ndarray  # tokens per sequence received from the previous stage (first: its own out)


def _boundary_tokens(workload: Workload, p: int, first: int | None, last: int | None) -> np.ndarray:
    """Tokens per sequence each of p stages sends on: its stack's, plus the encoder output once past the encoder."""
    out = np.zeros(p)
    ranges = stage_ranges(workload, p, first, last)
    for s in range(p - 1):
        cls = workload.classes[workload.layer_class_index[ranges[s][-1]]]
        out[s] = cls.tokens + (workload.seq_len if cls.stack == "decoder" and cls.cross_attention else 0)
    return out


@lru_cache(maxsize=256)
def _representatives(workload: Workload, p: int, first: int | None = None, last: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(stage indices, class counts, tokens out, tokens in) of the earliest stage of each kind, in order."""
    counts = stage_class_counts(workload, p, first, last)
    out = _boundary_tokens(workload, p, first, last)
    into = np.concatenate([out[:1], out[:-1]])
    seen: dict[tuple, int] = {}
    for s in range(p):
        key = (tuple(counts[s]), s == 0, s == p - 1, out[s], into[s])
        seen.setdefault(key, s)
    index = np.array(sorted(seen.values()))
    return index, counts[index], out[index], into[index]


def _distinct_keys(pp: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """np.unique(np.stack([pp, first, last], axis=1), axis=0) (non-negative integers), through one integer
    code per row: the same rows in the same (lexicographic) order, without the slow row-wise unique."""
    if not len(pp):
        return np.zeros((0, 3), dtype=np.int64)
    span = int(max(pp.max(), first.max(), last.max())) + 1
    code = np.unique((pp * span + first) * span + last)
    return np.stack([code // (span * span), code // span % span, code % span], axis=1)


def pipeline_stages(workload: Workload, pp: np.ndarray, first: np.ndarray | None = None,
                    last: np.ndarray | None = None) -> Stages:
    """The representative stages of every candidate (pp holds each candidate's pipeline degree;
    first / last its fixed end-stage layer counts, 0 for the automatic split)."""
    n = len(pp)
    first = np.zeros(n, dtype=np.int64) if first is None else np.asarray(first, dtype=np.int64)
    last = np.zeros(n, dtype=np.int64) if last is None else np.asarray(last, dtype=np.int64)
    keys = _distinct_keys(np.asarray(pp, dtype=np.int64), first, last)
    reps = {(int(p), int(f), int(l_)): _representatives(workload, int(p), int(f) or None, int(l_) or None)
            for p, f, l_ in keys}
    width = max(len(r[0]) for r in reps.values())
    index = np.full((n, width), -1)
    counts = np.zeros((n, width, len(workload.classes)))
    tokens_out, tokens_in = np.zeros((n, width)), np.zeros((n, width))
    for (p, f, l_), (idx, cnt, out, into) in reps.items():
        sel, k = (pp == p) & (first == f) & (last == l_), len(idx)
        index[sel, :k], counts[sel, :k], tokens_out[sel, :k], tokens_in[sel, :k] = idx, cnt, out, into
    return Stages(index=index, counts=counts, tokens_out=tokens_out, tokens_in=tokens_in)


def dualpipe_pair_columns(workload: Workload, pp: np.ndarray, first: np.ndarray | None = None,
                          last: np.ndarray | None = None) -> np.ndarray:
    """(N, S) column of the representative of the stage that shares a DualPipe device with each column's.

    DualPipe rank r holds stages r and p − 1 − r of a p-stage split (`deepseek-ai/DualPipe:examples`,
    `full_modules[rank]` and `full_modules[pp_size - 1 - rank]`; DeepSeek-V3 §3.2.3). The partner stage's
    column is that of the earliest stage of its kind (the same key as `_representatives`); -1 pads."""
    n = len(pp)
    first = np.zeros(n, dtype=np.int64) if first is None else np.asarray(first, dtype=np.int64)
    last = np.zeros(n, dtype=np.int64) if last is None else np.asarray(last, dtype=np.int64)
    reps = pipeline_stages(workload, pp, first, last)
    out = np.full(reps.index.shape, -1)
    for p, f, l_ in _distinct_keys(np.asarray(pp, dtype=np.int64), first, last):
        p, f, l_ = int(p), int(f) or None, int(l_) or None
        counts = stage_class_counts(workload, p, f, l_)
        tok_out = _boundary_tokens(workload, p, f, l_)
        tok_in = np.concatenate([tok_out[:1], tok_out[:-1]])
        key = lambda s: (tuple(counts[s]), s == 0, s == p - 1, tok_out[s], tok_in[s])  # noqa: E731
        earliest: dict[tuple, int] = {}
        for s in range(p):
            earliest.setdefault(key(s), s)
        index = _representatives(workload, p, f, l_)[0]
        column = {int(s): c for c, s in enumerate(index)}
        cols = [column[earliest[key(p - 1 - int(s))]] for s in index]
        sel = (pp == p) & (first == (f or 0)) & (last == (l_ or 0))
        out[sel, :len(cols)] = cols
    return out


def per_stage(counts: np.ndarray, per_class: list[np.ndarray]) -> np.ndarray:
    """Σ over classes of (layers of the class on each stage) × per-layer value: (N, S)."""
    values = np.stack(per_class, axis=1)  # (N, C)
    return np.einsum("nsc,nc->ns", counts, values)
