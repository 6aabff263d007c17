"""Session 12 (heldout): every held-out pair that calibrate's default (`--transfer shared`) makes worse, diagnosed.

Per pair (fitted on A, held out B, worse by more than 0.3 pt in a band): the figures the fit on A moves (more than
0.5 % from the prior), the machinery of A's rows that set each (the rows whose largest term is the figure:
linearise.binding_terms), B's rows in that band that lose more than 0.5 pt (size, the machinery the model prices
them with, prior -> calibrated, and their signed busbw error), and whether B runs those rows on machinery A's rows set
the figures on. A machinery is what NCCL runs: the collective, the algorithm / protocol the model picks (NCCL's
tuner's choice, tuning.cc), and the transport (over the network when the group spans nodes, else NVLink only).
"same": every losing row's machinery (algorithm/protocol, transport) is one that set a moved figure; "different":
none is; "partly": some are.

Run: python scripts/heldout_pairs.py [--write] [--cache DIR]   (--write replaces the marked block of
docs/collectives-history.md; --cache DIR reuses scripts/heldout_rule.py's priced shared matrix).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.nccl_error import LARGE_BYTES, log_error  # noqa: E402
from moesim.calibrate.nccl_table import (_points, _size, calibration_matrix, entry_hardware,  # noqa: E402
                                         matrix_fit, read_manifest)
from moesim.calibrate.predict import CollectiveTerm  # noqa: E402
from moesim.calibrate.transfer import NOT_INTERCONNECT  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.heldout_rule import NOISE, priced  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN heldout_pairs: python scripts/heldout_pairs.py --write -->"
END = "<!-- END heldout_pairs -->"
MOVED = 0.005  # a figure "moves" when it leaves the prior by more than 0.5 %
LOSES = 0.005  # a held-out row "loses" when its |busbw error| grows by more than 0.5 pt
_OP = {"all_reduce": "AR", "all_gather": "AG", "reduce_scatter": "RS", "all_to_all": "A2A", "send_recv": "SR",
       "broadcast": "BC"}


def _short(name: str) -> str:
    return name.removesuffix("_perf.log")


def machinery(op: str, algorithm: str, ranks: int, domain: int) -> str:
    """One row's machinery: collective, algorithm/protocol, transport."""
    return f"{_OP.get(op, op)} {algorithm} {'net' if ranks > domain else 'nvl'}"


def figure_rows(design) -> dict[str, np.ndarray]:
    """{figure name: rows that set it} for the figures whose setting rows the design records."""
    n_nvls = len(design.nvls_levels)
    out = {}
    for j, level in enumerate(design.levels):
        out[f"{level.name}.latency"] = design.alpha_rows[:, j]
        out[f"{level.name}.bandwidth"] = design.bound_rows[:, j]
        out[f"{level.name}.p2p_latency"] = design.p2p_rows[:, j]
    for i, j in enumerate(design.nvls_levels):
        out[f"{design.levels[j].name}.nvls_bandwidth"] = design.line_rows[:, 2 * i]
        out[f"{design.levels[j].name}.nvlstree_ratio"] = design.line_rows[:, 2 * i + 1]
    for k, (m, _, name) in enumerate(design.extra_figures):
        out[f"{design.levels[m].name}.{name}"] = design.line_rows[:, 2 * n_nvls + k]
    return out


def fit_figures(result) -> list[tuple[str, float, set[str]]]:
    """(figure, relative move, machinery of the rows that set it) for every figure the fit moved by > MOVED."""
    design, theta = result.fit.point[0], result.fit.point[1]
    model = design.model_at_theta(theta)
    domain = design.prior.interconnect[0].domain_devices
    labels = []
    for obs in design.observations:
        terms = [t for t in obs.terms if isinstance(t, CollectiveTerm)]
        labels.append(sorted({machinery(t.op, model.cost(t.op, t.size_bytes, t.group).algorithm, t.group.size, domain)
                              for t in terms}))
    rows = figure_rows(design) if getattr(design, "alpha_rows", None) is not None else {}
    out = []
    for p in result.fit.parameters:
        if p.fitted and p.prior > 0 and abs(p.value / p.prior - 1) > MOVED and not p.name.startswith(NOT_INTERCONNECT):
            setting = rows.get(p.name)
            kinds = set() if setting is None else {m for i in np.flatnonzero(setting) for m in labels[i]}
            out.append((p.name, p.value / p.prior - 1, kinds))
    for f in result.fit.fills:  # the ramp's fill (fill_fit.py), searched outside θ: its rows are not recorded
        if f.prior_bytes and abs(f.fill_bytes / f.prior_bytes - 1) > MOVED:
            out.append((f"{f.level}.fill", f.fill_bytes / f.prior_bytes - 1, set()))
    return out


def losing_sizes(held: dict, prior, profile, band: int) -> tuple:
    """(the held-out log's error at the prior, its hardware at the prior, [(row at the prior, row calibrated)] of the
    rows in `band` (0: >= 1 MiB, 1: below) whose |busbw error| grows by more than LOSES)."""
    pts, g = _points(MANIFEST.parent, held), held.get("gpus_per_thread", 1)
    hw0 = entry_hardware(held, prior)
    before, after = log_error(pts, hw0, None, g), log_error(pts, entry_hardware(held, profile), None, g)
    return before, hw0, [(a, b) for a, b in zip(before.sizes, after.sizes)
                         if (a.size_bytes >= LARGE_BYTES) == (band == 0)
                         and abs(b.busbw_error) > abs(a.busbw_error) + LOSES]


def losing_rows(held: dict, prior, profile, band: int) -> list[tuple]:
    """(size, machinery prior, machinery calibrated, error prior, error calibrated) of the held-out rows in `band`
    (0: >= 1 MiB, 1: below) whose |busbw error| grows by more than LOSES."""
    before, hw0, rows = losing_sizes(held, prior, profile, band)
    domain = hw0.interconnect[0].domain_devices
    return [(a.size_bytes, machinery(before.op, a.algorithm, before.ranks, domain),
             machinery(before.op, b.algorithm, before.ranks, domain), a.busbw_error, b.busbw_error) for a, b in rows]


def _rows_text(rows: list[tuple]) -> str:
    """Losing rows grouped by machinery: 'RS ring/LL128 net 1 MiB-4 MiB (3 rows, +12.1 -> +15.0 % at the worst)'."""
    groups: dict[str, list[tuple]] = {}
    for r in rows:
        groups.setdefault(r[1] if r[1] == r[2] else f"{r[1]} -> {r[2].split(' ', 1)[1]}", []).append(r)
    parts = []
    for mach, rs in groups.items():
        worst = max(rs, key=lambda r: abs(r[4]) - abs(r[3]))
        span = _size(rs[0][0]) if len(rs) == 1 else f"{_size(rs[0][0])}-{_size(rs[-1][0])}"
        parts.append(f"{mach} {span} ({len(rs)} row{'s' * (len(rs) > 1)}; worst {_size(worst[0])} "
                     f"{100 * worst[3]:+.1f} -> {100 * worst[4]:+.1f} %)")
    return "; ".join(parts) or "none by more than 0.5 pt (many small losses)"


def _same(rows: list[tuple], figures: list[tuple]) -> str:
    """The losing rows' machinery (algorithm/protocol and transport, the collective aside: NCCL runs an all-gather's
    and an all-reduce's ring/LL on the same primitives) against that of the rows that set the moved figures."""
    setting = {m.split(" ", 1)[1] for f in figures for m in f[2]}
    hits = [r[2].split(" ", 1)[1] in setting for r in rows]
    if not rows or not setting:
        return "-"
    return "same" if all(hits) else "different" if not any(hits) else "partly"


def worse_pairs(pairs) -> list[tuple]:
    """(pair, band) for every pair worse than the prior by more than NOISE in that band (0: >= 1 MiB, 1: below)."""
    return [(p, band) for p in pairs for band in (0, 1)
            if (p.prior_mape, p.prior_mape_small)[band] is not None
            and (p.calibrated_mape, p.calibrated_mape_small)[band] > (p.prior_mape, p.prior_mape_small)[band] + NOISE]


def diagnosis_cells(worse: list[tuple]) -> list[tuple[str, ...]]:
    """One row of cells per worse (pair, band): fitted on -> held out, band, MAPE prior -> shared, the figures the fit
    moves, the held-out rows that lose, their machinery (render's table; scripts/newlogs7_check.py --diagnose)."""
    from moesim.specs.load import load_hardware

    entries = {e["file"]: e for e in read_manifest(MANIFEST)}
    fits, out = {}, []
    for p, band in worse:
        fit_on, held = entries[p.fitted_on], entries[p.held_out]
        if p.fitted_on not in fits:  # the matrix's own fit (nccl_table.matrix_fit, cached: not fitted again)
            result = matrix_fit(MANIFEST, p.fitted_on)
            fits[p.fitted_on] = (load_hardware(fit_on["hardware"]), result.profile, fit_figures(result))
        prior, profile, figures = fits[p.fitted_on]
        rows = losing_rows(held, prior, profile, band)
        figs = "; ".join(f"{n} {100 * m:+.1f} % ({', '.join(sorted(k)) or 'rows not recorded'})"
                         for n, m, k in figures) or "none by more than 0.5 %"
        mape = ((p.prior_mape, p.calibrated_mape), (p.prior_mape_small, p.calibrated_mape_small))[band]
        out.append((f"{_short(p.fitted_on)} -> {_short(p.held_out)}", (">= 1 MiB", "< 1 MiB")[band],
                    f"{100 * mape[0]:.2f} -> {100 * mape[1]:.2f} %", figs, _rows_text(rows), _same(rows, figures)))
    return out


def render(cache: Path | None) -> str:
    # without a cache, the matrix exactly as the calibration tests price it (lru-cached there: one pricing per process)
    pairs = priced("shared", cache) if cache is not None else list(calibration_matrix(MANIFEST))
    worse = worse_pairs(pairs)
    lines = ["| fitted on -> held out | band | MAPE prior -> shared | figures the fit moves (machinery of the rows "
             "that set them) | held-out rows that lose > 0.5 pt (machinery prior [-> calibrated]; signed error) | "
             "machinery |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in diagnosis_cells(worse)]
    n0 = sum(b == 0 for _, b in worse)
    lines.append("")
    lines.append(f"{len(pairs)} pairs; worse by more than 0.3 pt under `--transfer shared`: {n0} at >= 1 MiB, "
                 f"{len(worse) - n0} below 1 MiB.")
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END, cache=True)
