"""The shipped priors on the collected one-node B200 logs at 32 / 64 MiB (scripts/b200_one_node_tp.py;
docs/collectives-history.md, "Session 19 (newlogs9)", item 6): which logs cover those sizes, and the figures the docs
section quotes for them."""

import pytest

MIB = 2**20


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("scripts/b200_one_node_tp.py")


@pytest.fixture(scope="module")
def rows(script):
    return {e["file"].removesuffix("_perf.log"): script.tp_rows(e) for e in script.one_node_b200_entries()}


def test_the_one_node_b200_logs_and_the_sizes_they_cover(rows):
    # three one-node B200 sources: Vultr (one process per GPU, every power of two), Engaging and AICR (-g 8, -f 4)
    assert sorted({k.split("-1node")[0] for k in rows}) == ["b200-aicr", "b200-engaging", "b200-vultr"]
    assert len(rows) == 17
    for name, r in rows.items():
        has_32 = r[32 * MIB] is not None
        # only Vultr's sweeps (factor 2) print a 32 MiB row; Engaging's and AICR's (1 MiB x 4^k) print 64 MiB
        assert has_32 == name.startswith("b200-vultr") and r[64 * MIB] is not None


def test_all_gather_and_reduce_scatter_are_not_priced_too_fast_at_32_64_mib(rows):
    ag_rs = {k: r for k, r in rows.items() if k.endswith(("all_gather", "reduce_scatter"))}
    assert len(ag_rs) == 6
    for r in ag_rs.values():
        assert r[64 * MIB].algorithm == "ring/Simple" and -0.07 < r[64 * MIB].busbw_error < 0.03
    # Vultr at 32 MiB: measured faster than priced (all_gather -19 %, reduce_scatter -14 %)
    assert -0.21 < rows["b200-vultr-1node_all_gather"][32 * MIB].busbw_error < -0.17
    assert -0.16 < rows["b200-vultr-1node_reduce_scatter"][32 * MIB].busbw_error < -0.12


def test_all_reduce_is_priced_fast_at_64_mib_on_every_source(rows):
    # nvls/Simple priced 239.3 us at 64 MiB; measured 277-293 us (+16 to +23 %)
    for src in ("b200-vultr", "b200-engaging", "b200-aicr"):
        s = rows[f"{src}-1node_all_reduce"][64 * MIB]
        assert s.algorithm == "nvls/Simple" and 0.14 < s.busbw_error < 0.25


def test_the_script_prints_one_line_per_log(script):
    out = script.lines()
    assert len(out) == 1 + 17 and out[1].startswith("b200-vultr-1node_all_reduce")
