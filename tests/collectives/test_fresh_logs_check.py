"""Session 11's decision rule for the unshipped options on the fresh logs (scripts/fresh_logs_check.py; the rule is
docs/collectives-history.md "Session 11 (newlogs3)", committed before pricing): the rule's two tests on made-up
figures, the fresh logs as the manifest and SOURCES.md hold them, and the generated block."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "nccl"


@pytest.fixture(scope="module")
def check(load_script):
    return load_script("scripts/fresh_logs_check.py")


def _rows(fresh_after, old_after=((0.10, 0.30),)):
    """Healthy logs f0, f1 (fresh, shipped 15 % | 30 %) and o0.. (old, shipped 10 % | 30 %), with the option's
    figures."""
    rows = {f"f{i}": {"shipped": (0.15, 0.30), "opt": a} for i, a in enumerate(fresh_after)}
    rows.update({f"o{i}": {"shipped": (0.10, 0.30), "opt": a} for i, a in enumerate(old_after)})
    return rows


def test_two_fresh_logs_better_and_no_healthy_log_worse_meets_the_rule(check):
    ok, lines = check.verdict(_rows([(0.12, 0.30), (0.13, 0.28)]), "opt", fresh=("f0", "f1"))
    assert ok and lines[-1].startswith("verdict: meets the rule")


def test_one_fresh_log_moved_fails_test_i(check):
    ok, lines = check.verdict(_rows([(0.12, 0.30), (0.15, 0.30)]), "opt", fresh=("f0", "f1"))
    assert not ok and "(i) fails" in lines[-1] and "(ii) holds" in lines[-1]


def test_a_fresh_log_worse_by_more_than_2_pt_fails_test_i(check):
    # the fresh sum >= 1 MiB falls (0.30 -> 0.275), but f1 loses 2.5 pt
    ok, lines = check.verdict(_rows([(0.10, 0.30), (0.175, 0.30)]), "opt", fresh=("f0", "f1"))
    assert not ok and any("worse by more than 2 pt: f1" in line for line in lines)


def test_a_fresh_sum_that_rises_in_a_band_it_moves_fails_test_i(check):
    ok, lines = check.verdict(_rows([(0.12, 0.31), (0.13, 0.30)]), "opt", fresh=("f0", "f1"))
    assert not ok and any("< 1 MiB: 60.0 -> 61.0 (does not fall)" in line for line in lines)


def test_an_old_log_newly_over_a_bar_fails_test_ii(check):
    ok, lines = check.verdict(_rows([(0.12, 0.30), (0.13, 0.28)], old_after=((0.10, 0.30), (0.21, 0.30))),
                              "opt", fresh=("f0", "f1"))
    assert not ok and "(i) holds" in lines[-1] and "(ii) fails" in lines[-1]


def test_the_sum_over_all_healthy_logs_rising_fails_test_ii(check):
    # the fresh logs gain 4 pt >= 1 MiB, the old log loses 6 pt (stays under the bar): the total rises
    ok, lines = check.verdict(_rows([(0.13, 0.30), (0.13, 0.30)], old_after=((0.16, 0.30),)), "opt", fresh=("f0", "f1"))
    assert not ok and any(">= 1 MiB: 40.0 -> 42.0 (rises)" in line for line in lines)


def test_fresh_logs_are_in_the_manifest_and_cited(check):
    logs = {e["file"]: e for e in tomllib.loads((DATA / "logs.toml").read_text())["log"]}
    session = (DATA / "SOURCES.md").read_text().split("## Session 11 (newlogs3", 1)[1]
    assert check.FRESH and all(f in logs and (DATA / f).exists() for f in check.FRESH)
    assert all(f in (DATA / "SOURCES.md").read_text() for f in check.FRESH) and "inclusion rule, unchanged" in session


def test_docs_block_is_current(check):
    doc = (ROOT / "docs" / "collectives-history.md").read_text(encoding="utf-8")
    assert doc.split(check.BEGIN, 1)[1].split(check.END, 1)[0].strip() == check.render()
