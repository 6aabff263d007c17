"""Every row of SimuMax's B200 release table as a validation case (docs/operators.md, "Every row of the B200
release table"): the committed data against the source table, each row written down in moesim, and the
generated block current. Validation only: nothing here is fitted, and no error is asserted to be small."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from moesim.errors import SpecError
from moesim.models import b200_release as rel

ROWS = rel.load_rows()
MIRROR = Path("/work/.mirror/MooreThreads+SimuMax/repo")  # a bare clone of the source, where one is at hand

# Spot figures of the source, typed in from MooreThreads/SimuMax @ 4dcaae51 docs/b200/b200_release_v1.2_summary.md
# (case: real ms, perf ms, real alloc GiB, perf alloc GiB), one row per model and layout kind.
SOURCE_SPOTS = {
    "llama3_70b_l12_tp1_pp2_dp4_mbc4_cef": (843.00, 828.76, 66.55, 66.44),
    "llama3_70b_l12_tp8_pp1_dp1_mbc32_cef": (2073.70, 1919.40, 28.29, 28.17),
    "deepseekv2_tp1_ep4_pp2_dp4_l4_mbc8_cef": (492.60, 435.14, 44.70, 44.37),
    "deepseekv3_l4_tp1_ep8_pp1_dp8_mbc4_cef": (603.20, 584.91, 104.30, 103.52),
    "llama3_405b_l4_tp8_pp1_dp1_mbc8_cef": (488.10, 486.81, 38.57, 38.38),
    "llama3_405b_l4_tp1_cp8_pp1_dp1_seq32768_mbc4_cef": (2003.60, 1896.20, 139.22, 139.13),
    "llama3_405b_l4_tp2_cp4_pp1_dp1_seq131072_mbc4_cef": (10577.60, 10043.50, 118.13, 116.50),
}


def test_the_data_holds_the_whole_release_table():
    assert len(ROWS) == 43 and len({r.case for r in ROWS}) == 43
    assert {r.scenario for r in ROWS} == set(rel.MODEL_ORDER)
    by_case = {r.case: r for r in ROWS}
    for case, (real_ms, perf_ms, real_gib, perf_gib) in SOURCE_SPOTS.items():
        r = by_case[case]
        assert (r.real_ms, r.simumax_perf_ms, r.real_alloc_gib, r.simumax_alloc_gib) == (real_ms, perf_ms, real_gib,
                                                                                          perf_gib)


@pytest.mark.parametrize("row", ROWS, ids=[r.case for r in ROWS])
def test_each_row_is_what_its_case_name_and_figures_say(row):
    name = row.case

    def degree(key, default):
        m = re.search(rf"(?:^|_){key}(\d+)(?:_|$)", name)
        return int(m.group(1)) if m else default

    assert (row.tp, row.cp, row.pp, row.dp, row.layers, row.micro_batches, row.seq_len) == (
        degree("tp", 1), degree("cp", 1), degree("pp", 1), degree("dp", 1), degree("l", 0), degree("mbc", 0),
        degree("seq", 4096))
    assert row.ep == degree("ep", 1) and row.cross_entropy_fusion == name.endswith("_cef")
    # real alloc GiB = max over ranks of max_memory_allocated (MiB) / 1024, as the table rounds it
    assert round(max(row.max_allocated_mib_by_rank) / 1024, 2) == row.real_alloc_gib
    # SimuMax's printed errors are (perf − real) / real of the printed figures
    assert (row.simumax_perf_ms / row.real_ms - 1) * 100 == pytest.approx(row.simumax_rel_err_pct, abs=0.006)
    assert (row.simumax_alloc_gib / row.real_alloc_gib - 1) * 100 == pytest.approx(row.simumax_alloc_err_pct,
                                                                                  abs=0.02)
    assert len(row.simumax_peak_alloc_by_stage_gib) == min(row.pp, 2)
    if row.memory_source_case != row.case:  # the mbc8 / mbc32 rows reuse their mbc4 run's memory
        source = next(r for r in ROWS if r.case == row.memory_source_case)
        assert source.max_allocated_mib_by_rank == row.max_allocated_mib_by_rank
        assert source.case == re.sub(r"_mbc\d+_", "_mbc4_", row.case)


@pytest.mark.skipif(not MIRROR.is_dir(), reason="the SimuMax source is not at hand")
def test_every_published_figure_matches_the_source_table():
    """The committed figures against docs/b200/b200_release_v1.2_summary.json @ 4dcaae51 itself."""
    text = subprocess.run(["git", f"--git-dir={MIRROR}", "show", "4dcaae51:docs/b200/b200_release_v1.2_summary.json"],
                          capture_output=True, text=True, check=True).stdout
    source = {r["case"]: r for r in json.loads(text)["rows"]}
    assert set(source) == {r.case for r in ROWS}
    for row in ROWS:
        s = source[row.case]
        ranks = [s["peak_memory_by_rank_mb"][str(i)]["max_allocated_mb"] for i in range(rel.GPUS)]
        assert (row.real_ms, row.real_alloc_gib, row.real_reserved_gib, row.simumax_perf_ms, row.simumax_alloc_gib,
                row.simumax_rel_err_pct, row.simumax_alloc_err_pct, row.layers, row.micro_batches) == (
            s["real_ms"], s["real_alloc_gib"], s["real_reserved_gib"], s["perf_ms"], s["perf_alloc_gib"],
            s["rel_err_pct"], s["alloc_err_pct"], s["layer_num"], s["mbc"])
        assert row.max_allocated_mib_by_rank == tuple(ranks)
        assert row.simumax_peak_alloc_by_stage_gib == tuple(s["peak_alloc_by_stage_gib"].values())
        assert row.memory_source_case == s.get("memory_source_case", row.case)


def test_a_row_is_applied_to_its_base_scenario_in_code():
    row = next(r for r in ROWS if r.case == "llama3_70b_l12_tp2_cp4_pp1_dp1_seq131072_mbc4_cef")
    sc, layout = rel.row_scenario(row)
    assert layout == "dp=1,tp=2,ep=1,pp=1,cp=4,cp_comm=a2a"
    tr = sc.training
    assert (tr.seq_len, tr.micro_batches, tr.global_batch_sequences) == (131072, 4, 4)
    assert tr.fused_cross_entropy and tr.sequence_parallel and not tr.dropout
    assert sc.model.max_position_embeddings >= 131072
    moe = next(r for r in ROWS if r.case == "deepseekv3_l4_tp1_ep4_pp2_dp4_mbc8_cef")
    sc, layout = rel.row_scenario(moe)
    assert layout == "dp=4,tp=1,ep=4,pp=2"
    assert sc.training.global_batch_sequences == 32 and not sc.training.sequence_parallel  # tp 1: Megatron drops SP
    assert sc.model.moe.leading_dense_layers == 1 and sc.model.moe.router_score == "softmax"


def test_the_stage_of_the_published_peak_is_megatrons_rank_order():
    """pp 2: ranks 0-3 are stage 0; DeepSeek-V3's last stage (the head's logits) holds the published peak."""
    row = next(r for r in ROWS if r.case == "deepseekv3_l4_tp1_ep4_pp2_dp4_mbc4_cef")
    assert [row.stage_of_rank(i) for i in range(8)] == [0] * 4 + [1] * 4
    assert row.stage_of_rank(row.worst_rank) == 1
    priced = rel.price_row(row)
    assert priced.memory_stage == 1
    assert priced.peak_bytes == pytest.approx(priced.memory_bytes["total"] - priced.memory_bytes["reserved"])


def test_bad_rows_are_named(tmp_path):
    good = rel.DATA.read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(good.replace("real_ms = 843.0", "real_ms = \"fast\"", 1), encoding="utf-8")
    with pytest.raises(SpecError, match=r"row\[0\]\.real_ms must be float"):
        rel.load_rows(bad)
    bad.write_text(good.replace("tp = 1\n", "tp = 3\n", 1), encoding="utf-8")
    with pytest.raises(SpecError, match="8 GPUs"):
        rel.load_rows(bad)


def test_the_generated_block_is_current(load_script, doc_block):
    script = load_script("scripts/b200_release_check.py")
    block = doc_block("b200_release_check", "docs/operators.md")
    assert block == script.render().strip(), "run: python scripts/b200_release_check.py --write"
    assert script.main(["--check"]) == 0


@pytest.mark.parametrize("path", ["scripts/b200_release_check.py", "scripts/b200_host_bound.py"])
def test_check_fails_on_a_stale_block(path, load_script, tmp_path, capsys):
    """Both B200 blocks of docs/operators.md share scripts/docblock.py's block_main (b200_host_bound: session 19,
    hostcost)."""
    script = load_script(path)
    stale = tmp_path / "operators.md"
    stale.write_text(f"text\n{script.BEGIN}\n| an old table |\n{script.END}\nmore\n", encoding="utf-8")
    script.DOC = stale
    assert script.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert script.main(["--write"]) == 0 and script.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8").startswith("text\n") and stale.read_text(encoding="utf-8").endswith(
        "more\n")


def test_the_simulator_runs_the_agreement_rows():
    """Both engines price one operator list: on the release's base layouts they agree within 2 % (as
    tests/des/test_des_agreement.py's tolerance)."""
    for case in rel.DES_CASES[:2]:
        priced = rel.price_row(next(r for r in ROWS if r.case == case), simulate=True)
        assert priced.des_step_s == pytest.approx(priced.step_s, rel=0.02)


def test_the_memory_by_part_table_adds_up_to_its_total():
    """Every part of `memory_bytes_per_device` but `reserved` has its column, so the columns sum to the total
    (to the table's rounding); before session 19's review the framework buffers and transients had none."""
    priced = [rel.price_row(r) for r in ROWS if r.case in rel.DES_CASES]
    block = rel.render_block(priced).split("moesim's memory by part", 1)[1]
    lines = [line for line in block.splitlines() if line.startswith("| `")]
    assert len(lines) == len(priced)
    parts = set(priced[0].memory_bytes) - {"total", "reserved"}
    for line in lines:
        cells = [float(c) for c in line.strip("|").split("|")[1:]]
        *columns, total, _published, _left = cells
        assert len(columns) == len(parts)
        assert sum(columns) == pytest.approx(total, abs=0.005 * len(columns))


@pytest.mark.parametrize("name", rel.MODEL_ORDER)
def test_each_base_scenario_states_its_rows_cross_entropy(name):
    """A base scenario priced alone is its rows' run: every row of the table is a `_cef` case, so each base
    scenario states the fused loss (two of the four did not after session 19's merge fix)."""
    from moesim.specs.load import load_scenario

    fusion = {r.cross_entropy_fusion for r in ROWS if r.scenario == name}
    assert fusion == {True}
    assert load_scenario(name).training.fused_cross_entropy
