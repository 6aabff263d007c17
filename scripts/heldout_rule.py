"""Session 12 (heldout): the lead's rule for a calibrate transfer default, judged over every pair of the held-out
matrix (docs/collectives-history.md, "Session 12 (heldout)"; the rule was committed verbatim before any candidate was
priced across the matrix).

A transfer becomes the default of `calibrate` only if, over every pair of the matrix, (i) the number of worse pairs
(> 0.3 pt) falls at >= 1 MiB and does not rise below 1 MiB, (ii) the number of better pairs does not fall in either
band, (iii) the matrix's summed held-out MAPE does not rise in either band, (iv) no cluster's mean change at >= 1 MiB
becomes positive, and (v) the shipped priors and every uncalibrated figure are unchanged (checked apart: the quick
grid's sha256, benchmarks/collective_grid.py; a transfer rule only rewrites calibrate's output).

Run: python scripts/heldout_rule.py RULE [RULE ...] [--cache DIR] [--rule session13]   prices the matrix under `shared`
(calibrate's default) and each RULE (nccl_table.calibration_matrix at the automatic prior weight only), caches each as
DIR/RULE.json (pass --cache to reuse a matrix already priced on this tree), and prints the rule's checks for each RULE.
A RULE `hop:NAME` prices calibrate's `--hop-latency NAME` (fit.HOP_LATENCY_RULES) under the shared transfer; a RULE
`weight:NAME` calibrate's `--row-weight NAME` (row_weight.ROW_WEIGHTS; session 16, bandfit) under the shared transfer;
a RULE `TRANSFER+weight:NAME` both at once (session 24, newlogs14: `lines+weight:band-loss`).

`--rule session13` judges by session 13's rule instead (docs/collectives-history.md "Session 13 (heldout2)", committed
verbatim before any candidate was priced): (i) no cluster's mean change at >= 1 MiB is positive, (ii) the number of
worse pairs (> 0.3 pt) does not rise in either band, (iii) the summed held-out MAPE does not rise by more than 0.1 pt in
either band, (iv) the shipped priors and every uncalibrated figure unchanged (the quick grid's sha256, checked apart).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.nccl_table import HeldOutPair, calibration_matrix  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
NOISE = 0.003  # "worse / better by more than 0.3 pt" (tests/calibrate/test_calibration_matrix.py NOISE)
BANDS = (">= 1 MiB", "< 1 MiB")


def cached(path: Path | None, compute) -> list[HeldOutPair]:
    """The matrix stored at `path` where it is there, else compute() (and written there); path None: no cache."""
    if path is not None and path.exists():
        return [HeldOutPair(**row) for row in json.loads(path.read_text(encoding="utf-8"))]
    pairs = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([p.__dict__ for p in pairs], indent=0), encoding="utf-8")
    return pairs


def cache_arg(args: list[str]) -> tuple[Path | None, list[str]]:
    """(the directory of `--cache DIR`, or None; the other arguments)."""
    if "--cache" not in args:
        return None, args
    i = args.index("--cache")
    return Path(args[i + 1]), args[:i] + args[i + 2:]


def _matrix(rule: str) -> list[HeldOutPair]:
    if rule.startswith("hop:"):  # calibrate's --hop-latency NAME, the transfer shared
        from moesim.calibrate.fit import HOP_LATENCY_RULES
        return list(calibration_matrix(MANIFEST, latency_per_protocol=HOP_LATENCY_RULES[rule[4:]],
                                       fixed_weight=False))
    if rule.startswith("weight:"):  # calibrate's --row-weight NAME (row_weight.ROW_WEIGHTS), the transfer shared
        return list(calibration_matrix(MANIFEST, row_weight=rule[7:], fixed_weight=False))
    if "+weight:" in rule:  # session 24: `TRANSFER+weight:NAME`, calibrate's --transfer TRANSFER --row-weight NAME
        transfer, weight = rule.split("+weight:")
        return list(calibration_matrix(MANIFEST, transfer_rule=transfer, row_weight=weight, fixed_weight=False))
    return list(calibration_matrix(MANIFEST, transfer_rule=rule, fixed_weight=False))


def priced(rule: str, cache: Path | None = None) -> list[HeldOutPair]:
    """The matrix under `rule`, from cache/rule.json where it is there, else priced (and written there)."""
    return cached(None if cache is None else cache / f"{rule.replace(':', '-')}.json", lambda: _matrix(rule))


def _band(p: HeldOutPair, band: int) -> tuple[float | None, float | None]:
    """(prior, calibrated) MAPE of a pair in a band (None, None: the held-out log has no row there)."""
    return (p.prior_mape, p.calibrated_mape) if band == 0 else (p.prior_mape_small, p.calibrated_mape_small)


def counts(pairs: list[HeldOutPair], band: int) -> tuple[int, int, float, int]:
    """(worse, better by more than NOISE, summed calibrated MAPE, pairs with rows) in a band."""
    rows = [_band(p, band) for p in pairs if _band(p, band)[0] is not None]
    return (sum(c > b + NOISE for b, c in rows), sum(c < b - NOISE for b, c in rows), sum(c for _, c in rows),
            len(rows))


def cluster_means(pairs: list[HeldOutPair]) -> dict[str, float]:
    """Mean change of the held-out MAPE >= 1 MiB per cluster (calibrated - prior)."""
    by: dict[str, list[float]] = {}
    for p in pairs:
        by.setdefault(p.cluster, []).append(p.calibrated_mape - p.prior_mape)
    return {c: sum(v) / len(v) for c, v in by.items()}


def verdict(base: list[HeldOutPair], cand: list[HeldOutPair], name: str) -> tuple[bool, list[str]]:
    """The rule's checks (i)-(iv) of `cand` against `base` (the same pairs in the same order): (passes, lines)."""
    assert [(p.fitted_on, p.held_out) for p in base] == [(p.fitted_on, p.held_out) for p in cand]
    lines, ok = [f"--transfer {name} against shared, every pair of the held-out matrix ({len(base)})"], True
    b, c = [counts(base, k) for k in (0, 1)], [counts(cand, k) for k in (0, 1)]
    for k in (0, 1):
        lines.append(f"  {BANDS[k]} ({c[k][3]} pairs): worse | better {b[k][0]} | {b[k][1]} -> {c[k][0]} | {c[k][1]}, "
                     f"summed held-out MAPE {100 * b[k][2]:.1f} -> {100 * c[k][2]:.1f}")
    ok_i = c[0][0] < b[0][0] and c[1][0] <= b[1][0]
    ok_ii = c[0][1] >= b[0][1] and c[1][1] >= b[1][1]
    ok_iii = c[0][2] <= b[0][2] and c[1][2] <= b[1][2]
    mb, mc = cluster_means(base), cluster_means(cand)
    turned = [k for k in mc if mc[k] > 0 and not mb[k] > 0]
    ok_iv = not turned
    lines.append("  mean change >= 1 MiB per cluster (pt), shared -> " + name + ": " + ", ".join(
        f"{k} {100 * mb[k]:+.2f} -> {100 * mc[k]:+.2f}" for k in sorted(mb)))
    for label, good in (("(i) worse falls >= 1 MiB, does not rise < 1 MiB", ok_i),
                        ("(ii) better does not fall in either band", ok_ii),
                        ("(iii) summed MAPE does not rise in either band", ok_iii),
                        ("(iv) no cluster's mean change >= 1 MiB becomes positive"
                         + (f" (turned: {', '.join(turned)})" if turned else ""), ok_iv)):
        lines.append(f"  {label}: {'holds' if good else 'fails'}")
        ok &= good
    lines.append(f"  verdict on (i)-(iv): {'meets' if ok else 'fails'} the rule; (v) is the quick grid's sha256")
    return ok, lines


SUM_SLACK = 0.001  # session 13 (iii): "does not rise by more than 0.1 pt"


def verdict_session13(base: list[HeldOutPair], cand: list[HeldOutPair], name: str) -> tuple[bool, list[str]]:
    """Session 13's rule, checks (i)-(iii), of `cand` against `base` (the same pairs in the same order)."""
    assert [(p.fitted_on, p.held_out) for p in base] == [(p.fitted_on, p.held_out) for p in cand]
    lines = [f"--transfer {name} against shared, every pair of the held-out matrix ({len(base)}), session 13's rule"]
    b, c = [counts(base, k) for k in (0, 1)], [counts(cand, k) for k in (0, 1)]
    for k in (0, 1):
        lines.append(f"  {BANDS[k]} ({c[k][3]} pairs): worse | better {b[k][0]} | {b[k][1]} -> {c[k][0]} | {c[k][1]}, "
                     f"summed held-out MAPE {100 * b[k][2]:.2f} -> {100 * c[k][2]:.2f} ({100 * (c[k][2] - b[k][2]):+.2f})")
    mb, mc = cluster_means(base), cluster_means(cand)
    positive = sorted(k for k in mc if mc[k] > 0)
    ok_i = not positive
    ok_ii = c[0][0] <= b[0][0] and c[1][0] <= b[1][0]
    ok_iii = c[0][2] <= b[0][2] + SUM_SLACK and c[1][2] <= b[1][2] + SUM_SLACK
    lines.append("  mean change >= 1 MiB per cluster (pt), shared -> " + name + ": " + ", ".join(
        f"{k} {100 * mb[k]:+.2f} -> {100 * mc[k]:+.2f}" for k in sorted(mb)))
    ok = True
    for label, good in (("(i) no cluster's mean change >= 1 MiB is positive"
                         + (f" (positive: {', '.join(positive)})" if positive else ""), ok_i),
                        ("(ii) worse pairs do not rise in either band", ok_ii),
                        ("(iii) summed MAPE rises by no more than 0.1 pt in either band", ok_iii)):
        lines.append(f"  {label}: {'holds' if good else 'fails'}")
        ok &= good
    lines.append(f"  verdict on (i)-(iii): {'meets' if ok else 'fails'} the rule; (iv) is the quick grid's sha256")
    return ok, lines


def moved(base: list[HeldOutPair], cand: list[HeldOutPair]) -> list[str]:
    """Every pair whose held-out MAPE moves by more than NOISE in either band, shared -> candidate."""
    out = []
    for a, b in zip(base, cand):
        for k in (0, 1):
            (p0, c0), (_, c1) = _band(a, k), _band(b, k)
            if p0 is not None and not math.isclose(c0, c1, abs_tol=NOISE):
                fitted, held = (x.removesuffix("_perf.log") for x in (a.fitted_on, a.held_out))
                out.append(f"    {fitted:40s} -> {held:40s}"
                           f" {BANDS[k]:8s} prior {100 * p0:6.2f} %, shared {100 * c0:6.2f} -> {100 * c1:6.2f} %")
    return out


if __name__ == "__main__":
    cache, args = cache_arg(sys.argv[1:])
    judge = verdict
    if "--rule" in args:
        i = args.index("--rule")
        if args[i + 1] != "session13":
            sys.exit(f"heldout_rule.py: --rule {args[i + 1]!r}: allowed values: session13")
        judge, args = verdict_session13, args[:i] + args[i + 2:]
    base = priced("shared", cache)
    if judge is verdict_session13:
        print("shared (the baseline): mean change >= 1 MiB per cluster (pt): " + ", ".join(
            f"{k} {100 * v:+.2f}" for k, v in sorted(cluster_means(base).items())))
    for rule in args:
        cand = priced(rule, cache)
        print("\n".join(judge(base, cand, rule)[1] + ["  pairs that move by more than 0.3 pt:"] + moved(base, cand)))
