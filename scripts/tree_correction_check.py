"""Candidate A of session 13 (treecorr): NCCL's treeCorrectionFactor on the tree all-reduce only for
0 <= log2(bytes / 64) < 23, as ncclTopoGetAlgoTime (src/graph/tuning.cc v2.18.1-1 .. v2.30.7-1), against the bound
24 moesim had before (index 23, Simple 0.9, on a tree all-reduce of 512 MiB - 1 GiB): every log's busbw MAPE and the
ship rule's (b) over the healthy logs (docs/collectives-history.md "Session 13 (treecorr)").

Each log is priced as the per-log table prices it (calibrate/nccl_error.log_error: its system facts, its model, the
host floor), once with [tree_correction_bound] tree = 24 (before) and once at NCCL's 23 (the file as it stands).

Run: python scripts/tree_correction_check.py [--write]   (--write replaces the marked block of
docs/collectives-history.md)
"""

from __future__ import annotations

from contextlib import contextmanager

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.collectives import nccl_tuning  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import before_after_rows, moved_lines, rule_b_lines  # noqa: E402

DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN tree_correction_check: python scripts/tree_correction_check.py --write -->"
END = "<!-- END tree_correction_check -->"
BEFORE_BOUND = 24  # moesim before session 13: every entry of the 24-entry rows, index 23 included


@contextmanager
def tree_bound(bound: int):
    """[tree_correction_bound] tree = `bound` for the duration (the file's own value back after)."""
    table = nccl_tuning._file()["tree_correction_bound"]
    saved = table["tree"]
    table["tree"] = bound
    try:
        yield
    finally:
        table["tree"] = saved


def rows() -> list[tuple]:
    """(log, healthy, (before >= 1 MiB, < 1 MiB), (after ...)) per manifest entry, in its order: each log's own model
    priced with the bound 24 and then at the file's 23."""
    return before_after_rows(lambda entry, hw, model, n: (model, model), before_in=lambda: tree_bound(BEFORE_BOUND))


def bookkeeping_met(found: list[tuple]) -> tuple[bool, bool]:
    """(moved, met): whether any log moves, and rule (b) for exact bookkeeping: moving nothing meets it; a move
    must meet the rule as written (the >= 1 MiB sum falls, rule_b_lines)."""
    moved = any(r[2] != r[3] for r in found)
    return moved, (rule_b_lines(found, small_rise=0.01)[1] if moved else True)


def render() -> str:
    found = rows()
    report, _ = rule_b_lines(found, small_rise=0.01)
    moved, met = bookkeeping_met(found)
    verdict = (f"rule (b) for exact bookkeeping: {'met' if met else 'not met'} "
               f"({'logs move: the >= 1 MiB sum must fall' if moved else 'no log moves in either band'})")
    return "\n".join(["```", *moved_lines(found, "bound 24 (before)  ->  23 (NCCL)"), "", *report, verdict, "```"])


if __name__ == "__main__":
    run_check(__doc__.split("\n")[0], render, DOC, BEGIN, END)
