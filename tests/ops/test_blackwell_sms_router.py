"""B200's SM count and the router GEMM's dtypes as Megatron-Core runs them (session 24, bwsm).

b200 states 148 SMs (a published measurement: hardware_profiles/b200.toml), so the SM charge of compute beside the
expert all-to-all's kernels (moesim/ops/sm_share.py) is paid there as on h100 / b300; gb200-nvl72 states none (no
vendor or measured source found). The Megatron-Bridge rows price the router's logits GEMM as Megatron-Core computes
it (tests/data/bridge_perf/router_dtypes.toml): BF16 forward, and under moe_router_dtype "fp32" (DeepSeek-V3) TF32
dgrad / wgrad (TE's general_gemm); the scenario's [moe] router_bwd_dtype carries the backward's dtype."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from moesim.errors import SpecError
from moesim.models import bridge_perf as bp
from moesim.ops.base import backward, gemm
from moesim.ops.layer import LayerOps
from moesim.ops.sm_share import overlapped_compute_share
from moesim.specs.fields import Table
from moesim.specs.load import load_hardware, load_scenario
from moesim.specs.scenario_file import scenario_moe
from moesim.specs.training import TrainingSpec
from moesim.workload import build_workload

PROFILES = Path(__file__).resolve().parents[2] / "hardware_profiles"
ROWS = {r.case: r for r in bp.load_newer_rows()}


def test_b200_states_its_sm_count_with_its_source_and_gb200_none():
    assert load_hardware("b200").chip.sm_count == 148
    text = (PROFILES / "b200.toml").read_text(encoding="utf-8")
    cited = text.split("sm_count = 148", 1)[0].rsplit("\n\n", 1)[-1]  # the comment block above the figure
    assert "B200 enables 74 SMs per die, giving 148 SMs across the GPU" in cited and "chipsandcheese.com" in cited
    assert load_hardware("gb200-nvl72").chip.sm_count is None  # no vendor or measured source found (history)


def test_hybridep_on_b200_computes_on_the_sms_left():
    """HybridEP's kernels (16 SMs by default, the recipe's 32 where set) leave (148 − SMs) / 148 of a B200 to the
    GEMMs beside them; a B200 Bridge row run with the EP overlap prices slower at the recipe's 32 SMs than without."""
    tr = TrainingSpec(global_batch_sequences=8, dispatch_backend="hybridep", comm_sm_share="hybridep",
                      moe_a2a_overlap=True)
    assert overlapped_compute_share(load_hardware("b200"), tr) == pytest.approx((148 - 16) / 148)
    assert overlapped_compute_share(load_hardware("b200"), dataclasses.replace(tr, a2a_kernel_sms=32)) == \
        pytest.approx(116 / 148)
    row = dataclasses.replace(ROWS["26.04-b200-qwen3-30b-mxfp8-ep8"], moe_a2a_overlap="on")  # pp 1: overlap priced
    assert (row.dispatcher, row.a2a_kernel_sms) == ("hybridep", 32)
    own, unset = bp.price_row(row).step_s, bp.price_row(dataclasses.replace(row, a2a_kernel_sms=0)).step_s
    assert own > unset * 1.01, (own, unset)


def test_the_bridge_rows_run_megatron_cores_router_dtypes():
    """DeepSeek-V3 (moe_router_dtype "fp32"): BF16 forward, TF32 backward; Qwen3 / GPT-OSS (none): BF16 throughout."""
    import tomllib

    data = tomllib.loads(bp.ROUTER_DATA.read_text(encoding="utf-8"))["model"]  # the data file itself
    assert set(data) == {r.model for r in ROWS.values()}
    assert (data["deepseek-v3"]["router_dtype"], data["deepseek-v3"]["router_bwd_dtype"]) == ("bfloat16", "tfloat32")
    assert bp.ROUTER_DTYPES == {m: (d["router_dtype"], d["router_bwd_dtype"]) for m, d in data.items()}
    for case in ("26.06-gb300-dsv3-mxfp8-pp2vp8ep32", "26.08-gb300-qwen3-30b-mxfp8-ep8"):
        row = ROWS[case]
        moe = bp.row_scenario(row, "none", ()).model.moe
        assert (moe.router_dtype, moe.router_bwd_dtype) == (data[row.model]["router_dtype"],
                                                           data[row.model]["router_bwd_dtype"]), case


def test_a_row_whose_model_has_no_router_dtypes_names_the_file_and_the_model(tmp_path, monkeypatch):
    """Session 25 (tidy25): the router dtypes are data (router_dtypes.toml); a row of a model it lacks is a SpecError
    naming the data file and the model, when the rows are read and when a row is priced, not a KeyError."""
    text = bp.ROUTER_DATA.read_text(encoding="utf-8")
    short = tmp_path / "router_dtypes.toml"
    short.write_text(text[:text.index("[model.gpt-oss-120b]")], encoding="utf-8")
    with pytest.raises(SpecError, match="no router dtypes for model 'gpt-oss-120b'") as err:
        bp.router_dtypes("gpt-oss-120b", short)
    assert err.value.file == str(short) and err.value.field == "model.gpt-oss-120b"
    rows = tmp_path / "rows.toml"
    rows.write_text(bp.DATA.read_text(encoding="utf-8").replace('model = "deepseek-v3"', 'model = "new-moe"', 1),
                    encoding="utf-8")
    with pytest.raises(SpecError, match="unknown model") as err:  # not a label either: the row's own check first
        bp.load_rows(rows)
    assert err.value.file == str(rows) and err.value.value == "new-moe"
    monkeypatch.setitem(bp.MODEL_LABEL, "new-moe", "New-MoE")  # labelled, but no router dtypes: read, not priced
    with pytest.raises(SpecError, match="no router dtypes for model 'new-moe'") as err:
        bp.load_rows(rows)
    assert err.value.file == str(bp.ROUTER_DATA) and err.value.field == "model.new-moe"
    row = dataclasses.replace(ROWS["26.08-gb300-qwen3-30b-mxfp8-ep8"], model="mixtral-8x7b")  # a library model
    with pytest.raises(SpecError, match="no router dtypes for model 'mixtral-8x7b'") as err:
        bp.row_scenario(row, "none", ())
    assert err.value.file == str(bp.ROUTER_DATA)
    bad = tmp_path / "bad.toml"
    bad.write_text('schema_version = 1\n[model.x]\nrouter_dtype = "bfloat16"\n', encoding="utf-8")
    with pytest.raises(SpecError, match="exactly router_dtype and router_bwd_dtype") as err:
        bp.router_dtype_table(bad)
    assert err.value.field == "model.x"


def test_the_routers_backward_runs_in_its_own_dtype():
    sc = bp.row_scenario(ROWS["26.06-gb300-dsv3-mxfp8-pp2vp8ep32"], "none", ())
    ops = LayerOps(sc.model, sc.training, 1.0, 1.0, 32.0, 1.0)
    cls = next(c for c in build_workload(sc.model, 4096, 0).classes if c.is_moe)
    (router,) = [op for op in ops.router(cls, 4096.0) if op.name == "router"]
    assert router.dtype == "bfloat16" and [op.dtype for op in backward(router)] == ["tfloat32", "tfloat32"]
    assert [op.pass_ for op in backward(router)] == ["dgrad", "wgrad"]
    assert sc.hardware.chip.peak_for("tfloat32") < sc.hardware.chip.peak_for("bfloat16")
    # without the key a GEMM's backward keeps its forward's dtype (DeepSeek's H800 trace: BF16 throughout)
    h800 = load_scenario("deepseek-v3-h800").model.moe
    assert (h800.router_dtype, h800.router_bwd_dtype) == ("bfloat16", "")
    assert [op.dtype for op in backward(gemm("router", "router", "float32", 8.0, 4.0, 2.0))] == ["float32"] * 2


def test_a_bad_router_bwd_dtype_names_the_field():
    model = load_scenario("deepseek-v3-h800").model
    with pytest.raises(SpecError, match="router_bwd_dtype"):
        scenario_moe(model, Table({"router_bwd_dtype": "tf32"}, file="s.toml", path="moe"))
    with pytest.raises(SpecError, match="router_bwd_dtype"):
        dataclasses.replace(model.moe, router_bwd_dtype="fp32")
