"""Every nccl-tests log priced at the NCCL release it ran (docs/collectives-history.md "Session 12 (ncclver)"): the
candidate "own version" (each log at its release, every version-keyed constant of nccl_tuning.toml at once) against
today's tables, the ship rule's (b) over the healthy logs, and the same for each group of constants alone (which of
them moves what).

- today: the tables as they stand (no version);
- own: TopologyModel(nccl_version=the log's release: its banner, else logs.toml nccl_version; none stated: today's);
- own, pick: the same, the release's constants ranking NCCL's candidates only, the wire at today's tables
  (TopologyModel nccl_version_scope "pick", collectives/nccl_version_pick.py);
- own, one group only: the same with only that group's [versioned] rows in force (the others at today's values).

Run: python scripts/ncclver_check.py [--write]   (--write replaces the marked block of docs/collectives-history.md)
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import replace

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.nccl_table import entry_model, entry_nccl_version  # noqa: E402
from moesim.collectives import nccl_code_rules, nccl_tuning  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import MANIFEST, before_after_rows, moved_lines, rule_b_lines  # noqa: E402, F401

DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN ncclver_check: python scripts/ncclver_check.py --write -->"
END = "<!-- END ncclver_check -->"
# the groups of [versioned] paths priced alone, by their first name(s)
GROUPS = {"per-channel caps": ("per_channel_caps.",), "hop and base latencies": ("hop_latency_us.", "base_latency_us.",
                                                                                   "gpu_nic_path."),
          "LL caps (llMaxBws)": ("ll_max_bus_gb_per_s.",), "NVLS channels": ("nvls.",), "PAT": ("pat.",)}


@contextmanager
def only(prefixes: tuple[str, ...] | None):
    """Only the [versioned] rows whose path starts with one of `prefixes` in force (None: all) for the duration."""
    table = nccl_tuning._file()["versioned"]
    saved = dict(table)
    if prefixes is not None:
        for path in saved:
            if not path.startswith(prefixes):
                del table[path]
    nccl_tuning._at.cache_clear()
    try:
        yield
    finally:
        table.clear()
        table.update(saved)
        nccl_tuning._at.cache_clear()


@contextmanager
def peer_rule_unset(hold: bool):
    """With `hold`, session 14's code rule p2p_net_peer_channels at its unset value at every release for the duration
    (a group's section then moves what its [versioned] rows move; the rule is priced alone by
    scripts/a2ab200_check.py and scripts/code_rules_check.py)."""
    entry = nccl_code_rules._file()["p2p_net_peer_channels"]
    kept = entry["rows"]
    if hold:
        entry["rows"] = [[first, last, entry["unset"]] for first, last, _ in kept]
    nccl_code_rules._at.cache_clear()
    try:
        yield
    finally:
        entry["rows"] = kept
        nccl_code_rules._at.cache_clear()


def _make(scope: str):
    def make(entry, hw, model, n):
        version = entry_nccl_version(MANIFEST.parent, entry)
        return model, (replace(entry_model(entry, hw, version), nccl_version_scope=scope) if version else model)
    return make


def rows(prefixes: tuple[str, ...] | None = None, scope: str = "all") -> list[tuple]:
    with only(prefixes), peer_rule_unset(prefixes is not None):
        return before_after_rows(_make(scope))


def render() -> str:
    found = rows()
    lines = ["Own version (every version-keyed constant at the log's release) against today's tables, every log:", "",
             "```", *moved_lines(found, "today  ->  own version"), "```", "", "Rule (b) over the healthy logs:", "",
             "```"]
    report, met = rule_b_lines(found, small_rise=0.01)
    lines += report + [f"rule (b): {'met' if met else 'not met'}", "```"]
    pick = rows(scope="pick")
    report, met = rule_b_lines(pick, small_rise=0.01)
    lines += ["", "Own version, NCCL's pick only (nccl_version_scope \"pick\": every candidate on the wire at today's "
              "tables, ranked at the release's):", "", "```", *moved_lines(pick, "today  ->  own version, pick"),
              *report, f"rule (b): {'met' if met else 'not met'}", "```"]
    for name, prefixes in GROUPS.items():
        part = rows(prefixes)
        report, met = rule_b_lines(part, small_rise=0.01)
        lines += ["", f"Only the {name} at the log's release:", "", "```", *moved_lines(part, f"today  ->  {name}"),
                  report[0], f"rule (b): {'met' if met else 'not met'}", "```"]
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.split("\n")[0], render, DOC, BEGIN, END)
