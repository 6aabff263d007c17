"""The fitter recovers known parameters from data the model itself generated."""

import dataclasses
import json

import numpy as np
import pytest

from moesim.calibrate.design import choose_knots
from moesim.calibrate.fit import fit_profile, observations_for
from moesim.calibrate.predict import predict_layer
from moesim.calibrate.records import read_measurements, split_holdout
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

from calibrate_synth import TRUE_EFFICIENCY, TRUE_KNOTS, TRUE_LAYER_OVERHEAD_S, synthetic_records, write_jsonl


def _param(fit, name):
    return next(p for p in fit.parameters if p.name == name)


def test_recovers_exact_parameters_with_true_knots(synthetic_jsonl):
    m = read_measurements([synthetic_jsonl])
    prior = load_hardware("cpu-localhost")
    fit = fit_profile(m, prior, fit_keys={r.key for r in m.layers}, knots_flops=TRUE_KNOTS, bootstrap=0,
                      loss="linear")
    name, alpha, bw, alpha_fitted, bw_fitted = fit.levels[0]
    assert alpha_fitted and bw_fitted
    assert alpha == pytest.approx(55e-6, rel=1e-4)
    assert bw == pytest.approx(3.1e9, rel=1e-4)
    assert fit.efficiency == pytest.approx(TRUE_EFFICIENCY, rel=0.01)
    assert fit.ref_dtype == "float32"
    assert fit.peak_scales["bfloat16"] == pytest.approx(2.5, rel=0.01)
    true_mem = 15e9 * 0.45  # cpu-localhost HBM share 15 GB/s x the true efficiency
    assert fit.memory_bw_bytes_per_s == pytest.approx(true_mem, rel=1e-3)
    assert fit.layer_overhead_s == pytest.approx(TRUE_LAYER_OVERHEAD_S, rel=1e-3)
    assert fit.overall.max_abs_pct_error < 0.005
    assert fit.overall.r2_log == pytest.approx(1.0, abs=1e-4)


def test_automatic_knots_predict_held_out_configs_within_a_few_percent(tmp_path, synthetic_jsonl, true_hw):
    from moesim.calibrate import calibrate

    result = calibrate([str(synthetic_jsonl)], "cpu-localhost", tmp_path / "auto.toml", holdout_fraction=0.3, seed=3,
                       bootstrap=0)
    fit = result.fit
    assert len(fit.knots_flops) >= 3
    for size, eta in zip(fit.knots_flops, fit.efficiency):  # the fitted table meets the true one at its knots
        assert eta == pytest.approx(true_hw.efficiency.matmul.at(size), rel=0.02)
    # knots placed at the data's kernel sizes, not the true table's: the interpolation differs by a few %
    held = result.held_out_report
    assert len(held.comparisons) == 4
    for phase in ("expert_compute", "backward", "dispatch_a2a", "layer"):
        assert held.phases[phase].mape < 0.025 and held.phases[phase].max_abs_pct_error < 0.05, phase


def test_bootstrap_intervals_bracket_the_truth_on_noisy_data(tmp_path, true_hw):
    rng = np.random.default_rng(11)
    recs = synthetic_records(true_hw)
    for rec in recs:  # 3 % lognormal noise on every median
        if rec["kind"] == "switch_layer":
            for st in rec["phases"].values():
                st["median_s"] *= float(np.exp(rng.normal(0, 0.03)))
        else:
            for p in rec["points"]:
                p["median_s"] *= float(np.exp(rng.normal(0, 0.03)))
    m = read_measurements([write_jsonl(tmp_path / "noisy.jsonl", recs)])
    fit = fit_profile(m, load_hardware("cpu-localhost"), fit_keys={r.key for r in m.layers}, knots_flops=TRUE_KNOTS,
                      bootstrap=60, seed=5)
    truth = {"loopback.latency": 55e-6, "loopback.bandwidth": 3.1e9, "peak_scale.bfloat16": 2.5,
             "memory_bw": 15e9 * 0.45, "layer_overhead": TRUE_LAYER_OVERHEAD_S,
             **{f"efficiency@{k:.3g}": e for k, e in zip(TRUE_KNOTS[1:], TRUE_EFFICIENCY[1:])}}
    for name, true in truth.items():
        p = _param(fit, name)
        # within 3 standard errors of the covariance estimate, and the bootstrap agrees on the scale
        assert abs(np.log(p.value / true)) <= 3 * p.rel_std, name
        width = np.log(p.interval[1] / p.interval[0])  # 90 % interval: about 3.3 standard errors wide
        assert 0.5 * p.rel_std < width < 10 * p.rel_std, name
    # the smallest knot lies below every measured kernel: only the bootstrap shows how loose it is
    lowest = _param(fit, "efficiency@1e+06")
    assert lowest.interval[0] < TRUE_EFFICIENCY[0] < lowest.interval[1]
    assert np.log(lowest.interval[1] / lowest.interval[0]) > 10 * lowest.rel_std


def test_bootstrap_is_seeded(synthetic_jsonl):
    m = read_measurements([synthetic_jsonl])
    args = dict(fit_keys={r.key for r in m.layers}, bootstrap=8, seed=4)
    first = fit_profile(m, load_hardware("cpu-localhost"), **args)
    again = fit_profile(m, load_hardware("cpu-localhost"), **args)
    assert [p.interval for p in first.parameters] == [p.interval for p in again.parameters]


def test_efficiency_table_is_monotone_even_when_data_are_not(tmp_path, true_hw):
    recs = synthetic_records(true_hw)
    for rec in recs:  # the largest kernels run 30 % slower than the smaller ones: not monotone
        if rec["kind"] == "switch_layer" and rec["config"]["d_model"] >= 512:
            for name in ("expert_compute", "backward"):
                rec["phases"][name]["median_s"] *= 1.3
    m = read_measurements([write_jsonl(tmp_path / "dip.jsonl", recs)])
    fit = fit_profile(m, load_hardware("cpu-localhost"), fit_keys={r.key for r in m.layers}, bootstrap=0)
    assert all(b >= a - 1e-12 for a, b in zip(fit.efficiency, fit.efficiency[1:]))


def test_fitted_phases_exclude_router_and_group_of_one(synthetic_jsonl):
    m = read_measurements([synthetic_jsonl])
    obs = observations_for(m, {r.key for r in m.layers}, load_hardware("cpu-localhost"))
    labels = {o.label for o in obs}
    assert not {"router", "router_matmul", "router_gating"} & labels
    assert {"expert_compute", "backward", "dispatch_a2a", "collective:all_to_all", "layer"} <= labels
    ep1 = next(r for r in m.layers if r.ep_size == 1)
    assert not [o for o in obs if o.unit == ep1.key and o.label in ("dispatch_a2a", "combine_a2a")]
    with_router = observations_for(m, {r.key for r in m.layers}, load_hardware("cpu-localhost"),
                                   fit_router_matmul=True)
    assert {o.label for o in with_router} - labels == {"router_matmul"}


def test_layer_total_observation_is_the_phases_plus_two_passes_of_overhead(synthetic_jsonl):
    """layer_unsynced = one forward and one backward pass of the layer: every LAYER_PHASES term, and the
    per-layer overhead twice (validate/bench.py; moesim.estimate.terms charges it per pass)."""
    from moesim.calibrate.predict import OverheadTerm, layer_terms
    from moesim.calibrate.records import LAYER_PHASES

    m = read_measurements([synthetic_jsonl])
    rec = m.layers[0]
    (total,) = [o for o in observations_for(m, {rec.key}, load_hardware("cpu-localhost")) if o.label == "layer"]
    phases = layer_terms(rec)
    assert total.terms == tuple(t for p in LAYER_PHASES for t in phases[p]) + (OverheadTerm(2),)
    assert total.measured_s == rec.measured_s["layer"] and total.unit == rec.key


def test_router_matmul_is_fitted_on_request(synthetic_jsonl):
    m = read_measurements([synthetic_jsonl])
    fit = fit_profile(m, load_hardware("cpu-localhost"), fit_keys={r.key for r in m.layers}, knots_flops=TRUE_KNOTS,
                      bootstrap=0, loss="linear", fit_router_matmul=True)
    assert "router_matmul" in fit.blocks and fit.blocks["router_matmul"].max_abs_pct_error < 0.005
    assert fit.efficiency == pytest.approx(TRUE_EFFICIENCY, rel=0.01)
    assert fit.layer_overhead_s == pytest.approx(TRUE_LAYER_OVERHEAD_S, rel=1e-3)


def test_no_layer_overhead_in_the_data_fits_to_about_zero(tmp_path, true_hw):
    """The overhead is bounded below by MIN_OVERHEAD_S (1 ns), not pushed negative."""
    from moesim.calibrate.design import MIN_OVERHEAD_S

    none = dataclasses.replace(true_hw, efficiency=dataclasses.replace(true_hw.efficiency, layer_overhead_s=0.0))
    m = read_measurements([write_jsonl(tmp_path / "none.jsonl", synthetic_records(none))])
    fit = fit_profile(m, load_hardware("cpu-localhost"), fit_keys={r.key for r in m.layers}, knots_flops=TRUE_KNOTS,
                      bootstrap=0, loss="linear")
    assert MIN_OVERHEAD_S <= fit.layer_overhead_s < 1e-7
    assert fit.overall.max_abs_pct_error < 0.005


def test_knots_are_half_a_decade_apart(synthetic_jsonl):
    m = read_measurements([synthetic_jsonl])
    knots = choose_knots(observations_for(m, {r.key for r in m.layers}, load_hardware("cpu-localhost")))
    assert np.all(np.diff(np.log10(knots)) >= 0.5 - 1e-9)


def test_too_few_observations_is_an_error(tmp_path, true_hw):
    recs = [r for r in synthetic_records(true_hw) if r["kind"] == "switch_layer"][:1]
    m = read_measurements([write_jsonl(tmp_path / "one.jsonl", recs)])
    with pytest.raises(SpecError, match="cannot fit"):
        fit_profile(m, load_hardware("cpu-localhost"), fit_keys={m.layers[0].key}, knots_flops=TRUE_KNOTS * 3,
                    bootstrap=0)


def test_collective_model_is_called_not_copied(synthetic_jsonl, monkeypatch):
    """A different collective model (here: twice the alpha-beta time) is fitted through, not around."""
    import moesim.calibrate.design as design_mod
    import moesim.calibrate.predict as predict_mod
    from moesim.collectives.alphabeta import AlphaBetaModel

    class Doubled(AlphaBetaModel):
        def cost(self, op, size_bytes, group):
            c = super().cost(op, size_bytes, group)
            return dataclasses.replace(c, time_s=2 * c.time_s)

    m = read_measurements([synthetic_jsonl])
    monkeypatch.setattr(design_mod, "default_model", Doubled)
    monkeypatch.setattr(predict_mod, "default_model", Doubled)
    fit = fit_profile(m, load_hardware("cpu-localhost"), fit_keys={r.key for r in m.layers}, knots_flops=TRUE_KNOTS,
                      bootstrap=0, loss="linear")
    _, alpha, bw, _, _ = fit.levels[0]
    assert alpha == pytest.approx(55e-6 / 2, rel=1e-3) and bw == pytest.approx(3.1e9 * 2, rel=1e-3)


def test_predictions_scale_with_the_profile(true_hw):
    from calibrate_synth import layer_record_dict
    from moesim.calibrate.records import layer_record

    rec = layer_record(layer_record_dict(), "x:1")
    slow = dataclasses.replace(true_hw, chip=dataclasses.replace(
        true_hw.chip, peak_flops_per_s={k: v / 2 for k, v in true_hw.chip.peak_flops_per_s.items()}))
    a, b = predict_layer(rec, true_hw), predict_layer(rec, slow)
    assert b["expert_compute"] == pytest.approx(2 * a["expert_compute"])
    assert b["dispatch_a2a"] == pytest.approx(a["dispatch_a2a"])
    assert json.dumps(a)  # plain floats


def test_layer_prediction_holds_two_passes_of_overhead_and_router_is_its_two_parts(true_hw):
    from calibrate_synth import layer_record_dict
    from moesim.calibrate.records import LAYER_PHASES, layer_record

    rec = layer_record(layer_record_dict(tokens=512, d_model=64, experts_per_rank=4, top_k=2), "x:1")
    p = predict_layer(rec, true_hw)
    assert p["router"] == pytest.approx(p["router_matmul"] + p["router_gating"], rel=1e-12)
    assert p["layer"] == pytest.approx(sum(p[q] for q in LAYER_PHASES) + 2 * true_hw.efficiency.layer_overhead_s,
                                       rel=1e-12)
    # router_gating: 2·T·E·(4 + k·8) bytes (float32 probabilities, int64 one-hot of k·T assignments) at W_mem
    w_mem = true_hw.chip.hbm_bw_bytes_per_s * true_hw.efficiency.memory_bandwidth
    assert p["router_gating"] == pytest.approx(2 * 512 * 8 * (4 + 2 * 8) / w_mem, rel=1e-12)
    # router_matmul: 2·T·d·E FLOP at the float32 peak and the table's efficiency at that kernel
    flops = 2 * 512 * 64 * 8
    assert p["router_matmul"] == pytest.approx(
        flops / (true_hw.chip.peak_for("float32") * true_hw.efficiency.matmul.at(flops)), rel=1e-12)
