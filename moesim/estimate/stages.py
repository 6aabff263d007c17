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
uneven split adds middle stages of the other size and the boundaries between them). A sum over
all pp stages (1F1B's and GPipe's fill and drain, moesim.estimate.schedules) weighs each
representative by its `multiplicity`, the number of stages of its kind.

ZB-V's device d runs the V's pieces d and 2p − 1 − d (Qi et al. ICLR'24 §6, the V schedule; sail-sg
zero-bubble's v-schedule, as moesim.des.zbv_order and des.costs place them: workload.v_shape_ranges): the
same number of layers as contiguous stage d, another mix where the layers differ (an encoder-decoder's
encoder and decoder, dense and MoE layers, the MTP modules, which end the last piece on device 0). Where
that mix differs from the contiguous stages' (`v_apart`), a ZB-V candidate's stages are its devices' two
pieces (session 24, zbvpieces); elsewhere the two are the same stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from moesim.workload import Workload, stage_class_counts, stage_ranges, v_shape_ranges


@dataclass(frozen=True)
class Stages:
    """Representative stages per candidate; arrays (N, S) over candidates and representatives."""

    index: np.ndarray  # the stage's position in the pipeline, 0-based; -1 pads a shorter pipeline
    counts: np.ndarray  # (N, S, classes): layers of each class on the stage
    tokens_out: np.ndarray  # tokens per sequence sent to the next stage (0 on the last)
    tokens_in: np.ndarray  # tokens per sequence received from the previous stage (first: its own out)
    multiplicity: np.ndarray  # how many of the pipeline's stages are of the representative's kind (0 pads)
    latest: np.ndarray  # the position of the last stage of the representative's kind (ZB-V's skew grows with it)


def _boundary_tokens(workload: Workload, ranges) -> np.ndarray:
    """Tokens per sequence each range of layers sends on: its stack's, plus the encoder output once past the encoder
    (the last range's entry is 0: it sends nothing; an empty range's too)."""
    out = np.zeros(len(ranges))
    for s, layers in enumerate(ranges[:-1]):
        if not len(layers):
            continue
        cls = workload.classes[workload.layer_class_index[layers[-1]]]
        out[s] = cls.tokens + (workload.seq_len if cls.stack == "decoder" and cls.cross_attention else 0)
    return out


@lru_cache(maxsize=256)
def _v_devices(workload: Workload, p: int, first: int | None, last: int | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(class counts (p, classes), tokens out, tokens in, first-leg class counts) of ZB-V's p devices, device d
    holding pieces d and 2p − 1 − d of workload.v_shape_ranges (des.costs.build_costs places them so). Tokens: the
    largest boundary the device sends forward (piece k to k + 1 on another device) and back (the gradient of a
    piece's input to its previous piece's device), as des.zbv_order's one transfer is the longest send."""
    pieces = v_shape_ranges(workload, p, first, last)
    out_piece = _boundary_tokens(workload, pieces)
    counts, leg = np.zeros((p, len(workload.classes))), np.zeros((p, len(workload.classes)))
    out, into = np.zeros(p), np.zeros(p)
    for d in range(p):
        for k in (d, 2 * p - 1 - d):
            for layer in pieces[k]:
                counts[d, workload.layer_class_index[layer]] += 1
                leg[d, workload.layer_class_index[layer]] += k == d
            if k < 2 * p - 1 and k != p - 1:  # piece p − 1 feeds piece p on its own device, the last none
                out[d] = max(out[d], out_piece[k])
            if k > 0 and k != p:
                into[d] = max(into[d], out_piece[k - 1])
    # The entries the estimate never prices (its forward sends masked on the last stage, its backward ones on the
    # first: core.evaluate) as the contiguous stages hold them, so that like stages stay one kind.
    out[p - 1], into[0] = 0.0, out[0]
    return counts, out, into, leg


@lru_cache(maxsize=256)
def v_apart(workload: Workload, p: int, first: int | None = None, last: int | None = None) -> bool:
    """Whether ZB-V's devices (`_v_devices`) hold another class mix or other boundary tokens than the p contiguous
    stages (`_stage_kinds`): an encoder-decoder's, DeepSeek-V3's dense layers, an MTP module's; not a model of one
    layer class."""
    counts, out, into, leg = _v_devices(workload, p, first, last)
    contiguous = _stage_kinds(workload, p, first, last)
    # ... or a contiguous kind whose devices hold other first-leg mixes (layer classes that alternate: GLaM's,
    # GPT-OSS's; session 25, zbvgroup): `first_leg_counts` reads the representative's for all of them
    return not (np.array_equal(counts, contiguous[0]) and np.array_equal(out, contiguous[1])
                and np.array_equal(into, contiguous[2]) and np.array_equal(leg, leg[contiguous[3]]))


@lru_cache(maxsize=256)
def _stage_kinds(workload: Workload, p: int, first: int | None = None, last: int | None = None, v: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(class counts, tokens out, tokens in, kind) of each of the p stages, `kind` the earliest stage with the same
    class counts, ends and boundary tokens (the stages priced alike: one representative each); `v`: ZB-V's devices,
    each its two V pieces (`_v_devices`), alike only where their first-leg pieces' class counts match too (session 25,
    zbvgroup: `first_leg_counts` gives a kind its representative's)."""
    leg = None
    if v:
        counts, out, into, leg = _v_devices(workload, p, first, last)
    else:
        counts = stage_class_counts(workload, p, first, last)
        out = _boundary_tokens(workload, stage_ranges(workload, p, first, last))
        into = np.concatenate([out[:1], out[:-1]])
    seen: dict[tuple, int] = {}
    kind = np.array([seen.setdefault((tuple(counts[s]), s == 0, s == p - 1, out[s], into[s],
                                      None if leg is None else tuple(leg[s])), s)
                     for s in range(p)], dtype=np.int64)
    return counts, out, into, kind


@lru_cache(maxsize=256)
def _representatives(workload: Workload, p: int, first: int | None = None, last: int | None = None, v: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(stage indices, class counts, tokens out, tokens in, stages of the kind, the kind's last position) of the
    earliest stage of each kind (`_stage_kinds`, `v` as there), in order."""
    counts, out, into, kind = _stage_kinds(workload, p, first, last, v)
    index = np.unique(kind)
    latest = np.zeros(p)
    np.maximum.at(latest, kind, np.arange(p, dtype=float))
    return (index, counts[index], out[index], into[index], np.bincount(kind, minlength=p)[index].astype(float),
            latest[index])


def _distinct_keys(pp: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """np.unique(np.stack([pp, first, last], axis=1), axis=0) (non-negative integers), through one integer
    code per row: the same rows in the same (lexicographic) order, without the slow row-wise unique."""
    return _distinct_keys_inverse(pp, first, last)[0]


def _distinct_keys_inverse(pp: np.ndarray, first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(_distinct_keys(pp, first, last), the key number of every row): a row's per-key values are then one
    gather, `table[inverse]`, instead of a mask over every row for each key."""
    if not len(pp):
        return np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
    span = int(max(pp.max(), first.max(), last.max())) + 1
    if pp.min() == pp.max() and first.min() == first.max() and last.min() == last.max():  # one key: no sort
        code, inverse = (pp[:1] * span + first[:1]) * span + last[:1], np.zeros(len(pp), dtype=np.int64)
    else:
        code, inverse = np.unique((pp * span + first) * span + last, return_inverse=True)
    keys = np.stack([code // (span * span), code // span % span, code % span], axis=1)
    return keys, inverse.reshape(-1)


def _keys_v(pp: np.ndarray, first: np.ndarray, last: np.ndarray, v: np.ndarray | None
            ) -> tuple[list[tuple[int, int | None, int | None, bool]], np.ndarray]:
    """(distinct (pp, first, last, v) keys as `_representatives`' arguments, the key number of every row); `v` None:
    False everywhere (the keys of `_distinct_keys_inverse`, in its order)."""
    keys, inverse = _distinct_keys_inverse(pp, first, last)
    if v is not None and np.any(v):  # the ZB-V rows on their devices' pieces: a key of their own
        code, inverse = np.unique(inverse * 2 + np.asarray(v, dtype=np.int64), return_inverse=True)
        keys, flags = keys[code // 2], code % 2
    else:
        flags = np.zeros(len(keys), dtype=np.int64)
    return ([(int(p), int(f) or None, int(l_) or None, bool(x)) for (p, f, l_), x in zip(keys, flags)],
            inverse.reshape(-1))


def _ends(n: int, first: np.ndarray | None, last: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """first / last as int64 arrays, None: 0 (the automatic split) everywhere."""
    return tuple(np.zeros(n, dtype=np.int64) if a is None else np.asarray(a, dtype=np.int64) for a in (first, last))


def pipeline_stages(workload: Workload, pp: np.ndarray, first: np.ndarray | None = None,
                    last: np.ndarray | None = None, v: np.ndarray | None = None) -> Stages:
    """The representative stages of every candidate (pp holds each candidate's pipeline degree;
    first / last its fixed end-stage layer counts, 0 for the automatic split; `v` (N,) the rows whose stages are
    ZB-V's devices, each its two V pieces (`v_rows`), None: none)."""
    first, last = _ends(len(pp), first, last)
    keys, inverse = _keys_v(np.asarray(pp, dtype=np.int64), first, last, v)
    reps = [_representatives(workload, *key) for key in keys]
    width = max(len(r[0]) for r in reps)
    k_keys = len(reps)
    index = np.full((k_keys, width), -1)
    counts = np.zeros((k_keys, width, len(workload.classes)))
    tokens_out, tokens_in = np.zeros((k_keys, width)), np.zeros((k_keys, width))
    multiplicity, latest = np.zeros((k_keys, width)), np.zeros((k_keys, width))
    for row, (idx, cnt, out, into, many, end) in enumerate(reps):  # one row per distinct key, to every candidate
        k = len(idx)
        index[row, :k], counts[row, :k], tokens_out[row, :k], tokens_in[row, :k] = idx, cnt, out, into
        multiplicity[row, :k], latest[row, :k] = many, end
    if k_keys == 1:  # one key: its row repeated (the same arrays as the gather, fewer instructions: searchspeed24)
        return Stages(*(np.repeat(a, len(inverse), axis=0) for a in (index, counts, tokens_out, tokens_in, multiplicity, latest)))
    return Stages(index=index[inverse], counts=counts[inverse], tokens_out=tokens_out[inverse],
                  tokens_in=tokens_in[inverse], multiplicity=multiplicity[inverse], latest=latest[inverse])


def v_rows(workload: Workload, pp: np.ndarray, first: np.ndarray | None, last: np.ndarray | None,
           zbv: np.ndarray) -> np.ndarray | None:
    """(N,) the ZB-V rows (`zbv`) whose devices' V pieces differ from the contiguous stages (`v_apart`): priced on
    their devices' pieces (`pipeline_stages`' v); None where there is none (every stage contiguous)."""
    zbv = np.asarray(zbv, dtype=bool)
    if not zbv.any():
        return None
    first, last = _ends(len(pp), first, last)
    keys, inverse = _distinct_keys_inverse(np.asarray(pp, dtype=np.int64), first, last)
    apart = np.array([v_apart(workload, int(p), int(f) or None, int(l_) or None) for p, f, l_ in keys])
    out = zbv & apart[inverse]
    return out if out.any() else None


def first_leg_counts(workload: Workload, pp: np.ndarray, first: np.ndarray | None, last: np.ndarray | None,
                     v: np.ndarray | None, rows: np.ndarray, width: int) -> np.ndarray:
    """(N, width, classes) the layers of each class in the first-leg piece (piece d of device d: Qi et al. ICLR'24
    §6, workload.v_shape_ranges) of each representative stage of `pipeline_stages(..., v)` on the ZB-V `rows`
    ((N,) bool; a row not in `v` has contiguous stages that are its devices, `v_apart`), 0 elsewhere."""
    return _on_representatives(workload, pp, first, last, v, rows, width, len(workload.classes),
                               lambda key: _v_devices(workload, *key)[3])


def _on_representatives(workload: Workload, pp: np.ndarray, first: np.ndarray | None, last: np.ndarray | None,
                        v: np.ndarray | None, rows: np.ndarray, width: int, columns: int, per_device) -> np.ndarray:
    """(N, width, columns) per_device((p, first, last)), a (p, columns) array over the devices, at each representative
    stage of `pipeline_stages(..., v)` on the `rows` ((N,) bool), 0 elsewhere."""
    first, last = _ends(len(pp), first, last)
    keys, inverse = _keys_v(np.asarray(pp, dtype=np.int64), first, last, v)
    wanted = np.zeros(len(keys), dtype=bool)
    wanted[inverse[np.asarray(rows, dtype=bool)]] = True
    out = np.zeros((len(keys), width, columns))
    for row in np.flatnonzero(wanted):
        index = _representatives(workload, *keys[row])[0]
        out[row, :len(index)] = per_device(keys[row][:3])[index]
    return out[inverse]


def _v_runs(workload: Workload, p: int, first: int | None, last: int | None, v: bool
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(first stage, last stage, representative column, (R, columns) stages of each column before it) of every run
    of consecutive like stages (`_stage_kinds`, `v` as there), in order: more runs than columns where kinds
    interleave (GLaM's alternating layers on ZB-V's devices). Not cached: its columns are `_representatives`' (which
    tests/test_pipeline_stages.py replaces by every stage), read afresh."""
    kind = _stage_kinds(workload, p, first, last, v)[3]
    index = _representatives(workload, p, first, last, v)[0]
    column = np.searchsorted(index, kind)
    starts = np.array([d for d in range(p) if d == 0 or kind[d] != kind[d - 1]])
    ends = np.array([d for d in range(p) if d == p - 1 or kind[d] != kind[d + 1]])
    before = np.array([np.bincount(column[:a], minlength=len(index)) for a in starts], dtype=float)
    return starts.astype(float), ends.astype(float), column[starts], before


def v_runs(workload: Workload, pp: np.ndarray, first: np.ndarray | None, last: np.ndarray | None,
           v: np.ndarray | None, rows: np.ndarray, width: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """`_v_runs` of every candidate of `pipeline_stages(..., v)` on the ZB-V `rows` ((N,) bool): (N, R) first and
    last stages (−1 pads), (N, R) columns (0 pads), (N, R, width) stages of each column before the run; None where
    no row's kinds interleave (each kind one run: schedules.zbv_pipe_s's own form, the same figure)."""
    first, last = _ends(len(pp), first, last)
    keys, inverse = _keys_v(np.asarray(pp, dtype=np.int64), first, last, v)
    wanted = np.zeros(len(keys), dtype=bool)
    wanted[inverse[np.asarray(rows, dtype=bool)]] = True
    found = {row: _v_runs(workload, *keys[row]) for row in np.flatnonzero(wanted)}
    if not any(len(r[0]) > r[3].shape[1] for r in found.values()):
        return None
    n_runs = max(len(r[0]) for r in found.values())
    start, end = np.full((len(keys), n_runs), -1.0), np.full((len(keys), n_runs), -1.0)
    column, before = np.zeros((len(keys), n_runs), dtype=np.int64), np.zeros((len(keys), n_runs, width))
    for row, (a, b, c, n) in found.items():
        start[row, :len(a)], end[row, :len(a)], column[row, :len(a)], before[row, :len(a), :n.shape[1]] = a, b, c, n
    return start[inverse], end[inverse], column[inverse], before[inverse]


@lru_cache(maxsize=256)
def _v_leg_tokens(workload: Workload, p: int, first: int | None, last: int | None) -> np.ndarray:
    """(p, 2) tokens per sequence of each ZB-V device's two sends down the V: its first-leg piece d's output to device
    d + 1 and its second-leg piece 2p − 1 − d's to device d − 1 (0 where none: the last device's first leg feeds its
    own second, device 0's second-leg piece ends the V). Each boundary's input gradient goes back at the same size
    (Qi et al. ICLR'24 §6; des.zbv_order sends each piece's own boundary)."""
    out_piece = _boundary_tokens(workload, v_shape_ranges(workload, p, first, last))
    legs = np.zeros((p, 2))
    for d in range(p):
        legs[d] = (out_piece[d] if d < p - 1 else 0.0, out_piece[2 * p - 1 - d] if d > 0 else 0.0)
    return legs


def v_leg_tokens(workload: Workload, pp: np.ndarray, first: np.ndarray | None, last: np.ndarray | None,
                 v: np.ndarray | None, rows: np.ndarray, width: int) -> np.ndarray:
    """(N, width, 2) `_v_leg_tokens` of each representative stage of `pipeline_stages(..., v)` on the ZB-V `rows`
    ((N,) bool), 0 elsewhere (as `first_leg_counts`)."""
    return _on_representatives(workload, pp, first, last, v, rows, width, 2, lambda key: _v_leg_tokens(workload, *key))


def _keys_and_width(workload: Workload, pp: np.ndarray, first: np.ndarray | None, last: np.ndarray | None,
                    width: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(distinct (pp, first, last) keys, each candidate's key, stage columns): `width` when given, else
    pipeline_stages(workload, pp, first, last)'s; first / last None: 0 (the automatic split) everywhere."""
    first, last = _ends(len(pp), first, last)
    if width is None:
        width = pipeline_stages(workload, pp, first, last).index.shape[1]
    keys, inverse = _distinct_keys_inverse(np.asarray(pp, dtype=np.int64), first, last)
    return keys, inverse, width


@lru_cache(maxsize=256)
def _run_ends(workload: Workload, p: int, first: int | None = None, last: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, columns, after) at the first and last position of every run of consecutive like stages
    (`_stage_kinds`): the position, the column of its kind's representative (`_representatives`' order) and (E, S)
    how many stages of each column lie at or after it. A sum over the stages at or after a position, minus a
    multiple of the position, is linear along a run, so its largest value over the pipeline is at these ends."""
    kind = _stage_kinds(workload, p, first, last)[3]
    column = np.searchsorted(_representatives(workload, p, first, last)[0], kind)  # the sorted unique kinds
    ends = [d for d in range(p) if d in (0, p - 1) or kind[d] != kind[d - 1] or kind[d] != kind[d + 1]]
    after = np.array([np.bincount(column[d:], minlength=int(column.max()) + 1) for d in ends], dtype=float)
    return np.array(ends, dtype=float), column[ends], after


def run_ends(workload: Workload, pp: np.ndarray, first: np.ndarray | None = None, last: np.ndarray | None = None,
             width: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_run_ends` of every candidate: (N, E) positions (-1 pads), (N, E) representative columns (0 pads) and
    (N, E, width) stages of each column at or after the position; `width` the stage columns of
    pipeline_stages(workload, pp, first, last) (else computed). ZB-H1's suffix sums (schedules.zbh1_pipe_s)."""
    keys, inverse, width = _keys_and_width(workload, pp, first, last, width)
    found = [_run_ends(workload, int(p), int(f) or None, int(l_) or None) for p, f, l_ in keys]
    n_ends = max(len(e[0]) for e in found)
    position, column = np.full((len(keys), n_ends), -1.0), np.zeros((len(keys), n_ends), dtype=np.int64)
    after = np.zeros((len(keys), n_ends, width))
    for row, (ends, cols, count) in enumerate(found):  # one row per distinct key, gathered to every candidate
        position[row, :len(ends)], column[row, :len(ends)] = ends, cols
        after[row, :len(ends), :count.shape[1]] = count
    return position[inverse], column[inverse], after[inverse]


def device_columns(workload: Workload, p: int, first: int | None = None, last: int | None = None) -> np.ndarray:
    """(p,) the column of pipeline_stages' representatives that prices each of the p devices (the earliest stage
    of its kind, `_representatives`' key)."""
    index = _representatives(workload, p, first, last)[0]
    column = {int(s): c for c, s in enumerate(index)}
    return np.array([column[int(k)] for k in _stage_kinds(workload, p, first, last)[3]], dtype=np.int64)


def dualpipe_pair_columns(workload: Workload, pp: np.ndarray, first: np.ndarray | None = None,
                          last: np.ndarray | None = None, width: int | None = None) -> np.ndarray:
    """(N, S) column of the representative of the stage that shares a DualPipe device with each column's.

    DualPipe rank r holds stages r and p − 1 − r of a p-stage split (`deepseek-ai/DualPipe:examples`,
    `full_modules[rank]` and `full_modules[pp_size - 1 - rank]`; DeepSeek-V3 §3.2.3). The partner stage's
    column is that of the earliest stage of its kind (the same key as `_representatives`); -1 pads. `width`:
    the stage columns of pipeline_stages(workload, pp, first, last), when the caller has them (else computed)."""
    keys, inverse, width = _keys_and_width(workload, pp, first, last, width)
    out = np.full((len(keys), width), -1)
    for row, (p, f, l_) in enumerate(keys):  # one row per distinct key, gathered to every candidate
        p, f, l_ = int(p), int(f) or None, int(l_) or None
        kind = _stage_kinds(workload, p, f, l_)[3]
        index = _representatives(workload, p, f, l_)[0]
        column = {int(s): c for c, s in enumerate(index)}
        cols = [column[int(kind[p - 1 - int(s)])] for s in index]
        out[row, :len(cols)] = cols
    return out[inverse]


def per_stage(counts: np.ndarray, per_class: list[np.ndarray]) -> np.ndarray:
    """Σ over classes of (layers of the class on each stage) × per-layer value: (N, S)."""
    values = np.stack(per_class, axis=1)  # (N, C)
    return np.einsum("nsc,nc->ns", counts, values)
