"""Check of p2p_net_peer_rule (session 14, a2ab200: NCCL's network-peer p2p channel rule of the run's release;
moesim/collectives/nccl_p2p_peer.py, NVIDIA/nccl src/graph/paths.cc v2.18.1-1 .. v2.30.7-1) against every
nccl-tests log: the ship rule's (b) over the healthy logs, every log that moves, and every row of the alltoall /
sendrecv logs that move.

The rule, the candidate and its variant were committed before this script first ran (docs/collectives-history.md
"Session 14 (a2ab200)", 28f2012). Each log is priced as the per-log table prices it (calibrate/nccl_error.log_error: its
system facts, its model, the host floor), once as shipped and once with:
- candidate: p2p_net_peer_rule = the rule of the log's own stated release (its banner, else logs.toml nccl_version;
  nccl_code_rules.toml [p2p_net_peer_channels]); a log that states none does not move;
- variant: p2p_net_peer_rule = "2.20" (NCCL v2.20.3-1 .. v2.28.9-1) on every alltoall / sendrecv log, whatever
  release it states (evaluated only: it contradicts the 2.29.2 logs' own banners).

Run: python scripts/a2ab200_check.py [--write]   (--write replaces the marked block of docs/collectives-history.md)
"""

from __future__ import annotations

import dataclasses

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import _size, entry_nccl_version, read_manifest  # noqa: E402
from moesim.collectives import nccl_code_rules  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import MANIFEST, before_after_rows, moved_lines, rule_b_lines  # noqa: E402

DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN a2ab200_check: python scripts/a2ab200_check.py --write -->"
END = "<!-- END a2ab200_check -->"
P2P_FILES = ("alltoall", "sendrecv")


def release_rule(entry) -> str:
    """The network-peer rule of the log's stated release; "" where it states none (the candidate does not act)."""
    version = entry_nccl_version(MANIFEST.parent, entry)
    return nccl_code_rules.rule("p2p_net_peer_channels", version) if version else ""


def candidate(entry, hw, model, n):
    rule = release_rule(entry)
    if not rule or not hasattr(model, "p2p_net_peer_rule"):
        return model, model
    return model, dataclasses.replace(model, p2p_net_peer_rule=rule)


def variant(entry, hw, model, n):
    if not any(k in entry["file"] for k in P2P_FILES) or not hasattr(model, "p2p_net_peer_rule"):
        return model, model
    return model, dataclasses.replace(model, p2p_net_peer_rule="2.20")


VARIANTS = (("candidate: the rule of the log's own release", candidate),
            ('variant: "2.20" on every alltoall / sendrecv log (evaluated only)', variant))


def rule_lines() -> tuple[list[str], dict]:
    lines, moved = [], {}
    for label, make in VARIANTS:
        data = before_after_rows(make)
        rule, met = rule_b_lines(data, small_rise=0.01)
        lines += [f"--- {label}", *moved_lines(data, "shipped -> " + label.split(":")[0]), *rule,
                  f"rule (b), a change that prices better: {'met' if met else 'not met'}",
                  f"rule (b), exact bookkeeping (no healthy log moves): "
                  f"{'met' if all(r[2] == r[3] for r in data if r[1]) else 'not met'}", ""]
        moved[label] = {r[0] for r in data if r[2] != r[3]}
    return lines, moved


def row_lines(moved: dict) -> list[str]:
    """Every row of the alltoall / sendrecv logs either pricing moves: measured, shipped, candidate and variant us;
    err = measured / priced - 1."""
    lines = [f"{'size':>12s} {'measured':>10s} {'shipped':>10s} {'err':>8s} {'candidate':>10s} {'err':>8s} "
             f"{'variant':>10s} {'err':>8s}  shipped label"]
    names = set().union(*moved.values())
    for e in read_manifest(MANIFEST):
        name = e["file"].removesuffix("_perf.log")
        if name not in names or not any(k in e["file"] for k in P2P_FILES):
            continue
        log = priced_log(MANIFEST.parent, e)
        model = log.model()
        priced = [log.error(make(e, log.hardware, model, log.group_size)[1]) for _, make in VARIANTS]
        base = log.error(model)
        rule = release_rule(e) or "none stated"
        lines.append(f"{name} (healthy: {'yes' if e['healthy'] else 'no'}; {log.group_size} ranks; "
                     f"release rule {rule})")
        for x, y, z in zip(base.sizes, *(p.sizes for p in priced)):
            lines.append(f"{_size(int(x.size_bytes)):>12s} {x.measured_s * 1e6:10.1f} {x.predicted_s * 1e6:10.1f} "
                         f"{x.busbw_error:+8.1%} {y.predicted_s * 1e6:10.1f} {y.busbw_error:+8.1%} "
                         f"{z.predicted_s * 1e6:10.1f} {z.busbw_error:+8.1%}  {x.algorithm}")
    return lines


def render() -> str:
    rules, moved = rule_lines()
    title = "every row of the alltoall / sendrecv logs that move (us; err = measured / priced - 1)"
    return "\n".join(["```", *rules, title, *row_lines(moved), "```"])


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
