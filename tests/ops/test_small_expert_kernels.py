"""Published small-expert grouped-GEMM measurements against moesim's tables (docs/operators.md, "Published
small-expert kernels against moesim's tables"): the data file is read strictly, each comparison is moesim's own
operator pricing at the row's shape, the block is current. Comparison only: nothing is fitted, and no error is
asserted to be small."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.errors import SpecError
from moesim.models import small_expert_kernels as sek
from moesim.ops.base import grouped_gemm
from moesim.ops.price import op_time_s
from moesim.specs.hardware_file import load_hardware


def test_rows_are_cited_and_shaped():
    rows = sek.load_rows()
    assert [r.case for r in rows] == ["cudnn-fe-924-mxfp8-glu", "cudnn-fe-924-mxfp8-dglu"]
    for r in rows:
        assert "cudnn-frontend PR 924" in r.source and str(r.gpu_us) in r.source
        assert (r.groups, r.rows, r.n, r.k, r.dtype, r.profile) == (4, 512, 512, 512, "float8", "b200")
        assert 0 < r.host_us_low <= r.host_us_high


def test_each_comparison_is_moesims_operator_pricing():
    """The moesim figure is op_time_s of the grouped GEMM of the row's shape, dtype and pass on its profile."""
    hw = load_hardware("b200")
    for r in sek.load_rows():
        p = sek.price(r)
        op = grouped_gemm("expert_ffn", "expert_fc1", r.dtype, r.groups, r.rows, r.n, r.k, pass_=r.pass_)
        assert p.moesim_s == float(np.ravel(op_time_s(op, hw))[0])
        assert p.flops == 2.0 * r.groups * r.rows * r.n * r.k
        assert p.moesim_launch_s == pytest.approx(hw.efficiency.kernel_launch_s)
        assert p.error == pytest.approx(p.moesim_s / (r.gpu_us * 1e-6) - 1.0)
    # the measured calls take longer than moesim's priced time at these shapes (the block's reading)
    assert all(sek.price(r).error < 0 for r in sek.load_rows())


def test_qwen3_shapes_are_the_breakdowns():
    """The Qwen3 shapes the block compares against are the B200 row's forward expert GEMMs (bridge_breakdown)."""
    from moesim.models.bridge_breakdown import row_breakdown

    bd = row_breakdown("26.02-b200-qwen3-30b-fp8mx-ep8")
    fwd = {r.name: tuple(int(x) for x in r.shape) for r in bd.moe_ops if r.kind == "grouped_gemm" and r.pass_ == "fwd"}
    assert fwd == {"expert_fc1": sek.QWEN3_B200_FC1, "expert_fc2": sek.QWEN3_B200_FC2}


def test_bad_rows_are_clear_errors(tmp_path):
    text = sek.DATA.read_text(encoding="utf-8")
    bad = tmp_path / "k.toml"
    bad.write_text(text.replace('pass = "dgrad"', 'pass = "bwd"'), encoding="utf-8")
    with pytest.raises(SpecError, match="unknown pass"):
        sek.load_rows(bad)
    bad.write_text(text.replace("gpu_us = 10.19", 'gpu_us = "10.19"'), encoding="utf-8")
    with pytest.raises(SpecError, match="gpu_us must be float"):
        sek.load_rows(bad)
    bad.write_text(text.replace("groups = 4", "groups = 0", 1), encoding="utf-8")
    with pytest.raises(SpecError, match="must be positive"):
        sek.load_rows(bad)


def test_the_block_is_current(load_script, doc_block):
    block = doc_block("small_expert_kernels", "docs/operators.md")
    assert block == sek.render_block(tuple(sek.price(r) for r in sek.load_rows())).strip()
    assert load_script("scripts/small_expert_kernels.py").main(["--check"]) == 0
