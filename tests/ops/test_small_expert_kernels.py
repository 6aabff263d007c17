"""Published small-expert grouped-GEMM measurements against moesim's tables (docs/operators.md, "Published
small-expert kernels against moesim's tables"): the data file is read strictly, each comparison is moesim's own
operator pricing at the row's shape, the block is current. Comparison only: nothing is fitted, and no error is
asserted to be small."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.errors import SpecError
from moesim.models import small_expert_kernels as sek
from moesim.ops.base import backward, grouped_gemm
from moesim.ops.price import op_efficiency, op_time_s
from moesim.specs.hardware_file import load_hardware


def test_rows_are_cited_and_shaped():
    rows = {r.case: r for r in sek.load_rows()}
    assert list(rows) == ["cudnn-fe-924-mxfp8-glu", "cudnn-fe-924-mxfp8-dglu",
                          "grouped-gemm-pr37-h100-bf16-cublas-loop", "grouped-gemm-pr37-h100-bf16-cutlass-sm90"]
    for r in rows.values():
        assert f"{r.gpu_us:g} us" in r.source or f"{r.gpu_us / 1000:.3f} ms" in r.source
        assert 0 <= r.host_us_low <= r.host_us_high
    for case in ("cudnn-fe-924-mxfp8-glu", "cudnn-fe-924-mxfp8-dglu"):
        r = rows[case]
        assert "cudnn-frontend PR 924" in r.source and r.host_us_low > 0
        assert (r.groups, r.rows, r.n, r.k, r.dtype, r.profile) == (4, 512, 512, 512, "float8", "b200")
    for case in ("grouped-gemm-pr37-h100-bf16-cublas-loop", "grouped-gemm-pr37-h100-bf16-cutlass-sm90"):
        r = rows[case]
        # Qwen3-30B-A3B's up_proj (N = 2 · d_ff 768, K = d 2048) over 128 experts, the log's 65536 rows uniform
        assert (r.groups, r.rows, r.n, r.k) == (128, 65536 // 128, 2 * 768, 2048)
        # the log's own forward TFLOP/s: 2 · rows · N · K over the step (129.50 for the cuBLAS loop, 160.54 CUTLASS)
        fwd_tflops = {"grouped-gemm-pr37-h100-bf16-cublas-loop": 129.50,
                      "grouped-gemm-pr37-h100-bf16-cutlass-sm90": 160.54}[case]
        tflops = 2 * 65536 * r.n * r.k / (r.gpu_us * 1e-6) / 1e12
        assert tflops == pytest.approx(fwd_tflops, abs=0.05)  # the log prints the step to 3 places of a ms
        assert (r.dtype, r.profile, r.pass_, r.host_us_high) == ("bfloat16", "h100-sxm", "fwd+bwd", 0.0)


def test_each_comparison_is_moesims_operator_pricing():
    """The moesim figure is op_time_s of the grouped GEMM of the row's shape, dtype and pass on its profile; fwd+bwd
    the forward and the dgrad and wgrad moesim.ops.base.backward gives it."""
    for r in sek.load_rows():
        hw = load_hardware(r.profile)
        p = sek.price(r)
        if r.pass_ == "fwd+bwd":
            fwd = grouped_gemm("expert_ffn", "expert_fc1", r.dtype, r.groups, r.rows, r.n, r.k)
            ops = [fwd, *backward(fwd)]
            assert [op.pass_ for op in ops] == ["fwd", "dgrad", "wgrad"]
        else:
            ops = [grouped_gemm("expert_ffn", "expert_fc1", r.dtype, r.groups, r.rows, r.n, r.k, pass_=r.pass_)]
        assert p.moesim_s == pytest.approx(sum(float(np.ravel(op_time_s(op, hw))[0]) for op in ops), rel=1e-12)
        assert p.flops == pytest.approx(2.0 * r.groups * r.rows * r.n * r.k * len(ops), rel=1e-12)
        assert p.moesim_launch_s == pytest.approx(len(ops) * hw.efficiency.kernel_launch_s)
        assert p.error == pytest.approx(p.moesim_s / (r.gpu_us * 1e-6) - 1.0)
        if len(ops) == 1:  # one operator: the efficiency is its table's
            assert p.efficiency == pytest.approx(float(np.ravel(op_efficiency(ops[0], hw))[0]), rel=1e-9)
    # every measured call takes longer than moesim's priced time at its shape (the block's reading)
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
    for old, new, message in (('pass = "dgrad"', 'pass = "bwd"', "unknown pass"),
                              ("gpu_us = 10.19", 'gpu_us = "10.19"', r"row\[0\]\.gpu_us must be float"),
                              ("groups = 4", "groups = 0", "must be positive")):
        bad.write_text(text.replace(old, new, 1), encoding="utf-8")
        with pytest.raises(SpecError, match=message):
            sek.load_rows(bad)


def test_the_block_is_current(load_script, doc_block):
    block = doc_block("small_expert_kernels", "docs/operators.md")
    assert block == sek.render_block(tuple(sek.price(r) for r in sek.load_rows())).strip()
    assert load_script("scripts/small_expert_kernels.py").main(["--check"]) == 0
