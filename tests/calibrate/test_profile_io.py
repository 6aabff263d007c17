"""The calibrated profile: same schema, loads with load_hardware, prices like the fit, works with estimate."""

import dataclasses
import tomllib

import pytest

from moesim.calibrate import calibrate
from moesim.calibrate.predict import collective_terms, predict_layer, terms_time_s
from moesim.calibrate.profile_io import PROVENANCE_HEAD, Provenance, format_provenance, parse_provenance
from moesim.calibrate.records import read_measurements
from moesim.cli import main
from moesim.errors import SpecError
from moesim.specs.hardware import EfficiencyTable
from moesim.specs.load import load_hardware

from calibrate_synth import DATA, synthetic_records, true_cpu_profile, write_jsonl


def test_round_trip_and_same_predictions(tmp_path, synthetic_jsonl, true_hw):
    out = tmp_path / "cal.toml"
    result = calibrate([str(synthetic_jsonl)], "cpu-localhost", out, holdout_fraction=0.3, seed=0, bootstrap=5)
    loaded = load_hardware(out)
    assert loaded.name == "cpu-localhost-calibrated" and loaded.max_devices == 8
    for obs, expected in zip(result.fit.observations, result.fit.predicted_s):
        assert terms_time_s(obs.terms, loaded) == pytest.approx(expected, rel=1e-5)
    raw = tomllib.loads(out.read_text())
    assert raw["interconnect"][0]["latency_us"] == pytest.approx(55.0, rel=1e-3)
    level = loaded.interconnect[0]
    assert level.link_bw_bytes_per_s * level.bw_efficiency.at(1e6) == pytest.approx(3.1e9, rel=1e-3)
    assert loaded.efficiency.memory_bandwidth == pytest.approx(0.45, rel=1e-3)
    prov = parse_provenance(loaded.calibrated_from)
    assert prov.fitted_on == result.fit.fitted_keys or set(prov.fitted_on) == set(result.fit.fitted_keys)
    assert set(prov.held_out) == set(result.held_out) and len(prov.held_out) == 4
    assert str(synthetic_jsonl) in prov.sources[0] and "@sha256:" in prov.sources[0]
    text = out.read_text()
    assert text.startswith("# Calibrated by `moesim calibrate`") and "Held out (4 records)" in text
    # held-out layer predictions of data made by the model itself are exact up to the efficiency table
    assert result.held_out_report.total.max_abs_pct_error < 0.05


def _faster_than_the_prior_peak(tmp_path):
    """calibrate on records of a CPU 4x (float32) and 10x (bfloat16) the cpu-localhost prior's peaks: (result, out)."""
    true_hw = true_cpu_profile()
    fast = dataclasses.replace(true_hw, chip=dataclasses.replace(
        true_hw.chip, peak_flops_per_s={"float32": 4 * 96e9, "bfloat16": 10 * 96e9}))
    path = write_jsonl(tmp_path / "fast.jsonl", synthetic_records(fast))
    out = tmp_path / "fast.toml"
    return calibrate([str(path)], "cpu-localhost", out, holdout_fraction=0.0, bootstrap=0), out


def test_measured_throughput_above_the_prior_peak_raises_the_peak(tmp_path):
    result, out = _faster_than_the_prior_peak(tmp_path)
    assert max(result.fit.efficiency) > 1
    loaded = load_hardware(out)
    assert all(0 < e <= 1 for _, e in loaded.efficiency.matmul.points)
    assert loaded.chip.peak_for("float32") > 96e9 * 2
    assert loaded.chip.peak_for("bfloat16") / loaded.chip.peak_for("float32") == pytest.approx(2.5, rel=0.02)
    for obs, expected in zip(result.fit.observations, result.fit.predicted_s):
        assert terms_time_s(obs.terms, loaded) == pytest.approx(expected, rel=1e-5)


def test_fitted_efficiency_above_one_is_warned_with_its_knot_value_and_the_peak(tmp_path, synthetic_jsonl):
    """Session 20 (whyrank): newuser3's CPU fit gave an efficiency of 1.304 of peak and no output said so."""
    from moesim.calibrate.calibration_text import render_calibration

    result, _ = _faster_than_the_prior_peak(tmp_path)
    top = max((p for p in result.fit.parameters if p.fitted and p.name.startswith("efficiency@")),
              key=lambda p: p.value)
    assert top.value > 1
    said = [w for w in result.warnings if "matmul efficiency" in w]
    assert len(said) == 1 and "\n" not in said[0]
    assert f"{top.name} is {top.value:.4g}, above 1" in said[0]
    assert "float32 peak 0.096 TFLOP/s per device of the prior profile cpu-localhost" in said[0]
    assert "profile's peak is likely wrong for this machine" in said[0]
    assert f"warning: {said[0]}" in render_calibration(result)
    assert said[0] in result.as_dict()["warnings"]
    # a fit at or below the peak says nothing of it
    plain = calibrate([str(synthetic_jsonl)], "cpu-localhost", tmp_path / "plain.toml", holdout_fraction=0.0,
                      bootstrap=0)
    assert max(plain.fit.efficiency) <= 1 and not any("matmul efficiency" in w for w in plain.warnings)


def test_nccl_logs_calibrate_both_levels_of_a_gpu_profile(tmp_path):
    out = tmp_path / "h100.toml"
    # a real 2-node H100 run (NVIDIA/nccl-tests#309; tests/data/nccl/SOURCES.md): NVLS inside the nodes, a tree
    # over the NICs, so both levels' latencies move the predictions; every row spans both levels and cannot tell
    # their hops apart, so it sets the outer (network) latency and the NVLink one keeps its prior (design.py)
    log = DATA.parents[1] / "data" / "nccl" / "h100-hgx-2node-qoofyk_all_reduce_perf.log"
    result = calibrate([str(log)], "h100-sxm", out, bootstrap=10)
    prior, loaded = load_hardware("h100-sxm"), load_hardware(out)
    assert [lv[3] for lv in result.fit.levels] == [False, True]  # the outermost latency; W where a tier bounds a call
    assert loaded.interconnect[0].latency_s == prior.interconnect[0].latency_s
    assert loaded.efficiency.matmul == prior.efficiency.matmul  # nothing measured compute
    assert loaded.chip.peak_flops_per_s == prior.chip.peak_flops_per_s
    assert result.held_out_report is None
    # the prior is already NCCL's own structure (16.4 % MAPE over every row; 13.8 % before the mnfloor round's LL
    # network host leg, 9.2 % before the published NVLink LL hop priced this log's tree/LL floor above it: 32.8 us
    # against 24.7-26.6 measured); the fit must still improve on it (14.1 %; 10.1 % before the host leg, which is a
    # PCIe / host figure the network latency does not scale, and the NVLink hops stay at the prior)
    # Since the ramp round (NCCL's per-size channel and thread count, nccl_channels) the prior prices this log's tree/LL
    # at 2-32 KiB further above what it measures: 17.6 % over every row, fitted 14.97 %, so the bar is 16 % (was 15 %,
    # which the fit now clears by 0.03 points only)
    points = result.measurements.collectives
    prior_mape = sum(abs(terms_time_s(collective_terms(p), prior) / p.time_s - 1) for p in points) / len(points)
    assert result.fit.overall.mape < min(0.16, prior_mape - 0.01)
    nvlink, ib = loaded.interconnect
    fitted_w = result.fit.levels[0][2]  # effective: the nominal link kept and its efficiency fitted, or the
    nominal = prior.interconnect[0].link_bw_bytes_per_s  # link raised (efficiency 1) if above the nominal
    eff = nvlink.bw_efficiency.at(1.0)
    assert nvlink.link_bw_bytes_per_s * eff == pytest.approx(fitted_w, rel=1e-5)
    assert (nvlink.link_bw_bytes_per_s == nominal and eff < 1) or (nvlink.link_bw_bytes_per_s > nominal and eff == 1)
    assert ib.latency_s > nvlink.latency_s
    raw_ib = tomllib.loads(out.read_text())["interconnect"][1]
    assert "link_gbit_per_s_unidir" in raw_ib and raw_ib["latency_us"] != 14.0


def test_estimate_runs_on_a_calibrated_profile(tmp_path, synthetic_jsonl, capsys):
    out = tmp_path / "cal.toml"
    calibrate([str(synthetic_jsonl)], "cpu-localhost", out, bootstrap=0)
    scenario = tmp_path / "tiny.toml"
    model = DATA.parent.parent / "data" / "tiny-moe-decoder.toml"
    scenario.write_text(f'schema_version = 1\nname = "tiny-on-cpu"\nmodel = "{model}"\n'
                        f'hardware = "{out}"\ndevices = 2\n\n[training]\n'
                        'global_batch_sequences = 4\nseq_len = 128\ncompute_dtype = "float32"\n'
                        'param_dtype = "float32"\ndispatch_dtype = "float32"\n\n[layout]\ndp = 2\nep = 2\n')
    assert main(["estimate", str(scenario), "--json"]) == 0
    assert '"step_time_s"' in capsys.readouterr().out
    assert main(["estimate", str(scenario), "--hardware", str(out)]) == 0


def test_provenance_round_trip_and_foreign_text():
    p = Provenance(prior="cpu-localhost", sources=("a.jsonl@sha256:abc",), holdout_fraction=0.25, seed=3,
                   fitted_on=("k1", "k2"), held_out=("k3",), created_utc="2025-01-01T00:00:00+00:00")
    assert parse_provenance(format_provenance(p)) == p
    assert parse_provenance("measured by hand in 2024") is None
    with pytest.raises(SpecError, match="unreadable provenance"):
        parse_provenance(f"{PROVENANCE_HEAD}\nseed: three")


def test_calibrating_a_calibrated_profile(tmp_path, synthetic_jsonl):
    first = tmp_path / "a.toml"
    calibrate([str(synthetic_jsonl)], "cpu-localhost", first, bootstrap=0)
    second = tmp_path / "b.toml"
    result = calibrate([str(synthetic_jsonl)], str(first), second, bootstrap=0, name="cpu-twice")
    assert load_hardware(second).name == "cpu-twice"
    assert result.fit.overall.max_abs_pct_error < 0.05
    m = read_measurements([synthetic_jsonl])
    rec = m.layers[0]
    assert predict_layer(rec, load_hardware(second))["layer"] == pytest.approx(
        predict_layer(rec, load_hardware(first))["layer"], rel=0.02)


def test_unusable_prior_table_is_replaced_not_merged(tmp_path, synthetic_jsonl):
    out = tmp_path / "c.toml"
    calibrate([str(synthetic_jsonl)], "cpu-localhost", out, bootstrap=0)
    table = load_hardware(out).efficiency.matmul
    assert isinstance(table, EfficiencyTable) and len(table.points) >= 3
    prior_sizes = {p[0] for p in load_hardware("cpu-localhost").efficiency.matmul.points}
    assert {p[0] for p in table.points} != prior_sizes
