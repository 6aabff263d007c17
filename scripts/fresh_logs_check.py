"""Session 11's decision rule for the unshipped options, judged on the fresh logs (docs/collectives-history.md,
"Session 11 (newlogs3)"; the rule and the candidates' definitions were committed in 7fb1b63, before any fresh log was
priced): every healthy log priced as shipped and with each option, the fresh logs' test (i) and all healthy logs'
test (ii), and the held-out calibration pairs a fresh log takes part in.

Each log is priced as the per-log table prices it (calibrate/nccl_error.log_error: its system facts, its model, the
host floor); an option changes only itself on that model. The options: p2p_net_model "concurrent" (session 9,
a2aconc), the published per-system channel count (session 7; scripts/channel_default_check.py's "published"
column), ring_net_channel_gbps = 20 (session 10, ringnet), broadcast_model "nccl-fill" and "nccl-tests" (session 10,
bcast), and for calibration pairs `--transfer machinery` (session 10, calpairs).

Run: python scripts/fresh_logs_check.py [--write]   (--write replaces the marked block of
docs/collectives-history.md); python scripts/fresh_logs_check.py --all-pairs prints the rule's (ii) for
--transfer machinery over the whole held-out matrix (two whole matrices: minutes), which the block does not hold.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import calibration_matrix, matrix_clusters, read_manifest  # noqa: E402
from scripts.channel_default_check import published_counts, read_evidence, system_channels  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.heldout_rule import counts  # noqa: E402
from scripts.log_variants import BARS, pct  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN fresh_logs_check: python scripts/fresh_logs_check.py --write -->"
END = "<!-- END fresh_logs_check -->"
# The logs session 11 added (tests/data/nccl/SOURCES.md, "Session 11 (newlogs3)"), committed before pricing.
FRESH = ("b200-gke-a4-ctk-2node_all_gather_perf.log", "h100-xxrjun-2node-b_alltoall_perf.log",
         "h100-xxrjun-2node-b_sendrecv_perf.log")
WORSE_PT = 0.02  # the rule's "worse by more than 2 pt"
OPTIONS = ("p2p_net_model=concurrent", "published channel count", "ring_net_channel_gbps=20",
           "broadcast_model=nccl-fill", "broadcast_model=nccl-tests")
_REPLACE = {"p2p_net_model=concurrent": {"p2p_net_model": "concurrent"},
            "ring_net_channel_gbps=20": {"ring_net_channel_gbps": 20.0},
            "broadcast_model=nccl-fill": {"broadcast_model": "nccl-fill"},
            "broadcast_model=nccl-tests": {"broadcast_model": "nccl-tests"}}


def _priced(entry: dict, option: str | None, counts: dict) -> tuple:
    """(MAPE >= 1 MiB, MAPE < 1 MiB) of one log as shipped (option None) or with `option`."""
    log = priced_log(MANIFEST.parent, entry)
    count = None
    if option == "published channel count":
        count = counts.get((entry["hardware"], log.group_size > log.hardware.interconnect[0].domain_devices))
    with system_channels(count) if count is not None else nullcontext():
        err = log.error(log.model(**_REPLACE.get(option, {})))  # built inside: plans are memoised per model
    return err.mape_large, err.mape_small


def table() -> dict[str, dict[str, tuple]]:
    """{healthy log: {"shipped" | option: (MAPE >= 1 MiB, MAPE < 1 MiB)}}."""
    counts = published_counts(read_evidence())
    return {e["file"]: {name: _priced(e, None if name == "shipped" else name, counts)
                        for name in ("shipped",) + OPTIONS}
            for e in read_manifest(MANIFEST) if e["healthy"]}


def _band_sum(rows: dict, name: str, band: int, logs) -> float:
    return sum(rows[f][name][band] for f in logs if rows[f][name][band] is not None)


def verdict(rows: dict, option: str, fresh: tuple[str, ...] = FRESH,
            unit: tuple[str, str] = ("healthy logs", "log")) -> tuple[bool, list[str]]:
    """The rule on `rows` ({log: {"shipped": (l, s), option: (l, s)}}, healthy logs only; `unit`: what a row is,
    plural and singular): (passes, lines)."""
    moved = {f: [b for b in (0, 1) if rows[f]["shipped"][b] != rows[f][option][b]] for f in rows}
    fresh_moved = [f for f in fresh if f in rows and moved[f]]
    lines, ok_i = [f"(i) fresh {unit[0]} moved: {len(fresh_moved)} of {sum(f in rows for f in fresh)}"], True
    if len(fresh_moved) < 2:
        ok_i = False
        lines.append("    fewer than two: (i) fails")
    for band in sorted({b for f in fresh_moved for b in moved[f]}):
        before, after = (_band_sum(rows, n, band, fresh_moved) for n in ("shipped", option))
        ok_i &= after < before
        lines.append(f"    fresh sum {('>= 1 MiB', '< 1 MiB')[band]}: {100 * before:.1f} -> {100 * after:.1f}"
                     f" ({'falls' if after < before else 'does not fall'})")
    worse = [(f, b) for f in fresh_moved for b in moved[f] if rows[f][option][b] - rows[f]["shipped"][b] > WORSE_PT]
    ok_i &= not worse
    lines += [f"    fresh {unit[1]} worse by more than 2 pt: {f} ({('>= 1 MiB', '< 1 MiB')[b]})" for f, b in worse]
    ok_ii = True
    for band in (0, 1):
        before, after = (_band_sum(rows, n, band, rows) for n in ("shipped", option))
        ok_ii &= after <= before
        lines.append(f"(ii) all {len(rows)} {unit[0]}, sum {('>= 1 MiB', '< 1 MiB')[band]}: {100 * before:.1f}"
                     f" -> {100 * after:.1f} ({'does not rise' if after <= before else 'rises'})")
    crossed = [(f, b) for f in rows for b in (0, 1) if rows[f]["shipped"][b] is not None
               and rows[f]["shipped"][b] <= BARS[b] < rows[f][option][b]]
    ok_ii &= not crossed
    lines.append(f"    newly over a bar: {len(crossed)}" + "".join(
        f"\n      {f.removesuffix('_perf.log')} ({('>= 1 MiB', '< 1 MiB')[b]})" for f, b in crossed))
    lines.append(f"verdict: {'meets the rule' if ok_i and ok_ii else 'fails the rule'}"
                 f" ((i) {'holds' if ok_i else 'fails'}, (ii) {'holds' if ok_ii else 'fails'})")
    return ok_i and ok_ii, lines


def fresh_pairs(transfer_rule: str | None) -> list:
    """Every held-out calibration pair (nccl_table.HeldOutPair) of the clusters that hold a fresh log, calibrate run
    with `transfer_rule` (None: calibrate's default, "shared"): nccl_table.calibration_matrix on a copy of the
    manifest that lists only those clusters' logs."""
    clusters = {c for c, logs in matrix_clusters(MANIFEST).items() if any(e["file"] in FRESH for e in logs)}
    if not clusters:
        return []
    text = MANIFEST.read_text(encoding="utf-8")
    head, *blocks = text.split("\n[[log]]\n")
    keep = [b for b in blocks if any(f'cluster = "{c}"' in b for c in clusters)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / MANIFEST.name).write_text("\n[[log]]\n".join([head] + keep), encoding="utf-8")
        for e in read_manifest(folder / MANIFEST.name):
            (folder / e["file"]).symlink_to(MANIFEST.parent / e["file"])
        return list(calibration_matrix(folder / MANIFEST.name, transfer_rule=transfer_rule))


def pair_row(pair, calibrated: list) -> str:
    """One held-out pair (nccl_table.HeldOutPair): fitted on -> held out, its prior MAPE >= 1 MiB -> the calibrated
    MAPE >= 1 MiB of each of `calibrated` (the same pair under each transfer rule), joined by ' | '."""
    return (f"{pair.fitted_on.removesuffix('_perf.log'):34s} -> {pair.held_out.removesuffix('_perf.log'):34s}"
            f"{pct(pair.prior_mape)} -> " + " | ".join(pct(p.calibrated_mape) for p in calibrated))


def pair_lines() -> list[str]:
    """The pairs with a fresh log on either side under --transfer shared and machinery, and the rule on them: (i) on
    those pairs, (ii) on every pair of their clusters (the pair's held-out MAPE >= 1 MiB for a log's; shared for
    shipped)."""
    shared, machinery = fresh_pairs(None), fresh_pairs("machinery")
    is_fresh = [a.fitted_on in FRESH or a.held_out in FRESH for a in shared]
    lines = [f"held-out pairs with a fresh log on either side: {sum(is_fresh)} (MAPE >= 1 MiB: prior -> calibrated,"
             " --transfer shared | machinery)"]
    for a, b, f in zip(shared, machinery, is_fresh):
        if f:
            lines.append("  " + pair_row(a, [a, b]))
    for name, pairs in (("shared", shared), ("machinery", machinery)):
        fresh_pairs_ = [p for p, f in zip(pairs, is_fresh) if f]
        worse, better, _, _ = counts(fresh_pairs_, 0)
        lines.append(f"  --transfer {name}: worse | better than the prior by more than 0.3 pt: {worse} | {better}")
    if shared:
        rows = {f"{a.fitted_on} -> {a.held_out}": {"shipped": (a.calibrated_mape, None),
                                                    "machinery": (b.calibrated_mape, None)}
                for a, b in zip(shared, machinery)}
        fresh = tuple(k for k, f in zip(rows, is_fresh) if f)
        clusters = ", ".join(sorted({a.cluster for a in shared}))
        lines += [f"  the rule, a pair for a log (its held-out MAPE), shared for shipped; (ii) here over the"
                  f" {len(rows)} pairs of {clusters} only (the whole matrix: --all-pairs):"]
        lines += ["    " + line for line in verdict(rows, "machinery", fresh, unit=("pairs", "pair"))[1][:-1]]
    return lines


def all_pairs_lines() -> list[str]:
    """The rule's (ii) for --transfer machinery over every pair of the held-out matrix (slow: two whole matrices)."""
    shared = calibration_matrix(MANIFEST)
    machinery = calibration_matrix(MANIFEST, transfer_rule="machinery")
    rows = {f"{a.fitted_on} -> {a.held_out}": {"shipped": (a.calibrated_mape, a.calibrated_mape_small),
                                                "machinery": (b.calibrated_mape, b.calibrated_mape_small)}
            for a, b in zip(shared, machinery)}
    fresh = tuple(k for k, a in zip(rows, shared) if a.fitted_on in FRESH or a.held_out in FRESH)
    lines = [f"--transfer machinery against shared, every pair of the held-out matrix ({len(rows)}; a pair for a log)"]
    lines += ["  " + line for line in verdict(rows, "machinery", fresh, unit=("pairs", "pair"))[1]]
    for name, pairs in (("shared", shared), ("machinery", machinery)):
        for label, keep in (("all", lambda p: True), ("fresh", lambda p: p.fitted_on in FRESH or p.held_out in FRESH)):
            ps = [p for p in pairs if keep(p)]
            (worse, better, _, _), (worse_small, better_small, _, n_small) = counts(ps, 0), counts(ps, 1)
            lines.append(f"  {name}, {label} {len(ps)}: worse | better by more than 0.3 pt >= 1 MiB "
                         f"{worse} | {better}, < 1 MiB {worse_small} | {better_small} of {n_small}")
    return lines


def render() -> str:
    rows = table()
    lines = ["```"]
    for f in FRESH:
        s = rows.get(f, {}).get("shipped")
        lines.append(f"fresh: {f.removesuffix('_perf.log')}, shipped "
                     + (f"{pct(s[0])} | {pct(s[1])}" if s else "not healthy: not judged"))
    for option in OPTIONS:
        lines += ["", f"option {option}: busbw MAPE >= 1 MiB | < 1 MiB, shipped -> option, the healthy logs that move"]
        for f, by in rows.items():
            if by["shipped"] != by[option]:
                mark = " (fresh)" if f in FRESH else ""
                lines.append(f"  {f.removesuffix('_perf.log') + mark:52s}{pct(by['shipped'][0])} | "
                             f"{pct(by['shipped'][1])}  ->  {pct(by[option][0])} | {pct(by[option][1])}")
        lines += ["  " + line for line in verdict(rows, option)[1]]
    lines += ["", "calibrate --transfer machinery against shared, on the fresh held-out pairs"] + pair_lines()
    lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--all-pairs"]:
        print("\n".join(all_pairs_lines()))
    else:
        run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
