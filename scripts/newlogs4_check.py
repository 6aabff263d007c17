"""Session 13 (newlogs4): the fresh logs as they came out, priced once (docs/collectives-history.md, "Session 13
(newlogs4)"; the logs, the runs kept and their healthy flags were committed in ef429e1, before any was priced).

For every fresh log: busbw MAPE >= 1 MiB | < 1 MiB and the signed mean >= 1 MiB, priced as the per-log table prices it
(calibrate/nccl_error.log_error: its system facts, its model, the host floor), and with each unshipped pricing option
the lane names, one at a time on that model: NCCL_PROTO "^LL128" (session 11, ramp: C2), the log's NCCL release as a
fact (session 12, ncclver: nccl_version = the release the log prints or its entry cites), p2p_net_model "summed" (the
network sends before session 12's "channels"). Then the held-out calibration pairs of the fresh logs' clusters under
`--transfer shared` (calibrate's default), `machinery` and `lines` (nccl_table.calibration_matrix on those clusters).

Run: python scripts/newlogs4_check.py [--pairs]   (--pairs adds the held-out pairs: three matrices over the fresh
clusters, minutes). Prints only; the figures are quoted in the docs section.
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import _size, entry_nccl_version, read_manifest  # noqa: E402
from scripts.fresh_logs_check import MANIFEST, pair_row  # noqa: E402
from scripts.heldout_rule import counts  # noqa: E402
from scripts.log_variants import pct  # noqa: E402

# The logs session 13 added (tests/data/nccl/SOURCES.md, "Session 13 (newlogs4)"), committed before pricing.
FRESH_PREFIXES = ("b200-engaging-1node_", "b200-engaging-2node_")  # not session 14's -2node-b
OPTIONS = ("nccl_proto=^LL128", "nccl_version=log's", "p2p_net_model=summed")
TRANSFERS = ("shared", "machinery", "lines")


def fresh_entries() -> list[dict]:
    return [e for e in read_manifest(MANIFEST) if e["file"].startswith(FRESH_PREFIXES)]


def _changes(entry: dict, option: str | None) -> dict:
    """The model's fields `option` sets (none as shipped)."""
    if option == "nccl_proto=^LL128":
        return {"nccl_proto": "^LL128"}
    if option == "nccl_version=log's":
        return {"nccl_version": entry_nccl_version(MANIFEST.parent, entry)}
    if option == "p2p_net_model=summed":
        return {"p2p_net_model": "summed"}
    return {}


def priced(entry: dict, option: str | None = None):
    """The log's LogError as shipped (option None) or with `option`."""
    log = priced_log(MANIFEST.parent, entry)
    return log.error(log.model(**_changes(entry, option)))


def log_lines(entries: list[dict] | None = None) -> list[str]:
    """One line per log of `entries` (default: this round's fresh logs): shipped, then each option."""
    lines = [f"{'log':40s} {'held':5s} shipped (>= 1 MiB | < 1 MiB, signed)   " + "   ".join(OPTIONS)]
    for e in fresh_entries() if entries is None else entries:
        base = priced(e)
        cells = [f"{pct(base.mape_large)} | {pct(base.mape_small)}, {pct(base.signed_large)}"]
        for option in OPTIONS:
            err = priced(e, option)
            cells.append(f"{pct(err.mape_large)} | {pct(err.mape_small)}")
        lines.append(f"{e['file'].removesuffix('_perf.log'):40s} {'yes' if e['healthy'] else 'no':5s} "
                     + "   ".join(f"{c:28s}" for c in cells))
    return lines


def size_lines(entries: list[dict] | None = None) -> list[str]:
    """Per size, measured / priced time - 1 of every log of `entries` (default: this round's fresh logs) as shipped."""
    return [f"{e['file'].removesuffix('_perf.log')}: " + ", ".join(
        f"{_size(s.size_bytes)} {100 * s.busbw_error:+.0f}%" for s in priced(e).sizes)
        for e in (fresh_entries() if entries is None else entries)]


def pairs_by_rule(entries: list[dict], transfers: tuple[str, ...]) -> dict[str, list]:
    """{transfer rule: every held-out pair of the clusters that hold a healthy log of `entries`}, the same pairs in
    the same order (fresh_logs_check.fresh_pairs over those logs' clusters)."""
    import scripts.fresh_logs_check as flc

    saved = flc.FRESH
    flc.FRESH = tuple(e["file"] for e in entries if e["healthy"])  # fresh_pairs takes the clusters of flc.FRESH
    try:
        return {rule: flc.fresh_pairs(None if rule == "shared" else rule) for rule in transfers}
    finally:
        flc.FRESH = saved


def round_views(prefixes: tuple[str, ...], transfers: tuple[str, ...], pair_lines_of=None) -> tuple:
    """A later round's views over its own fresh logs and transfer rules (scripts/newlogs5/6/7_check.py): (fresh_entries,
    log_lines, size_lines, pairs_by_rule, pair_lines), each as this module's function of the same name over the
    manifest entries whose file starts with one of `prefixes`. `pair_lines_of` is newlogs5_check.pair_lines (passed
    in: that module imports this one); without it the last view is None."""

    def fresh() -> list[dict]:
        return [e for e in read_manifest(MANIFEST) if e["file"].startswith(prefixes)]

    def logs() -> list[str]:
        return log_lines(fresh())

    def sizes() -> list[str]:
        return size_lines(fresh())

    def by_rule() -> dict[str, list]:
        """{transfer rule: every held-out pair of the clusters that hold a fresh log}, the same pairs in order."""
        return pairs_by_rule(fresh(), transfers)

    def pairs(rules: dict[str, list] | None = None) -> list[str]:
        """newlogs5_check's pair lines (fresh pairs, counts, cluster means) over this round's logs and rules."""
        return pair_lines_of(rules or by_rule(), fresh(), transfers)

    return fresh, logs, sizes, by_rule, (pairs if pair_lines_of is not None else None)


def pair_lines() -> list[str]:
    """The held-out pairs of the fresh logs' clusters under each transfer rule."""
    by_rule = pairs_by_rule(fresh_entries(), TRANSFERS)
    shared = by_rule["shared"]
    lines = [f"held-out pairs of the fresh clusters: {len(shared)} (MAPE >= 1 MiB: prior -> calibrated, --transfer "
             + " | ".join(TRANSFERS) + ")"]
    for i, a in enumerate(shared):
        lines.append("  " + pair_row(a, [by_rule[r][i] for r in TRANSFERS]))
    for rule in TRANSFERS:
        worse, better, total, n = counts(by_rule[rule], 0)
        prior = sum(p.prior_mape for p in by_rule[rule])
        lines.append(f"  --transfer {rule}: worse | better than the prior by more than 0.3 pt: {worse} | {better};"
                     f" summed held-out MAPE {100 * prior:.1f} -> {100 * total:.1f} over {n} pairs")
    return lines


if __name__ == "__main__":
    out = log_lines() + [""] + size_lines()
    if "--pairs" in sys.argv[1:]:
        out += [""] + pair_lines()
    print("\n".join(out))
