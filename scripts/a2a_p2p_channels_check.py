"""Check of p2p_net_model="channels" (session 12, a2ap2p: a grouped send/recv across nodes on NCCL's p2p channels,
batches and proxy posts; moesim/collectives/nccl_p2p_net.py, NVIDIA/nccl v2.29.2-1) against every nccl-tests log:
the ship rule's (b) over the healthy logs, every log that moves, the two pieces priced apart, and every row of every
alltoall and sendrecv log, healthy or not, shipped ("summed") against the candidate.

The rule and the candidate were committed before this script first ran (docs/collectives-history.md "Session 12
(a2ap2p)", 4fc3ce7). Each log is priced as the per-log table prices it (calibrate/nccl_error.log_error: its system
facts, its model, the host floor), once with p2p_net_model="summed" (the pricing before this round) and once with
"channels".

Run: python scripts/a2a_p2p_channels_check.py [--write]   (--write replaces the marked block of
docs/collectives-history.md)
"""

from __future__ import annotations

import dataclasses
import sys
from contextlib import contextmanager

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import _size, read_manifest  # noqa: E402
from moesim.collectives import nccl_p2p_net, nccl_p2p_schedule  # noqa: E402
from moesim.collectives.formulas import Terms  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import MANIFEST, before_after_rows, moved_lines, rule_b_lines  # noqa: E402

DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN a2a_p2p_channels_check: python scripts/a2a_p2p_channels_check.py --write -->"
END = "<!-- END a2a_p2p_channels_check -->"
P2P_FILES = ("alltoall", "sendrecv")
CANDIDATE = "channels"


@contextmanager
def shipped():
    yield


@contextmanager
def without_channel_bound():
    """Variant: the candidate with no channel carrying a bound (the busiest channel's parts taken as none)."""
    kept = nccl_p2p_schedule.busiest_network_parts
    nccl_p2p_schedule.busiest_network_parts = lambda *args: 0
    try:
        yield
    finally:
        nccl_p2p_schedule.busiest_network_parts = kept


@contextmanager
def channel_bound_alone():
    """Variant: the shipped latency (one message per peer) and no posts, with the candidate's network transfer (Simple,
    bounded by the busiest channel at 14 GB/s)."""
    kept_a2a, kept_sr = nccl_p2p_net.channels_all_to_all_terms, nccl_p2p_net.channels_send_recv_terms

    def a2a(shipped_terms, *args):
        return Terms(shipped_terms.latency_s, kept_a2a(shipped_terms, *args).transfer_s, overlapped=True)

    nccl_p2p_net.channels_all_to_all_terms = a2a
    nccl_p2p_net.channels_send_recv_terms = lambda shipped_terms, parts, post_s: shipped_terms
    try:
        yield
    finally:
        nccl_p2p_net.channels_all_to_all_terms, nccl_p2p_net.channels_send_recv_terms = kept_a2a, kept_sr


VARIANTS = (("candidate: channels", shipped), ("variant: without the channel bound", without_channel_bound),
            ("variant: the channel bound alone", channel_bound_alone))


def _make(entry, hw, model, n):
    return dataclasses.replace(model, p2p_net_model="summed"), dataclasses.replace(model, p2p_net_model=CANDIDATE)


def rule_lines() -> list[str]:
    lines = []
    for label, ctx in VARIANTS:
        with ctx():
            data = before_after_rows(_make)
        rule, met = rule_b_lines(data, small_rise=0.01)
        lines += [f"--- {label}", *moved_lines(data, f"summed (shipped) -> {CANDIDATE}"), *rule,
                  f"rule (b): {'met' if met else 'not met'}", ""]
    return lines


def row_lines() -> list[str]:
    """Every row of every alltoall / sendrecv log: measured, shipped and candidate us, error = measured / priced - 1."""
    lines = [f"{'size':>12s} {'measured':>10s} {'summed':>10s} {'err':>8s} {CANDIDATE:>10s} {'err':>8s}  shipped label"]
    for e in read_manifest(MANIFEST):
        if not any(k in e["file"] for k in P2P_FILES):
            continue
        log = priced_log(MANIFEST.parent, e)
        a, b = log.error(log.model(p2p_net_model="summed")), log.error(log.model(p2p_net_model=CANDIDATE))
        lines.append(f"{log.name} (healthy: {'yes' if e['healthy'] else 'no'}; {log.group_size} ranks)")
        for x, y in zip(a.sizes, b.sizes):
            lines.append(f"{_size(int(x.size_bytes)):>12s} {x.measured_s * 1e6:10.1f} {x.predicted_s * 1e6:10.1f} "
                         f"{x.busbw_error:+8.1%} {y.predicted_s * 1e6:10.1f} {y.busbw_error:+8.1%}  {x.algorithm}")
    return lines


def render() -> str:
    title = "every row of the alltoall / sendrecv logs (us; err = measured / priced - 1)"
    return "\n".join(["```", *rule_lines(), title, *row_lines(), "```"])


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
