"""One send/recv latency figure, priced the same by every model that prices a point-to-point message: a profile's
`interconnect[].p2p_latency_us` (InterconnectLevel.p2p_latency_s; unset = latency_s) replaces the level's
latency for all-to-all and send/recv on switch tiers, on a torus, in DeepEP's per-message hops and in the
alpha-beta model, and for nothing else (docs/collectives-history.md, "Send/recv latency everywhere")."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from moesim.collectives.alphabeta import AlphaBetaModel
from moesim.collectives.base import Group, p2p_latency_s
from moesim.collectives.dispatch import DispatchModel
from moesim.collectives.select import default_model
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware

FACTOR = 4.0  # each level's send/recv message latency, as a multiple of its latency_s


def with_p2p_latency(hw, factor=FACTOR, levels=None):
    """`hw` with p2p_latency_s = factor × latency_s on `levels` (default: every level)."""
    return dataclasses.replace(hw, interconnect=tuple(
        dataclasses.replace(lv, p2p_latency_s=lv.latency_s * factor) if levels is None or i in levels else lv
        for i, lv in enumerate(hw.interconnect)))


def test_unset_is_the_level_latency_and_set_replaces_it():
    hw = load_hardware("h100-sxm")
    for level in hw.interconnect:
        assert level.p2p_latency_s is None and p2p_latency_s(level) == level.latency_s
    for level in with_p2p_latency(hw).interconnect:
        assert p2p_latency_s(level) == level.latency_s * FACTOR


@pytest.mark.parametrize("profile", ["h100-sxm", "tpu-v4", "h800"])
def test_p2p_latency_equal_to_the_level_latency_prices_bit_for_bit_the_same(profile):
    """Setting p2p_latency_s to latency_s changes no price of any op on any model (switch tiers, torus)."""
    hw = load_hardware(profile)
    same = with_p2p_latency(hw, 1.0)
    plain, explicit = TopologyModel(hw), TopologyModel(same)
    for op in ("all_reduce", "all_gather", "all_to_all", "send_recv", "broadcast"):
        for n in (4, 16, 64):
            for size in (0.0, 4096.0, 2.0**24):
                group = Group(size=n, devices=max(n, 16))
                assert plain.cost(op, size, group) == explicit.cost(op, size, group)


def test_torus_all_to_all_and_send_recv_take_the_p2p_latency():
    """TPU v4, 64 chips in one torus slice: the dimension-ordered all-to-all's diameter × α and the direct
    send/recv's hops × α use the p2p figure; the rings and halving-doubling keep latency_s."""
    hw = load_hardware("tpu-v4")
    plain, p2p = TopologyModel(hw), TopologyModel(with_p2p_latency(hw, levels=(0,)))
    group = Group(size=64, devices=64)
    for op in ("all_to_all", "send_recv"):
        before, after = plain.candidates(op, 1.0e6, group), p2p.candidates(op, 1.0e6, group)
        assert [c.algorithm for c in before] == [c.algorithm for c in after]
        for b, a in zip(before, after):
            assert b.terms.latency_s > 0
            assert a.terms.latency_s == pytest.approx(FACTOR * b.terms.latency_s, rel=1e-12)
            assert a.terms.transfer_s == b.terms.transfer_s
            assert a.base_latency_s == b.base_latency_s  # the per-collective software overhead is not a hop
    for op in ("all_reduce", "all_gather", "broadcast"):
        assert plain.candidates(op, 1.0e6, group) == p2p.candidates(op, 1.0e6, group)


def test_switch_tiers_all_to_all_and_send_recv_take_the_p2p_latency():
    """H100, 16 ranks on 2 nodes: the pairwise all-to-all's Σ (g_i − g_{i−1})·α_i grows by FACTOR on each tier
    (Simple: the per-step factor is 1) where each peer is priced a message (p2p_net_model "summed"); on NCCL's p2p
    channels (the default since session 12, a2ap2p) the 8 network peers are one work batch, so one network message
    grows; the ring all-reduce is unchanged."""
    hw = load_hardware("h100-sxm")
    plain, p2p = TopologyModel(hw, p2p_net_model="summed"), TopologyModel(with_p2p_latency(hw), p2p_net_model="summed")
    group = Group(size=16, devices=16)
    size = 2.0**26  # Simple: per-peer messages above NCCL's p2p LL threshold
    pick = lambda model: next(c for c in model.candidates("all_to_all", size, group)  # noqa: E731
                              if c.algorithm == "pairwise")
    before, after = pick(plain), pick(p2p)
    assert before.protocol == after.protocol == "Simple"
    nvl, net = hw.interconnect[0].latency_s, hw.interconnect[1].latency_s
    assert before.terms.latency_s == pytest.approx(7 * nvl + 8 * net, rel=1e-12)
    assert after.terms.latency_s == pytest.approx(FACTOR * (7 * nvl + 8 * net), rel=1e-12)
    assert plain.cost("all_reduce", size, group) == p2p.cost("all_reduce", size, group)
    before, after = pick(TopologyModel(hw)), pick(TopologyModel(with_p2p_latency(hw)))
    assert after.terms.latency_s - before.terms.latency_s == pytest.approx((FACTOR - 1) * net, rel=1e-9)


@pytest.mark.parametrize("backend, ranks", [("deepep", 64), ("deepep", 8), ("deepep_ll", 64)])
def test_deepep_per_message_hops_take_the_p2p_latency(backend, ranks):
    """DeepEP's T(0): α_net + α_nvl (normal kernels across nodes), α_nvl (one node), 2·α_net (low-latency), each
    the level's send/recv message latency."""
    hw = load_hardware("h800")
    model = DispatchModel(default_model(with_p2p_latency(hw)), backend, 256, 8, 0, (7168.0, 14336.0))
    group = Group(size=ranks, devices=max(ranks, 16))
    nvl, net = (FACTOR * lv.latency_s for lv in hw.interconnect[:2])
    expected = 2 * net if backend == "deepep_ll" else nvl + net if ranks > 8 else nvl
    assert model.cost("all_to_all", 0.0, group).time_s == pytest.approx(expected, rel=1e-12)
    plain = DispatchModel(default_model(hw), backend, 256, 8, 0, (7168.0, 14336.0))
    assert plain.cost("all_to_all", 0.0, group).time_s == pytest.approx(expected / FACTOR, rel=1e-12)


def test_alpha_beta_model_takes_the_p2p_latency_for_point_to_point_only():
    hw = load_hardware("h100-sxm")
    plain, p2p = AlphaBetaModel(hw), AlphaBetaModel(with_p2p_latency(hw))
    group = Group(size=8, devices=8)
    for op in ("all_to_all", "send_recv"):
        grew = p2p.cost(op, 0.0, group).time_s - plain.cost(op, 0.0, group).time_s
        assert grew == pytest.approx((FACTOR - 1) * plain.cost(op, 0.0, group).time_s, rel=1e-12)
        assert grew > 0
    assert plain.cost("all_reduce", 1024.0, group) == p2p.cost("all_reduce", 1024.0, group)


def test_a_profile_file_with_p2p_latency_us_prices_as_the_replaced_spec(tmp_path):
    """The key as a file carries it (`moesim calibrate` writes it so): h100-sxm.toml with p2p_latency_us on both
    levels loads to the same p2p_latency_s and prices the DeepEP and NCCL all-to-alls as the replaced spec."""
    source = (Path(__file__).parents[2] / "hardware_profiles" / "h100-sxm.toml").read_text(encoding="utf-8")
    lines = []
    for line in source.splitlines():
        lines.append(line)
        if line.startswith("latency_us ="):
            us = float(line.split("=")[1].split("#")[0])
            lines.append(f"p2p_latency_us = {us * FACTOR!r}")
    path = tmp_path / "h100-p2p.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded, replaced = load_hardware(path), with_p2p_latency(load_hardware("h100-sxm"))
    assert [lv.p2p_latency_s for lv in loaded.interconnect] == \
        pytest.approx([lv.p2p_latency_s for lv in replaced.interconnect], rel=1e-12)
    group = Group(size=32, devices=32)
    deepep = [DispatchModel(default_model(hw), "deepep", 64, 8).cost("all_to_all", 2.0**20, group).time_s
              for hw in (loaded, replaced, load_hardware("h100-sxm"))]
    assert deepep[0] == pytest.approx(deepep[1], rel=1e-12) and deepep[0] > deepep[2]
    nccl = [TopologyModel(hw).cost("all_to_all", 2.0**20, group).time_s for hw in (loaded, replaced)]
    assert nccl[0] == pytest.approx(nccl[1], rel=1e-12)
