"""Check of p2p_net_model="channels-steps" (session 14, p2pops: every Simple step of a send/recv between nodes launched
by NCCL's proxy at the tuner's network overhead; moesim/collectives/nccl_p2p_ops.py, NVIDIA/nccl v2.29.7-1) against
every nccl-tests log: the ship rule's (b) over the healthy logs, every log that moves, the two variants (V1 the launch
floor alone, V2 the first launch alone), and every row of every sendrecv log, shipped ("channels") against the
candidate.

The rule, the candidate and the variants were committed before this script first ran (docs/collectives-history.md
"Session 14 (p2pops)", 7fddb10). Each log is priced as the per-log table prices it (calibrate/nccl_error.log_error: its
system facts, its model, the host floor), once with p2p_net_model="channels" (shipped) and once with "channels-steps".

Run: python scripts/p2p_ops_check.py [--write]   (--write replaces the marked block of docs/collectives-history.md)
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from functools import partial

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import _size, read_manifest  # noqa: E402
from moesim.collectives import nccl_p2p_ops  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import MANIFEST, before_after_rows, moved_lines, rule_b_lines  # noqa: E402

DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN p2p_ops_check: python scripts/p2p_ops_check.py --write -->"
END = "<!-- END p2p_ops_check -->"
SHIPPED, CANDIDATE = "channels", nccl_p2p_ops.MODEL


@contextmanager
def pricing(first: bool = True, floor: bool = True):
    """The candidate (both parts) or one variant (V1: floor only; V2: first launch only)."""
    kept = nccl_p2p_ops.steps_send_recv_terms
    nccl_p2p_ops.steps_send_recv_terms = partial(kept, first=first, floor=floor)
    try:
        yield
    finally:
        nccl_p2p_ops.steps_send_recv_terms = kept


VARIANTS = (("candidate: channels-steps", {}), ("variant V1: the launch floor alone", {"first": False}),
            ("variant V2: the first launch alone", {"floor": False}))


def _make(entry, hw, model, n):
    return (dataclasses.replace(model, p2p_net_model=SHIPPED), dataclasses.replace(model, p2p_net_model=CANDIDATE))


def rule_lines() -> list[str]:
    lines = []
    for label, how in VARIANTS:
        with pricing(**how):
            data = before_after_rows(_make)
        rule, met = rule_b_lines(data, small_rise=0.01)
        lines += [f"--- {label}", *moved_lines(data, f"{SHIPPED} (shipped) -> {CANDIDATE}"), *rule,
                  f"rule (b): {'met' if met else 'not met'}", ""]
    return lines


def row_lines() -> list[str]:
    """Every row of every sendrecv log: measured, shipped and candidate us, error = measured / priced - 1."""
    lines = [f"{'size':>12s} {'measured':>10s} {SHIPPED:>10s} {'err':>8s} {CANDIDATE:>14s} {'err':>8s}"]
    for e in read_manifest(MANIFEST):
        if "sendrecv" not in e["file"]:
            continue
        log = priced_log(MANIFEST.parent, e)
        a, b = log.error(log.model(p2p_net_model=SHIPPED)), log.error(log.model(p2p_net_model=CANDIDATE))
        if all(x.predicted_s == y.predicted_s for x, y in zip(a.sizes, b.sizes)):
            lines.append(f"{log.name}: no row moves")
            continue
        cpu = getattr(log.hardware.interconnect[-1], "host_cpu", "") or "unstated"
        lines.append(f"{log.name} (healthy: {'yes' if e['healthy'] else 'no'}; {log.group_size} ranks; host CPU {cpu})")
        for x, y in zip(a.sizes, b.sizes):
            lines.append(f"{_size(int(x.size_bytes)):>12s} {x.measured_s * 1e6:10.1f} {x.predicted_s * 1e6:10.1f} "
                         f"{x.busbw_error:+8.1%} {y.predicted_s * 1e6:14.1f} {y.busbw_error:+8.1%}")
    return lines


def render() -> str:
    title = "every row of the sendrecv logs that moves (us; err = measured / priced - 1)"
    return "\n".join(["```", *rule_lines(), title, *row_lines(), "```"])


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
