"""The collectives of a calibration Design linearised through the real model at θ (design.py's module docstring):
per observation t = C + Σ_l A_l·α_l + Σ_l A'_l·π_l + Σ_l,p A^p_l·α^p_l + Σ_F B_F / F, the slopes by finite differences of
`select.default_model` itself, and which figures the rows set (the outermost level a row spans, and of those
only the figure whose term is the row's largest: binding_terms). A part of Design, split out for its length: it
reads and sets the Design's own fields."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from moesim.calibrate.predict import collective_time_s

PROBE_STEP = 1e-3  # relative finite-difference step for the collective slopes
MIN_LATENCY_STEP_S = 1e-9  # absolute floor of the latency step (a relative step of ~0 loses all digits)
# The prices the probes of one calibration made (calspeed, session 9): a calibration probes the same θ of the same
# profile again and again (the prior θ in every weight round and on each bootstrap resample, a trust-region step
# back, the fill search's MAP cost at a fit's own θ), and a price is a function of the profile, the figures set on
# it and the term alone. Kept while a `priced_once` scope is open (fit_profile, with_bootstrap, facts inference),
# per profile object (held beside its prices, so its id is not reused), dropped when the outermost scope closes or
# past MAX_MEMO_FIGURE_SETS sets of figures. Only repeats are served: every price is computed as before once.
MAX_MEMO_FIGURE_SETS = 20000
_memo: dict[int, tuple[object, dict]] = {}
_scopes = 0


@contextmanager
def priced_once():
    """While open (nested scopes share one), probe reuses the prices it has made (module comment)."""
    global _scopes
    _scopes += 1
    try:
        yield
    finally:
        _scopes -= 1
        if not _scopes:
            _memo.clear()


def _prices(prior) -> dict | None:
    """{figures: {term: seconds}} made on `prior` in the open scope; None outside any."""
    if not _scopes:
        return None
    entry = _memo.get(id(prior))
    if entry is None or entry[0] is not prior:
        if sum(len(known) for _, known in _memo.values()) > MAX_MEMO_FIGURE_SETS:
            _memo.clear()
        entry = _memo[id(prior)] = (prior, {})
    return entry[1]


def probe(design, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, C, D): per observation, seconds per unit α_l, per unit π_l, per unit α^LL_l then per unit α^LL128_l
    (4 × levels columns), per unit 1/W_l, the rest, and per unit 1/V_l, 1/V'_l (columns V, V' of each level in nvls_levels order) and 1/U_m,
    1/P_l (extra_figures order), at θ."""
    n, n_lev = len(design.observations), len(design.levels)
    a, b, c = np.zeros((n, 4 * n_lev)), np.zeros((n, n_lev)), np.zeros(n)
    d = np.zeros((n, 2 * len(design.nvls_levels) + len(design.extra_figures)))
    if not design._collective_terms:
        return a, b, c, d
    values, memory_bw, nvls = design.level_values(theta), design.memory_bw(theta), design.nvls_values(theta)
    net, p2p, hops = design.extra_values(theta), design.p2p_latencies(theta), design.protocol_latencies(theta)
    unique, rows_i, terms_i = _terms(design)
    memo = _prices(design.prior)

    def times(vals, nv=nvls, nt=net, pl=p2p, pr=hops if design.per_protocol else None) -> np.ndarray:
        """Seconds of each unique term on the model with these figures (memo: module comment)."""
        if memo is None:
            model = design._model_at(vals, memory_bw, nv, nt, pl, pr)
            return np.array([collective_time_s(u, design.prior, model) for u in unique])
        key = (tuple(vals), memory_bw, tuple(nv.items()), tuple(nt.items()), tuple(pl),
               None if pr is None else tuple(pr))
        if len(memo) > MAX_MEMO_FIGURE_SETS:
            memo.clear()
        known = memo.setdefault(key, {})
        missing = [u for u in unique if u not in known]
        if missing:
            model = design._model_at(vals, memory_bw, nv, nt, pl, pr)
            known.update((u, collective_time_s(u, design.prior, model)) for u in missing)
        return np.array([known[u] for u in unique])

    # per unique term (rows of these arrays), the slope of each figure: columns as a's, b's and d's
    zero = np.zeros(len(unique))
    base = times(values)
    slopes_a, slopes_b = [], []
    for j, (alpha, bw) in enumerate(values):
        bumped = list(values)
        step = max(alpha * PROBE_STEP, MIN_LATENCY_STEP_S)
        bumped[j] = (alpha + step, bw)
        slopes_a.append((times(bumped) - base) / step)
        bumped[j] = (alpha, bw / (1 + PROBE_STEP))
        slopes_b.append((times(bumped) - base) * bw / PROBE_STEP)
    for j, pi in enumerate(p2p):  # π raised, α held (π moves nothing without an all-to-all or send/recv)
        if not design._has_p2p:
            slopes_a.append(zero)
            continue
        step = max(pi * PROBE_STEP, MIN_LATENCY_STEP_S)
        up = times(values, pl=[x + step if g == j else x for g, x in enumerate(p2p)])
        slopes_a.append((up - base) / step)
    for q in range(2):  # α^LL, then α^LL128 raised, α held (nothing without per_protocol or a collective the tuner prices)
        for j, hop in enumerate(hops):
            if not design._has_tuner:
                slopes_a.append(zero)
                continue
            step = max(hop[q] * PROBE_STEP, MIN_LATENCY_STEP_S)
            up = times(values, pr=[tuple(x + step if (g, f) == (j, q) else x for f, x in enumerate(h))
                                   for g, h in enumerate(hops)])
            slopes_a.append((up - base) / step)
    slopes_d = []
    for j in design.nvls_levels:  # V, then V' lowered, the other held (each η below its cap while V < W)
        for f in range(2):
            lowered = tuple(v / (1 + PROBE_STEP) if g == f else v for g, v in enumerate(nvls[j]))
            up = times(values, {**nvls, j: lowered})
            slopes_d.append((up - base) * nvls[j][f] / PROBE_STEP)
    for fig in net:  # U or P lowered, W held (P moves nothing without an all-to-all or send/recv)
        if fig[1] == "p2p_factor" and not design._has_p2p:
            slopes_d.append(zero)
            continue
        up = times(values, nvls, {**net, fig: net[fig] / (1 + PROBE_STEP)})
        slopes_d.append((up - base) * net[fig] / PROBE_STEP)
    # each collective term of each row: its slopes added to the row's, and the rest C = t − Σ slope × figure,
    # subtracted figure by figure in the order the per-row loop of sessions 1-8 did (the same floating-point sums)
    rest = base[terms_i]
    for j, (alpha, bw) in enumerate(values):
        rest -= slopes_a[j][terms_i] * alpha + slopes_b[j][terms_i] / bw
    for j, pi in enumerate(p2p):
        rest -= slopes_a[n_lev + j][terms_i] * pi
    for q in range(2):
        for j, hop in enumerate(hops):
            rest -= slopes_a[(2 + q) * n_lev + j][terms_i] * hop[q]
    for k, j in enumerate(design.nvls_levels):
        for f in range(2):
            rest -= slopes_d[2 * k + f][terms_i] / nvls[j][f]
    for k, fig in enumerate(net):
        rest -= slopes_d[2 * len(design.nvls_levels) + k][terms_i] / net[fig]
    np.add.at(a, rows_i, np.stack(slopes_a, axis=1)[terms_i])
    np.add.at(b, rows_i, np.stack(slopes_b, axis=1)[terms_i])
    if slopes_d:
        np.add.at(d, rows_i, np.stack(slopes_d, axis=1)[terms_i])
    np.add.at(c, rows_i, rest)
    tol = 1e-12 * np.abs(np.concatenate([a.ravel(), b.ravel(), d.ravel()])).max(initial=0.0)
    # A row's latency is a sum of hops over every level it spans, which the row cannot tell apart: it sets the
    # latency of the outermost level it spans (the one it adds), inner levels keep what rows confined to them
    # set, else the prior. Likewise W: a row spanning several levels sets only the outermost one's W (a
    # multi-node row the model bounds by NVLink leaves NVLink's W to single-node rows). V, V', U, P: the rows
    # their line bounds (V' is multi-node by nature, which its ratio ρ takes). π as α: the send/recv rows set
    # the π of the outermost level they span. The hop latency is one term of a row (all its hops, one protocol), and
    # sets the figure of the row's protocol: α (Simple), α^LL or α^LL128, at the outermost level the row spans.
    # And a row sets only its binding figure (binding_terms).
    cols = [np.abs(a[:, g * n_lev:(g + 1) * n_lev]) for g in range(4)]  # α, π, α^LL, α^LL128
    ring_spans, p2p_spans, ll_spans, ll128_spans = (col > tol for col in cols)
    spans = ring_spans | p2p_spans | ll_spans | ll128_spans
    rows = spans.any(axis=1)
    outer_of_row = n_lev - 1 - np.argmax(spans[:, ::-1], axis=1)
    lines = np.array(list(np.ravel(list(nvls.values()))) + list(net.values()))
    hop_s = (cols[0] @ np.array([v[0] for v in values]) + cols[2] @ np.array([h[0] for h in hops])
             + cols[3] @ np.array([h[1] for h in hops]))
    binds = binding_terms(hop_s, cols[1] @ np.array(p2p), np.abs(b) / np.array([v[1] for v in values]),
                          np.abs(d) / lines if len(lines) else d, np.maximum(c, 0.0))
    ring_binds, p2p_binds, bound, line_binds = binds
    bound[rows] &= np.arange(n_lev)[None, :] == outer_of_row[rows, None]
    # hierarchical (design.py): every protocol's hop follows α, so an LL / LL128 row binds α as well as its departure
    alpha_spans = (ring_spans | ll_spans | ll128_spans) if design.hierarchical else ring_spans
    # per row, the level whose α it sets, and the lines it sets (calibrate/transfer.py reads which machinery set them)
    design.alpha_rows, design.line_rows = _outermost_of_rows(alpha_spans & ring_binds[:, None]), line_binds
    # the rows that set each level's W and π (scripts/heldout_pairs.py reads them; session 12, heldout)
    design.bound_rows, design.p2p_rows = bound, _outermost_of_rows(p2p_spans & p2p_binds[:, None])
    design.level_used = np.stack([design.alpha_rows.any(axis=0), bound.any(axis=0)], axis=1)
    design.p2p_latency_used = _outermost(p2p_spans & p2p_binds[:, None])
    design.protocol_latency_used = np.stack([_outermost(ll_spans & ring_binds[:, None]),
                                             _outermost(ll128_spans & ring_binds[:, None])], axis=1)
    lev, n_lev, n_nvls = design._offsets()[2], len(design.levels), len(design.nvls_levels)
    design.nvls_used = line_binds[:, :2 * n_nvls].any(axis=0).reshape(-1, 2)
    design.extra_used = line_binds[:, 2 * n_nvls:].any(axis=0)
    design._free[lev:lev + 2 * n_lev:2] = design.level_used[:, 0]
    design._free[lev + 1:lev + 2 * n_lev:2] = design.level_used[:, 1]
    # log V moves V and V' (= ρ V); log ρ only V'
    design._free[lev + 2 * n_lev:lev + 2 * n_lev + 2 * n_nvls:2] = design.nvls_used.any(axis=1)
    design._free[lev + 2 * n_lev + 1:lev + 2 * n_lev + 2 * n_nvls:2] = design.nvls_used[:, 1]
    first = lev + 2 * n_lev + 2 * n_nvls
    design._free[first:first + len(design.extra_figures)] = design.extra_used
    design._free[design._p2p_offset():design._p2p_offset() + n_lev] = design.p2p_latency_used
    design._free[design._protocol_offset():design._protocol_offset() + 2 * n_lev] = \
        design.protocol_latency_used.T.ravel()  # every level's α^LL, then every level's α^LL128
    return a, b, c, d


def _terms(design) -> tuple[list, np.ndarray, np.ndarray]:
    """(the Design's distinct collective terms, and per collective term of a row its row and its index among them),
    made once per Design (its terms are fixed when it is built)."""
    cached = getattr(design, "_probe_terms", None)
    if cached is None:
        unique = sorted({t for _, t in design._collective_terms}, key=repr)
        index = {u: k for k, u in enumerate(unique)}
        cached = design._probe_terms = (unique, np.array([i for i, _ in design._collective_terms], dtype=int),
                                        np.array([index[t] for _, t in design._collective_terms], dtype=int))
    return cached


def binding_terms(ring_latency_s: np.ndarray, p2p_latency_s: np.ndarray, bandwidth_s: np.ndarray,
                  line_s: np.ndarray, rest_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which figure binds each row: the term with the largest share of the row's predicted time, among the
    summed hop latency (ring / tree / NVLS: one term, the row cannot split it between levels), the summed
    send/recv latency, each level's S / W, each line's S / F, and the rest C that no fitted figure scales
    (NCCL's base latencies, LL's copies). Returns (ring latency binds, send/recv latency binds, W_l binds,
    line binds), rows first. A figure moves only where some row's binding term is its own: a row whose time
    is mostly another term says little about it (its relative misfit is the figure's divided by its share, so
    it would move the figure by the misfit over a small share). Hence an all-reduce log whose rows NVLS wins
    at large sizes moves nvls_efficiency there, and the NVLink hop latency only where ring/LL rows are
    latency-bound; a row mostly fixed cost moves nothing."""
    columns = np.column_stack([ring_latency_s, p2p_latency_s, bandwidth_s, line_s, rest_s])
    binding = np.argmax(columns, axis=1)
    hit = (np.arange(columns.shape[1])[None, :] == binding[:, None]) & (columns > 0)
    n_lev = bandwidth_s.shape[1]
    return hit[:, 0], hit[:, 1], hit[:, 2:2 + n_lev], hit[:, 2 + n_lev:-1]


def _outermost(spans: np.ndarray) -> np.ndarray:
    """Per level: True where it is the outermost level some row spans (rows × levels booleans)."""
    return _outermost_of_rows(spans).any(axis=0)


def _outermost_of_rows(spans: np.ndarray) -> np.ndarray:
    """Rows × levels: True at the outermost level each row spans (rows spanning none: all False)."""
    out = np.zeros_like(spans)
    rows = np.flatnonzero(spans.any(axis=1))
    out[rows, spans.shape[1] - 1 - np.argmax(spans[rows, ::-1], axis=1)] = True
    return out
