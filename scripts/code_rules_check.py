"""Candidate B of session 13 (treecorr): every nccl-tests log priced at the NCCL release it ran with the version-keyed
code rules (moesim/collectives/nccl_code_rules.toml) as well as session 12's version-keyed constants, against today's
tables; the ship rule's (b) over the healthy logs; and the code rules' own share (docs/collectives-history.md
"Session 13 (treecorr)").

- own, constants only: session 12's candidate (scripts/ncclver_check.py), every code rule at its unset value;
- own, constants and code rules: candidate B;
- own, code rules only: no [versioned] constant in force, the code rules at the log's release;
- own, one code rule only: that rule at the log's release, the others unset, no [versioned] constant.

Run: python scripts/code_rules_check.py [--write]   (--write replaces the marked block of docs/collectives-history.md)
"""

from __future__ import annotations

from contextlib import contextmanager

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.collectives import nccl_code_rules  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import before_after_rows, moved_lines, rule_b_lines  # noqa: E402
from scripts.ncclver_check import _make, only  # noqa: E402

DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN code_rules_check: python scripts/code_rules_check.py --write -->"
END = "<!-- END code_rules_check -->"


@contextmanager
def rules_in_force(names: tuple[str, ...] | None):
    """Only the code rules `names` keyed by version for the duration (None: all); the others at their unset value
    at every release."""
    table = nccl_code_rules._file()
    saved = {name: entry["rows"] for name, entry in table.items() if isinstance(entry, dict)}
    for name, rows in saved.items():
        if names is not None and name not in names:
            table[name]["rows"] = [[first, last, table[name]["unset"]] for first, last, _ in rows]
    nccl_code_rules._at.cache_clear()
    try:
        with nccl_code_rules.in_force(*saved):  # a rule kept off (`priced = false`) priced as its candidate
            yield
    finally:
        for name, rows in saved.items():
            table[name]["rows"] = rows
        nccl_code_rules._at.cache_clear()


def rule_names() -> tuple[str, ...]:
    return tuple(name for name, entry in nccl_code_rules._file().items() if isinstance(entry, dict))


def rows(constants: bool = True, rules: tuple[str, ...] | None = None) -> list[tuple]:
    """before_after_rows of today's tables against the own version: the [versioned] constants in force or none, the
    code rules `rules` keyed (None: all)."""
    with only(None if constants else ()), rules_in_force(rules):
        return before_after_rows(_make("all"))


def _block(title: str, found: list[tuple], label: str) -> list[str]:
    report, met = rule_b_lines(found, small_rise=0.01)
    return ["", title, "", "```", *moved_lines(found, label), *report, f"rule (b): {'met' if met else 'not met'}", "```"]


def render() -> str:
    lines = _block("Candidate B, own version with the code rules (every constant and code rule at the log's release):",
                   rows(), "today  ->  own version, code rules")
    lines += _block("Session 12's candidate, own version with the constants only (every code rule unset):",
                    rows(rules=()), "today  ->  own version, constants only")
    lines += _block("The code rules only at the log's release (no version-keyed constant):", rows(constants=False),
                    "today  ->  code rules only")
    for name in rule_names():
        found = rows(constants=False, rules=(name,))
        report, met = rule_b_lines(found, small_rise=0.01)
        lines += ["", f"Only `{name}` at the log's release:", "", "```", *moved_lines(found, f"today  ->  {name}"),
                  report[0], "```"]
    return "\n".join(lines[1:])


if __name__ == "__main__":
    run_check(__doc__.split("\n")[0], render, DOC, BEGIN, END)
