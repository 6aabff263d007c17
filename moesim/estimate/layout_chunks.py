"""Interleaved candidates with a pipeline layout (uneven chunks, moesim.specs.pipeline_layout), as `evaluate` prices
them (moesim.estimate.core): which rows have none, each chunk's compute, and the bubble of their chunks. Moved from
core.py unchanged (session 24, tidy24)."""

from __future__ import annotations

import numpy as np

from moesim.estimate import schedules as sch
from moesim.estimate.candidates import Candidates


def no_layout(cands: Candidates) -> np.ndarray:
    """(N,) the candidates without a pipeline layout (uneven chunks keep the table's row and layout_pipe_s)."""
    if cands.pipeline_layout is None:
        return np.ones(len(cands), dtype=bool)
    return np.array([x is None for x in cands.pipeline_layout], dtype=bool)


def layout_chunk_weights(cands: Candidates, wl, terms, sched: np.ndarray, logits_time, embedding_time,
                          embedding_bwd) -> dict[int, tuple[np.ndarray, np.ndarray]] | None:
    """{row: (compute, forward compute) of each of the pp·vp virtual stages per micro-batch} for the interleaved
    rows of `cands` with a pipeline layout: each chunk's layers by class (layer order, the MTP modules in the last
    chunk, moesim.workload) at their class's time, the embedding in chunk 0, the output heads in the last (as
    compute_mb charges them to the device: logits one third forward); None when no row has a layout."""
    if cands.pipeline_layout is None or not any(x is not None for x in cands.pipeline_layout):
        return None
    from moesim.specs.pipeline_layout import parse

    n_rows, main = len(cands), wl.num_layers
    row = lambda a, n: float(np.broadcast_to(np.asarray(a, dtype=float), (n_rows,))[n])  # noqa: E731
    interleaved = sch.is_schedule(sched, "interleaved")
    out = {}
    for n, text in enumerate(cands.pipeline_layout):
        if text is None or not interleaved[n]:
            continue
        pl = parse(text, int(cands.pp[n]))
        fwd_c = [row(t.fwd_time_s, n) for t in terms]
        all_c = [row(t.fwd_time_s, n) + row(t.bwd_time_s, n) + row(t.recompute_time_s, n) for t in terms]
        ends = np.cumsum((0,) + pl.chunk_layers)
        whole, fwd = np.zeros(len(pl.stages)), np.zeros(len(pl.stages))
        for i in range(len(pl.stages)):
            layers = list(wl.layer_class_index[ends[i]:ends[i + 1]])
            layers += list(wl.layer_class_index[main:]) if i == len(pl.stages) - 1 else []
            whole[i], fwd[i] = sum(all_c[c] for c in layers), sum(fwd_c[c] for c in layers)
        emb, emb_bwd, logits = row(embedding_time, n), row(embedding_bwd, n), row(logits_time, n)
        whole[0], fwd[0] = whole[0] + emb, fwd[0] + emb - emb_bwd
        whole[-1], fwd[-1] = whole[-1] + logits, fwd[-1] + logits / 3
        out[n] = (whole, fwd)
    return out


def layout_bubble(weights: dict, of: np.ndarray | None, cands: Candidates, wl, stage_mb: np.ndarray,
                   m: np.ndarray, t_mb: np.ndarray) -> np.ndarray:
    """(N,) interleaved bubble of the candidates with uneven chunks (schedules.layout_pipe_s − m·t), NaN elsewhere:
    each device's time per micro-batch (stage_mb, its collectives included) shared among its chunks as their
    compute (`layout_chunk_weights`; DERIVED: a chunk's collectives scale with its layers' compute)."""
    from moesim.estimate.stages import device_columns
    from moesim.specs.pipeline_layout import parse

    out = np.full(len(cands), np.nan)
    for i in range(len(cands)):
        key = i if of is None else int(of[i])
        if key not in weights:
            continue
        whole, fwd = weights[key]
        p = int(cands.pp[i])
        pl = parse(cands.pipeline_layout[i], p)
        first, last = int(cands.first_stage_layers[i]), int(cands.last_stage_layers[i])  # as pipeline_stages'
        cols = device_columns(wl, p, first or None, last or None)
        device_s = stage_mb[i, cols]
        own = whole.reshape(pl.vp, p).sum(axis=0)  # each device's compute over its chunks
        share = np.divide(whole, np.tile(own, pl.vp), out=np.zeros_like(whole), where=np.tile(own, pl.vp) > 0)
        chunk_s = share * np.tile(device_s, pl.vp)
        chunk_fwd = np.divide(chunk_s * fwd, whole, out=np.zeros_like(whole), where=whole > 0)
        out[i] = sch.layout_pipe_s(chunk_s, chunk_fwd, int(m[i]), p, pl.vp) - m[i] * t_mb[i]
    return out
