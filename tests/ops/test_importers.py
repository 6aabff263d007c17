"""The measured-table importers (scripts/import_xla_matmul.py, scripts/import_simumax.py) on small inputs, and
the tables they produced in the shipped profiles."""

from __future__ import annotations

import pytest

from moesim.specs.load import load_hardware

TABLE = '''entries {
  key: "sm_90"
  value {
    entries {
      b: 1
      m: 256
      n: 512
      k: 1024
      flops { key: "bf16xbf16->bf16" value: 98900000000000 }
      flops { key: "f32xf32->f32" value: 1 }
    }
    entries {
      b: 2
      m: 256
      n: 512
      k: 1024
      flops { key: "bf16xbf16->bf16" value: 197800000000000 }
    }
  }
}
entries {
  key: "sm_100_B200"
  value {
    entries {
      b: 1
      m: 256
      n: 256
      k: 256
      flops { key: "bf16xbf16->bf16" value: 5 }
    }
  }
}
'''


def test_xla_table_converts_single_gemms_and_batched_ones_per_architecture(load_script):
    mod = load_script("scripts/import_xla_matmul.py")
    tables = mod.convert(TABLE, "sm_90", "bf16xbf16->bf16", 989.0)
    assert tables["gemm"] == [(256, 512, 1024, pytest.approx(0.1))]
    assert tables["grouped_gemm"] == [(2, 256, 512, 1024, pytest.approx(0.2))]
    text = mod.render(tables, "bfloat16", "src", "on", "measured")
    assert 'kind = "grouped_gemm"' in text and 'status = "derived"' in text and "[256, 512, 1024, 0.1000]" in text
    with pytest.raises(KeyError):
        mod.convert(TABLE, "sm_80", "bf16xbf16->bf16", 989.0)
    assert mod.main(["/nonexistent.txtpb", "--arch", "sm_90", "--key", "k", "--dtype", "bfloat16",
                     "--peak-tflops", "1", "--source", "s", "--measured-on", "m"]) == 2


def test_simumax_default_memory_factor_is_marked_assumed_and_fused_ce_imported(load_script):
    mod = load_script("scripts/import_simumax.py")
    system = {"accelerator": {"op": {}, "bandwidth": {
        "default": {"efficient_factor": 0.5, "gbps": 1000.0, "latency_us": 30},
        "ce_fusion": {"efficient_factor": 0.25, "gbps": 1000.0, "latency_us": 30}}}}
    tables = mod.convert(system, 1000.0, 1000.0 * 2 ** 30 / 1e9)
    assert tables[("memory", "bfloat16", "any", "cross_entropy_fused")] == [(1e9, pytest.approx(0.25))]
    text = mod.render(tables, "src", "on")
    default = text[text.index('pass = "any"\nstatus'):]
    assert default.startswith('pass = "any"\nstatus = "assumed"')
    assert 'op = "cross_entropy_fused"\nstatus = "measured"' in text


def test_shipped_xla_tables():
    h100 = [t for t in load_hardware("h100-sxm").efficiency.op_tables if "openxla" in t.source]
    assert {(t.kind, t.dtype, t.status, len(t.points)) for t in h100} == {
        ("gemm", "bfloat16", "measured", 125), ("grouped_gemm", "bfloat16", "derived", 250)}
    # B200 FP8 is not shipped beside SimuMax's TE bf16 tables (a cross-source ratio: docs/operators.md).
    assert not [t for t in load_hardware("b200").efficiency.op_tables if t.dtype == "float8"]
    # Every efficiency is a fraction of the dense peak: H100 bf16 GEMMs peak at 0.79 at 4096^3.
    assert max(p[-1] for t in h100 for p in t.points) < 0.85


def test_simumax_wgrad_keys_of_one_output_dtype_only(load_script):
    """SimuMax measured some weight-gradient GEMMs both writing fp32 and bf16; the runs' wgrad GEMM writes the fp32
    main gradient (Megatron's fused accumulation; TE v2.11 linear.py out_dtype = main_grad.dtype), so only those
    are imported by default, and one shape is not the mean of two kernels (session 21, simumaxdiff)."""
    mod = load_script("scripts/import_simumax.py")
    key = "b=1, m=7168, k=4096, n=8192, layout=NT, accumulate=True, out_dtype={}"
    fwd = "b=1, m=4096, k=8192, n=7168, layout=TN, accumulate=False, out_dtype=bf16"
    system = {"accelerator": {"op": {"matmul": {"tflops": 1000.0, "accurate_efficient_factor": {
        key.format("fp32"): 0.47, key.format("bf16"): 0.61, fwd: 0.6}}}}}
    default = mod.convert(system, 1000.0, 1000.0, memory=False)
    assert default[("gemm", "bfloat16", "wgrad", "any")] == [(8192, 7168, 4096, pytest.approx(0.47))]
    assert default[("gemm", "bfloat16", "fwd", "any")] == [(4096, 7168, 8192, pytest.approx(0.6))]
    bf16 = mod.convert(system, 1000.0, 1000.0, memory=False, wgrad_out_dtype="bf16")
    assert bf16[("gemm", "bfloat16", "wgrad", "any")] == [(8192, 7168, 4096, pytest.approx(0.61))]


def test_shipped_b200_wgrad_table_is_the_fp32_output_kernel():
    """The B200 profile's dense wgrad table: SimuMax's 144 fp32-output keys, one value per shape (its fc1 wgrad at
    tp 8, m 7168 out, k 4096 tokens, n 8192 in: 0.4742, configs/system/b200_bf16_ceperm.json @ 4dcaae51)."""
    (table,) = [t for t in load_hardware("b200").efficiency.op_tables
                if (t.kind, t.dtype, t.pass_, t.op) == ("gemm", "bfloat16", "wgrad", "any")]
    shapes = [p[:3] for p in table.points]
    assert len(shapes) == len(set(shapes)) == 144
    assert dict((p[:3], p[3]) for p in table.points)[(8192, 7168, 4096)] == pytest.approx(0.4742)
