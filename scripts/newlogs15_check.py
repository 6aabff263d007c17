"""Session 25 (newlogs15): the two fresh logs as they came out, priced once (docs/collectives-history.md, "Session 25
(newlogs15)"; the logs and their flags were committed in b08ea45, before either was priced).

For each fresh log: busbw MAPE >= 1 MiB | < 1 MiB and the signed mean >= 1 MiB, priced as the per-log table prices it
(its logs.toml facts: h100-wutz with the run's NCCL_ALGO=Ring and NCCL 2.19.3 from its image tag; h100-k8s at NCCL's
own choice, no release printed), and with each unshipped pricing option session 13 named, one at a time on that model
(scripts/newlogs4_check.py's three); then, per size, measured / priced time - 1. Each log is alone in its cluster
(h100-wutz, h100-k8s), so neither forms a held-out pair.

Run: python scripts/newlogs15_check.py. Prints only; the figures are quoted in the docs section.
"""

from __future__ import annotations

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from scripts import newlogs4_check  # noqa: E402
from scripts.newlogs4_check import priced  # noqa: E402,F401  (the same options, priced the same way)
from scripts.newlogs13_check import without_algo  # noqa: E402  (here: the run's NCCL_ALGO left out, NCCL's own choice)

# The logs session 25 added (tests/data/nccl/SOURCES.md, "Session 25 (newlogs15)"), committed before pricing.
FRESH_PREFIXES = ("h100-wutz-2node_", "h100-k8s-2node_")

# The round's views (scripts/newlogs4_check.round_views) over this round's fresh logs; no transfer rule (no pairs).
fresh_entries, log_lines, size_lines, _by_rule, _pairs = newlogs4_check.round_views(FRESH_PREFIXES, ())


if __name__ == "__main__":
    lines = log_lines() + [""] + size_lines()
    for e in fresh_entries():
        if "nccl_algo" not in e:
            continue
        err = priced(without_algo(e))
        lines.append(f"{e['file'].removesuffix('_perf.log')} without nccl_algo (NCCL's own choice): "
                     f"{100 * err.mape_large:.1f}% >= 1 MiB, signed {100 * err.signed_large:+.1f}%; "
                     + ", ".join(f"{s.algorithm} {100 * s.busbw_error:+.0f}%" for s in err.sizes))
    print("\n".join(lines))
