"""What a third newcomer's walk through the brief's three uses found (session 20, lane newuser3): each test failed on
main at b5fc318. The log is in docs/collectives-history.md, "Session 20 (newuser3)"."""

from __future__ import annotations

import pytest

from moesim.cli import main
from moesim.specs.layout import LAYOUT_LINE_KEYS


# --layout's help listed dp .. cf but not vp, cp, cp_comm or pipeline_schedule, which the line takes (and which
# `moesim search` prints: "... dropless pipeline_schedule=dualpipe"); a newcomer asking for a what-if with context
# parallelism or an interleaved schedule found no way to write it in the help.
@pytest.mark.parametrize("command", ["estimate", "simulate", "report"])
def test_layout_help_names_every_key_the_line_takes(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps the long value anywhere
    short = [k for k in LAYOUT_LINE_KEYS if k not in ("micro_batches", "zero_stage", "capacity_factor", "schedule")]
    missing = [k for k in short if f"{k}=" not in text]
    assert not missing, missing
    for value in ("a2a", "interleaved", "zb-v", "dualpipe"):
        assert value in text, value


# calibrate's parameter table named the matmul efficiency knots "efficiency@2.19e+06" with the unit "fraction of
# peak": the knot's own unit (a kernel's FLOP, moesim/calibrate/design.py) was said nowhere in the output.
def test_calibrate_says_what_the_efficiency_knots_count(tmp_path, capsys):
    out = tmp_path / "cal.toml"
    assert main(["calibrate", "tests/calibrate/data/harness-cpu-clock-layers.jsonl", "--hardware", "cpu-localhost",
                 "-o", str(out), "--bootstrap", "0", "-q"]) == 0
    text = capsys.readouterr().out
    assert "efficiency@" in text
    assert "efficiency@K: matmul efficiency (fraction of peak) of a kernel of K FLOP" in text


# README said "so MFU ≤ HFU" without a condition; `moesim estimate deepseek-v3-h800` printed MFU 28.1 % / HFU
# 27.4 %: MFU counts the whole score matrix (PaLM), HFU the causal kernel's tiles (docs/operators.md: MFU <= HFU for
# full masks only). The README now says where it holds.
def test_readme_states_where_mfu_is_at_most_hfu():
    from pathlib import Path

    from moesim.estimate import estimate
    from moesim.specs.load import load_scenario

    est = estimate(load_scenario("deepseek-v3-h800"))
    assert est.mfu > est.hfu  # a causal model: the README's unconditional claim would be false
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert "so MFU ≤ HFU;" not in readme
    assert "MFU ≤ HFU holds for full masks only" in readme
