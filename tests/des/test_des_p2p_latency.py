"""A profile's send/recv latency figure (`interconnect[].p2p_latency_us`) reaches the estimate and the simulator
alike: both price the expert all-to-all and the pipeline sends through the same collective model, so with
uniform expected routing, no contention and no noise they still agree (test_des_agreement's 2 %), and both
move with the figure. Cases: NCCL all-to-all and pipeline sends across H100 nodes, DeepEP across nodes, the
all-to-all on a TPU torus."""

from __future__ import annotations

import dataclasses

import pytest
from des_helpers import tiny_scenario

from moesim.collectives.select import model_for
from moesim.des import SimOptions, simulate
from moesim.des.costs import build_costs
from moesim.estimate import estimate
from moesim.specs.layout import Layout
from moesim.specs.load import load_scenario

TOLERANCE = 0.02
FACTOR = 4.0  # each level's send/recv message latency, as a multiple of its latency_s


def with_p2p_latency(sc, factor=FACTOR):
    hw = sc.hardware
    return dataclasses.replace(sc, hardware=dataclasses.replace(hw, interconnect=tuple(
        dataclasses.replace(lv, p2p_latency_s=lv.latency_s * factor) for lv in hw.interconnect)))


def scenario(case):
    if case == "deepep 16 ranks on 2 nodes":
        return tiny_scenario(16, dropless=True, dispatch_backend="deepep"), Layout(dp=16, ep=16)
    if case == "mixtral-8x7b pp4 ep8 (NCCL)":
        return load_scenario("mixtral-8x7b-h100"), None
    return load_scenario("switch-base-128-tpu-v3"), None


CASES = ["mixtral-8x7b pp4 ep8 (NCCL)", "deepep 16 ranks on 2 nodes", "switch-base-128 tpu-v3 torus"]
POINT_TO_POINT = ("ep_all_to_all_dispatch", "ep_all_to_all_combine")


@pytest.mark.parametrize("case", CASES)
def test_simulator_and_estimate_agree_with_a_send_recv_latency(case):
    """Both engines add the same time for the figure (the mixtral pipeline within 2 %: its simulated 1F1B is
    the finer schedule; -0.8 % here), and where the two agree without it they still agree with it. The tiny
    DeepEP job is outside that regime (+16 % without the figure: one micro-batch, a last gradient bucket
    nothing hides), so for it only the added time is compared."""
    sc, layout = scenario(case)
    options = SimOptions(contention=False, expected_loads=True, trace=False)
    base, result = simulate(sc, layout, options), simulate(with_p2p_latency(sc), layout, options)
    simulated = result.step_times_s[0] - base.step_times_s[0]
    estimated = result.analytical_step_time_s - base.analytical_step_time_s
    assert estimated > 0  # the figure reached both engines
    assert simulated == pytest.approx(estimated, rel=TOLERANCE)
    if not case.startswith("deepep"):
        assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=TOLERANCE)


@pytest.mark.parametrize("case", CASES)
def test_simulators_point_to_point_calls_take_the_figure_as_the_estimate_does(case):
    """Each expert all-to-all and pipeline send the simulator runs is the collective model's call under the send/recv
    latency figure: its T(0) larger than under latency_us; the estimate's time of each such entry grows too (and
    equals the simulator's per call where the model has one MoE layer class)."""
    sc, layout = scenario(case)
    layout = layout or sc.resolve()
    specs, times = {}, {}
    for key, s in (("plain", sc), ("p2p", with_p2p_latency(sc))):
        est = estimate(s, layout)
        costs = build_costs(s, layout, s.training, model_for(s), est.optimizer_time_s)
        moes = [c for c in costs.classes if c.is_moe]
        found = {name: moes[0].comms[name] for name in POINT_TO_POINT}
        sends = [st.send_forward for st in costs.stages if st.send_forward is not None]
        if sends:
            found["pp_send_recv"] = sends[0]
        times[key] = {name: est.communication[name]["time_s"] for name in found}
        if len(moes) == 1:
            for name in POINT_TO_POINT:
                entry = est.communication[name]
                assert found[name].time_s == pytest.approx(entry["time_s"] / entry["calls_per_step"], rel=1e-12)
        specs[key] = found
    assert ("pp_send_recv" in specs["p2p"]) == (layout.pp > 1)
    for name, spec in specs["p2p"].items():
        assert spec.latency_s > specs["plain"][name].latency_s > 0
        assert times["p2p"][name] > times["plain"][name]
