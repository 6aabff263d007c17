"""NVIDIA's HybridEP as moesim's `hybridep` dispatch backend (collectives/dispatch.py, collectives/hybridep.toml;
session 21, bridgekeys): DeepEP's normal-kernel path, its NVLink stage at HybridEP's published per-rank rate."""

from __future__ import annotations

import dataclasses
import math

import pytest

from moesim.collectives.base import Group
from moesim.collectives.dispatch import (DispatchModel, _hybridep_rates, hybridep_published_ranks,
                                         hybridep_rate_bytes_per_s)
from moesim.collectives.select import default_model, model_for
from moesim.errors import SpecError
from moesim.specs.load import load_hardware, load_scenario


def test_the_published_rows_and_the_rule_between_them():
    # deepseek-ai/DeepEP @ 41cad944 docs/README_Hybrid-EP.md, HybridEP Torch API at 16 SMs (BF16 dispatch, combine)
    assert hybridep_rate_bytes_per_s("b200", 8, "dispatch") == pytest.approx(535.94e9)
    assert hybridep_rate_bytes_per_s("gb200-nvl72", 8, "combine") == pytest.approx(538.44e9)
    assert hybridep_rate_bytes_per_s("gb200-nvl72", 20, "dispatch") == pytest.approx(441.89e9)  # the 24-rank row
    assert hybridep_rate_bytes_per_s("gb200-nvl72", 64, "dispatch") == pytest.approx(469.96e9)  # beyond: 36 ranks'
    assert hybridep_rate_bytes_per_s("gb200-nvl72", 32) == pytest.approx((485.50e9 + 423.19e9) / 2)
    assert hybridep_rate_bytes_per_s("h100-sxm", 8) == math.inf  # only the IB rows are published for H100
    assert (hybridep_published_ranks("gb200-nvl72"), hybridep_published_ranks("b200"),
            hybridep_published_ranks("h100-sxm")) == (36, 8, 0)


def _model(hardware: str, backend: str, direction: str = "dispatch") -> DispatchModel:
    hw = load_hardware(hardware)
    token = 7168 * 2.0  # BF16, hidden 7168 (the README's set-up)
    return DispatchModel(default_model(hw), backend, 64, 8, 0, (token, token), direction)


def test_one_domain_moves_each_tokens_copies_at_the_published_rate():
    """On one B200 node, 8 ranks, 8 local experts (64 experts), top-8: each GPU receives S·Γ/k bytes, the bytes
    HybridEP's benchmark counts (tests/test_hybrid_ep.py dispatched_hidden.numel() x 2); at the published rate
    that takes S·Γ/k / 535.94 GB/s plus one NVLink message latency."""
    model = _model("b200", "hybridep")
    s = 4096 * 8 * 7168 * 2.0  # 4096 tokens x top-8 x BF16 hidden
    group = Group(8, 1, 1, 8)
    shape = model.shape(8)
    received = s * shape.distinct_gpus / shape.top_k
    cost = model.cost("all_to_all", s, group)
    assert cost.time_s >= received / 535.94e9
    assert cost.time_s == pytest.approx(received / 535.94e9, rel=0.02)  # the latency is microseconds of ~ms
    assert model.directed("combine").cost("all_to_all", s, group).time_s > cost.time_s  # 530.86 < 535.94
    deepep = _model("b200", "deepep").cost("all_to_all", s, group)
    assert deepep.time_s != cost.time_s  # DeepEP's own path: its records at the NVLink link's rate


def test_without_published_rows_hybridep_is_deepeps_path_with_token_records():
    h100 = _model("h100-sxm", "hybridep")
    s, group = 4096 * 8 * 7168 * 2.0, Group(8, 1, 1, 8)
    shape = h100.shape(8)
    w_nvl, a_nvl, _, _ = h100._links(s, group)
    assert h100.cost("all_to_all", s, group).time_s == pytest.approx(s * shape.distinct_gpus / 8 / w_nvl + a_nvl)


def test_a_scenario_names_it_and_fp8_dispatch_is_refused():
    sc = load_scenario("deepseek-v3-h800")
    hyb = dataclasses.replace(sc, training=dataclasses.replace(sc.training, dispatch_backend="hybridep"))
    with pytest.raises(SpecError, match="dispatches BF16"):  # DeepSeek-V3's recipe dispatches FP8
        model_for(hyb)
    mixtral = load_scenario("mixtral-8x7b-h100")  # BF16 dispatch
    mixtral = dataclasses.replace(mixtral, training=dataclasses.replace(mixtral.training, dispatch_backend="hybridep"))
    assert mixtral.training.dtype_for("dispatch") == "bfloat16" and model_for(mixtral).backend == "hybridep"


def test_the_rates_file_is_strict(tmp_path, monkeypatch):
    import moesim.collectives.deepep_data as deepep_data  # session 25 (tidy25): the reader moved out of dispatch.py

    bad = tmp_path / "hybridep.toml"
    bad.write_text('schema_version = 1\nsource = "x"\n[sms]\nkernels = 16\n[[rate]]\nhardware = "b200"\nranks = 8\n'
                   'dispatch_gb_per_s = -1.0\ncombine_gb_per_s = 5.0\n', encoding="utf-8")
    monkeypatch.setattr(deepep_data, "HYBRIDEP", bad)
    _hybridep_rates.cache_clear()
    try:
        with pytest.raises(SpecError, match="positive ranks") as err:
            _hybridep_rates()
        assert err.value.field == "rate[0]"
    finally:
        _hybridep_rates.cache_clear()


@pytest.mark.parametrize("sms", ["kernels = 0", "kernels = 16.0", "kernels = 16\nother = 1", "kernels = 8\n[sms.x]",
                                 ""])
def test_the_sm_count_is_strict(tmp_path, monkeypatch, sms):
    """hybridep.toml [sms] (session 22 smshare2): exactly kernels, a positive integer; a bad one names [sms]."""
    import moesim.collectives.deepep_data as deepep_data  # session 25 (tidy25): the reader moved out of dispatch.py

    bad = tmp_path / "hybridep.toml"
    bad.write_text(f'schema_version = 1\nsource = "x"\n' + (f"[sms]\n{sms}\n" if sms else ""), encoding="utf-8")
    monkeypatch.setattr(deepep_data, "HYBRIDEP", bad)
    deepep_data.hybridep_kernel_sms.cache_clear()
    try:
        with pytest.raises(SpecError, match="kernels") as err:
            deepep_data.hybridep_kernel_sms()
        assert err.value.field == "sms"
    finally:
        deepep_data.hybridep_kernel_sms.cache_clear()
