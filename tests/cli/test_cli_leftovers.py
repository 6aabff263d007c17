"""Cosmetic leftovers of session 9's new-user walk (session 10, lane tidy): each test failed on the code before its fix.
Bad input ends with exit 2 and one line (tests/_cli.py run_bad)."""

from __future__ import annotations

import functools
import re

import pytest

import _cli
from moesim.cli import main
from moesim.errors import SpecError

run_bad = functools.partial(_cli.run_bad, timeout_s=20.0)
COLLECTIVE = ["collective", "all_reduce", "--hardware", "h100-sxm", "--devices", "8", "--bytes", "1MiB"]


# `moesim collective --nccl-algo bogus` said "field 'nccl_algo'" (the library keyword) where the user typed a flag.
@pytest.mark.parametrize("options,flag,fragment", [
    (["--nccl-algo", "bogus"], "--nccl-algo", "unknown NCCL algorithm 'bogus'"),
    (["--nccl-algo", "pat"], "--nccl-algo", "NCCL_ALGO 'pat' leaves no algorithm NCCL runs for all_reduce"),
    (["--nccl-algo", "^ring,tree,nvls,nvlstree,collnet,pat"], "--nccl-algo", "NCCL_ALGO leaves no algorithm"),
    (["--nccl-proto", "LL512"], "--nccl-proto", "unknown NCCL protocol 'll512'"),
    (["--tuner-rules", "absent-rules.csv"], "--tuner-rules", "tuner rules file not found"),
])
def test_collective_errors_name_the_flag_the_user_typed(capsys, options, flag, fragment):
    line = run_bad(capsys, COLLECTIVE + options, f"field '{flag}': {fragment}")
    assert "nccl_algo" not in line and "nccl_proto" not in line and "tuner_rules" not in line, line


def test_the_python_api_keeps_the_keyword_names():
    from moesim.collectives.topo_model import TopologyModel
    from moesim.specs.load import load_hardware

    hw = load_hardware("h100-sxm")
    for keyword, value in (("nccl_algo", "bogus"), ("nccl_proto", "LL512")):
        with pytest.raises(SpecError, match=re.escape(f"field '{keyword}'")):
            TopologyModel(hw, **{keyword: value})


# `moesim search --objective mfu` printed the MFU twice: the "MFU" column and the objective column "mfu" ("60.4% MFU").
def test_search_by_mfu_shows_mfu_once(capsys):
    assert main(["search", "switch-base-128-tpu-v3", "--objective", "mfu", "--top", "2", "-q"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = lines[lines.index("top 2") + 1]
    assert header.split() == ["rank", "step", "time", "memory/device", "MFU", "bottleneck", "layout"], header
    rows = lines[lines.index("top 2") + 3:lines.index("top 2") + 5]
    assert all(len(re.findall(r"\d+\.\d%", row)) == 1 for row in rows), rows


def test_search_by_cost_keeps_its_objective_column(capsys):
    assert main(["search", "switch-base-128-tpu-v3", "--objective", "cost", "--top", "1", "-q"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[lines.index("top 1") + 1].split()[4:6] == ["MFU", "cost"]


# `moesim estimate --ops` printed a memory operator's bytes as a bare number ("6.71089e+07") in the shape column.
def test_ops_table_gives_memory_bytes_a_unit():
    from moesim.cli.estimate_cmd import render_ops
    from moesim.ops.breakdown import OpRow

    rows = [OpRow("decoder moe", "attention", "attn_norm", "memory", "fwd", "bfloat16", (67108864.0,), 0.8, 29e-6,
                  128.0, 1.0),
            OpRow("decoder moe", "attention", "qkv_proj", "gemm", "fwd", "bfloat16", (4096.0, 6144.0, 4096.0), 0.789,
                  268e-6, 128.0, 1.0)]
    text = render_ops(rows)
    memory, gemm = (line for line in text.splitlines() if "attn_norm" in line or "qkv_proj" in line)
    assert "64.00 MiB" in memory and "e+07" not in memory, memory
    assert "4096x6144x4096" in gemm, gemm  # compute shapes stay dimensions


def test_estimate_ops_prints_no_unitless_memory_shape(capsys):
    assert main(["estimate", "switch-base-128-tpu-v3", "--ops"]) == 0
    out = capsys.readouterr().out
    memory = [line for line in out.split("operators (per device")[1].splitlines() if "  memory  " in line]
    assert memory and all(re.search(r"\d (B|KiB|MiB|GiB|TiB) ", line) for line in memory), memory[:3]


# `moesim report -o x.txt` wrote the HTML page under any suffix.
@pytest.mark.parametrize("name", ["report.txt", "report.json", "report"])
def test_report_refuses_a_suffix_other_than_html(tmp_path, capsys, name):
    out = tmp_path / name
    run_bad(capsys, ["report", "switch-base-128-tpu-v3", "-q", "-o", out], "field '--output'", ".html", ".htm")
    assert not out.exists()


def test_report_takes_htm(tmp_path, capsys):
    out = tmp_path / "page.HTM"
    assert main(["report", "switch-base-128-tpu-v3", "-q", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").lower().startswith("<!doctype html>")


# The CLI's objective choices (one tuple for search and sweep, kept free of the search's imports) are the search's own.
def test_cli_objectives_are_the_searchs():
    from moesim.cli import search_cmd, sweep_cmd
    from moesim.search import OBJECTIVES

    assert search_cmd.OBJECTIVE_CHOICES == OBJECTIVES and sweep_cmd.OBJECTIVE_CHOICES is search_cmd.OBJECTIVE_CHOICES
