"""Session 14 (newlogs5): the fresh logs as they came out, priced once (docs/collectives-history.md, "Session 14
(newlogs5)"; the logs, the runs kept and their healthy flags were committed in 2a70d1b and 648c50e (the Together run3 files), before any was priced).

For every fresh log: busbw MAPE >= 1 MiB | < 1 MiB and the signed mean >= 1 MiB, priced as the per-log table prices it
(calibrate/nccl_error.log_error: its system facts, its model, the host floor), and with each unshipped pricing option
the lane names, one at a time on that model (scripts/newlogs4_check.py's three: NCCL_PROTO "^LL128", the log's NCCL
release as a fact, p2p_net_model "summed"). Then the held-out calibration pairs of the fresh logs' clusters under
`--transfer shared` (calibrate's default) and the opt-in rules `machinery`, `lines`, `protocol-hops`, `p2p-ops`: the
pairs with a fresh log on either side (worse | better than the prior by more than 0.3 pt), and each fresh cluster's
mean change at >= 1 MiB over all its pairs (scripts/heldout_rule.cluster_means).

Run: python scripts/newlogs5_check.py [--pairs]   (--pairs adds the held-out pairs: five matrices over the fresh
clusters, minutes). Prints only; the figures are quoted in the docs section.
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from scripts.fresh_logs_check import pair_row  # noqa: E402
from scripts.heldout_rule import cluster_means, counts  # noqa: E402
from scripts import newlogs4_check  # noqa: E402
from scripts.newlogs4_check import priced  # noqa: E402  (the same options, priced the same way)

# The logs session 14 added (tests/data/nccl/SOURCES.md, "Session 14 (newlogs5)"), committed before pricing.
FRESH_PREFIXES = ("b200-engaging-2node-b_", "b200-aicr-1node_", "b200-together-2node-r3_", "b200-together-4node-r3_")
TRANSFERS = ("shared", "machinery", "lines", "protocol-hops", "p2p-ops")


# The round's views (scripts/newlogs4_check.round_views); pair_lines below is the implementation later
# rounds pass in.
fresh_entries, log_lines, size_lines, pairs_by_rule, _ = newlogs4_check.round_views(FRESH_PREFIXES, TRANSFERS)

def pair_lines(by_rule: dict[str, list] | None = None, entries: list[dict] | None = None,
               transfers: tuple[str, ...] = TRANSFERS) -> list[str]:
    """The fresh pairs' counts, cluster means and rows under each rule of `transfers` (a later round passes its own
    logs and rules)."""
    entries = fresh_entries() if entries is None else entries
    by_rule = by_rule or newlogs4_check.pairs_by_rule(entries, transfers)
    fresh = {e["file"] for e in entries}
    is_fresh = [a.fitted_on in fresh or a.held_out in fresh for a in by_rule["shared"]]
    lines = [f"held-out pairs of the fresh clusters: {len(is_fresh)}, with a fresh log on either side: {sum(is_fresh)}"]
    for rule in transfers:
        pairs = [p for p, f in zip(by_rule[rule], is_fresh) if f]
        worse, better, total, n = counts(pairs, 0)
        prior = sum(p.prior_mape for p in pairs)
        worse_s, better_s, _, n_s = counts(pairs, 1)
        means = cluster_means(by_rule[rule])
        lines.append(f"  --transfer {rule}: fresh pairs worse | better by more than 0.3 pt: >= 1 MiB {worse} | {better}"
                     f" ({n} pairs), < 1 MiB {worse_s} | {better_s} ({n_s}); summed held-out MAPE >= 1 MiB"
                     f" {100 * prior:.1f} -> {100 * total:.1f}; cluster mean change >= 1 MiB (all pairs, pt): "
                     + ", ".join(f"{c} {100 * m:+.2f}" for c, m in sorted(means.items())))
    lines.append("  fresh pairs, MAPE >= 1 MiB prior -> calibrated (" + " | ".join(transfers) + "):")
    for i, a in enumerate(by_rule["shared"]):
        if is_fresh[i]:
            lines.append("    " + pair_row(a, [by_rule[r][i] for r in transfers]))
    return lines


if __name__ == "__main__":
    out = log_lines() + [""] + size_lines()
    if "--pairs" in sys.argv[1:]:
        out += [""] + pair_lines()
    print("\n".join(out))
