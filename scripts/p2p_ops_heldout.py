"""The held-out matrix with p2p_net_model="channels-steps" (session 14, p2pops; moesim/collectives/nccl_p2p_ops.py) as
the model every log is priced and calibrated with, judged against the shipped matrix by session 13's held-out rule
((i)-(iii); docs/collectives-history.md "Session 14 (p2pops)", the rule committed before pricing, 7fddb10).

Run: python scripts/p2p_ops_heldout.py [--cache DIR] [candidate|v1|v2 ...]   (default: candidate). The shipped matrix
is heldout_rule.priced("shared"); each candidate's is the same matrix priced with "channels" pricing a send/recv
between nodes as "channels-steps" (v1 / v2: the session's variants, the launch floor / the first launch alone), cached
as DIR/p2p-ops-NAME.json. Prints the rule's checks, every pair that moves by more than 0.3 pt, and the Together pairs.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from _repo_root import ROOT  # noqa: F401 (first: this checkout's root on sys.path)

from heldout_rule import MANIFEST, cache_arg, cached, cluster_means, moved, priced, verdict_session13  # noqa: E402
from moesim.calibrate.nccl_table import HeldOutPair, calibration_matrix  # noqa: E402
from moesim.collectives import nccl_p2p_ops  # noqa: E402

HOW = {"candidate": {}, "v1": {"first": False}, "v2": {"floor": False}}


def priced_as_default(name: str, cache: Path | None) -> list[HeldOutPair]:
    """The matrix with "channels" pricing a send/recv between nodes as channels-steps (variant `name`)."""
    return cached(None if cache is None else cache / f"p2p-ops-{name}.json", partial(_matrix_as_default, name))


def _matrix_as_default(name: str) -> list[HeldOutPair]:
    kept_model, kept_terms = nccl_p2p_ops.MODEL, nccl_p2p_ops.steps_send_recv_terms
    nccl_p2p_ops.MODEL = "channels"  # the call site (nccl_p2p_net.concurrent_terms) reads it at each call
    nccl_p2p_ops.steps_send_recv_terms = partial(kept_terms, **HOW[name])
    try:
        return list(calibration_matrix.__wrapped__(MANIFEST, fixed_weight=False))  # not its lru_cache: one per variant
    finally:
        nccl_p2p_ops.MODEL, nccl_p2p_ops.steps_send_recv_terms = kept_model, kept_terms


if __name__ == "__main__":
    cache, args = cache_arg(sys.argv[1:])
    bad = [a for a in args if a not in HOW]
    if bad:
        sys.exit(f"p2p_ops_heldout.py: {bad[0]!r}: allowed values: {', '.join(HOW)}")
    base = priced("shared", cache)
    print("shared (the baseline): mean change >= 1 MiB per cluster (pt): " + ", ".join(
        f"{k} {100 * v:+.2f}" for k, v in sorted(cluster_means(base).items())))
    for name in args or ["candidate"]:
        cand = priced_as_default(name, cache)
        print("\n".join(verdict_session13(base, cand, f"channels-steps ({name})")[1]
                        + ["  pairs that move by more than 0.3 pt:"] + moved(base, cand)))
        print("  the Together pairs (>= 1 MiB | < 1 MiB: prior -> calibrated, shared; then under the candidate):")
        for a, b in zip(base, cand):
            if a.cluster == "b200-together":
                print(f"    {a.fitted_on.removesuffix('_perf.log')} -> {a.held_out.removesuffix('_perf.log')}: "
                      f"{100 * a.prior_mape:.2f} -> {100 * a.calibrated_mape:.2f} | {100 * a.prior_mape_small:.2f} -> "
                      f"{100 * a.calibrated_mape_small:.2f} %; {100 * b.prior_mape:.2f} -> "
                      f"{100 * b.calibrated_mape:.2f} | {100 * b.prior_mape_small:.2f} -> "
                      f"{100 * b.calibrated_mape_small:.2f} %")
