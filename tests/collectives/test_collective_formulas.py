"""Every algorithm against its closed-form alpha-beta cost on simple cases (Thakur et al. 2005; SB; NCCL)."""

from __future__ import annotations

import pytest

from moesim.collectives import formulas
from moesim.collectives.base import Group
from moesim.collectives.hierarchy import TREE_EFFICIENCY
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware

S = 256 * 2**20  # bytes


def pick(model, op, size, group, algorithm, protocol=""):
    found = [c for c in model.candidates(op, size, group) if c.algorithm == algorithm and c.protocol == protocol]
    assert len(found) == 1, [c.label for c in model.candidates(op, size, group)]
    return found[0]


@pytest.fixture(scope="module")
def cpu():
    """gloo over loopback: one switch tier, 8 ranks, no protocol variants: the textbook formulas exactly."""
    hw = load_hardware("cpu-localhost")
    level = hw.interconnect[0]
    return TopologyModel(hw), level.latency_s, level.link_bw_bytes_per_s * level.bw_efficiency.at(1.0)


@pytest.mark.parametrize("n", [2, 4, 8])
@pytest.mark.parametrize("op,algorithm,formula", [
    ("all_reduce", "ring", formulas.ring_all_reduce_s),
    ("all_reduce", "rabenseifner", formulas.rabenseifner_all_reduce_s),
    ("all_gather", "ring", formulas.ring_all_gather_s),
    ("all_gather", "recursive_doubling", formulas.recursive_doubling_all_gather_s),
    ("reduce_scatter", "ring", formulas.ring_all_gather_s),
    ("reduce_scatter", "recursive_halving", formulas.recursive_doubling_all_gather_s),
    ("all_to_all", "pairwise", formulas.pairwise_all_to_all_s),
    ("broadcast", "ring", formulas.pipelined_ring_broadcast_s),
    ("broadcast", "binomial", formulas.binomial_broadcast_s),
    ("broadcast", "scatter_allgather", formulas.scatter_allgather_broadcast_s),
])
def test_flat_switch_matches_thakur(cpu, n, op, algorithm, formula):
    model, alpha, w = cpu
    got = pick(model, op, S, Group(size=n), algorithm)
    assert got.time_s == pytest.approx(formula(n, S, alpha, w), rel=1e-12)


def test_send_recv_is_hockney(cpu):
    model, alpha, w = cpu
    assert model.cost("send_recv", S, Group(size=2)).time_s == pytest.approx(formulas.send_recv_s(S, alpha, w))


def test_model_picks_the_cheapest_candidate(cpu):
    model, _, _ = cpu
    for size in (8, 2**16, S):
        for op in ("all_reduce", "all_gather", "broadcast"):
            cost = model.cost(op, size, Group(size=8))
            assert cost.time_s == min(c.time_s for c in model.candidates(op, size, Group(size=8)))
    # latency-bound: halving-doubling's lg p steps beat the ring's p − 1; bandwidth-bound: a tie the ring wins
    assert model.cost("all_reduce", 8, Group(size=8)).algorithm == "rabenseifner"


@pytest.fixture(scope="module")
def h100():
    hw = load_hardware("h100-sxm")
    return TopologyModel(hw), hw.interconnect[0], hw.interconnect[1]


def test_nccl_ring_in_one_node(h100):
    """NCCL ring/Simple in one NVLink domain = base latency 8.4 us + Thakur ring with the profile's α (read as
    NCCL's Simple ring NVLink hop) and W, its transfer × the pipeline ramp 1 + S_fill/(S + S_fill)."""
    from moesim.collectives.nccl import fill_bytes, fill_factor

    model, nvl, _ = h100
    got = pick(model, "all_reduce", S, Group(size=8), "ring", "Simple")
    w = nvl.link_bw_bytes_per_s * nvl.bw_efficiency.at(S / 8)
    ramp = fill_factor(S, fill_bytes(False))
    assert got.time_s == pytest.approx(8.4e-6 + 14 * nvl.latency_s + 2 * 7 / 8 * S / w * ramp, rel=1e-12)
    ll128 = pick(model, "all_reduce", S, Group(size=8), "ring", "LL128")
    # LL128: x 0.92 (tuning.cc ncclTopoTuneModel), capped at the graph's 8 channels x perChMaxRingLL128Bw 36.7 GB/s
    # (Hopper, v2.29.2-1; session 11 ramp round, per_channel_caps on), which binds on this NVLink ring
    cap = 8 * 36.7e9
    assert ll128.terms.bandwidth_s == pytest.approx(2 * 7 / 8 * S / min(w * 0.92, cap) * ramp)
    uncapped = pick(TopologyModel(model.hardware, per_channel_caps=False), "all_reduce", S, Group(size=8), "ring",
                    "LL128")
    assert uncapped.terms.bandwidth_s == pytest.approx(got.terms.bandwidth_s / 0.92)


def test_nccl_tree_across_nodes_is_a_double_binary_tree(h100):
    """One GPU per node (stride 8): the tree spans N nodes over the NICs: 8.4 us + 2·lg N·α + 2·S/(η·W·c) × ramp
    (Sanders 2009; NCCL 2.30 tree/Simple NET hop = ring/Simple NET hop = 14 us, so α is the profile's; c is
    NCCL's treeCorrectionFactor for the size)."""
    from moesim.collectives.nccl import fill_bytes, fill_factor, tree_correction

    model, _, ib = h100
    nodes = 16
    got = pick(model, "all_reduce", S, Group(size=nodes, stride=8, devices=8 * nodes), "tree", "Simple")
    w = TREE_EFFICIENCY * ib.link_bw_bytes_per_s * ib.bw_efficiency.at(S / nodes)
    ramp = fill_factor(S, fill_bytes(True))
    c = tree_correction("Simple", S)
    expected = 8.4e-6 + 2 * 4 * ib.latency_s + 2 * S / (w * c) * ramp
    assert got.time_s == pytest.approx(expected, rel=1e-12)
    assert formulas.double_binary_tree_all_reduce_s(nodes, S, ib.latency_s, w) == pytest.approx(
        8.4e-6 + 2 * 4 * ib.latency_s + 2 * S / w - 8.4e-6, rel=1e-12)


def test_hierarchical_ring_is_the_scaling_book_tree_formula():
    """SB gpus.md: T_AG = bytes · max_i (D_i − 1)/(D_i · W_link,i): node D=8 at W_GPU, SU D=32 at 8·W_NIC."""
    from moesim.collectives.hierarchy import hierarchical_ring_terms

    terms = hierarchical_ring_terms(1, 1e9, (8, 256), (0.0, 0.0), (450e9, 50e9))
    assert terms.transfer_s == pytest.approx((1e9 * 7 / 8 / 450e9, 1e9 * 31 / 32 / (8 * 50e9)))
    assert 1e9 / terms.bandwidth_s == pytest.approx(413e9, rel=0.001)  # SB: "413GB/s at the leaf level"


def test_two_level_all_to_all_matches_tutel_form(h100):
    """2DH (Tutel App. A): (G−1)α + S(G−1)/G/W_nvl, then (N−1)α + S(N−1)/N/W_nic, plus two copies 2S/W_hbm."""
    model, nvl, ib = h100
    hw = model.hardware
    got = pick(model, "all_to_all", S, Group(size=32, devices=32), "hierarchical", "Simple")
    w_nvl = nvl.link_bw_bytes_per_s * nvl.bw_efficiency.at(S / 32)
    w_nic = ib.link_bw_bytes_per_s * ib.bw_efficiency.at(S / 32)
    copies = 2 * S / (hw.chip.hbm_bw_bytes_per_s * hw.efficiency.memory_bandwidth)
    expected = 8.4e-6 + 7 * nvl.latency_s + S * 7 / 8 / w_nvl + 3 * ib.latency_s + S * 3 / 4 / w_nic + copies
    assert got.time_s == pytest.approx(expected, rel=1e-12)


def test_torus_ring_on_one_closed_axis():
    """v4, 16 chips along a closed x axis: bidirectional ring AG = ⌈15/2⌉·α + (15/16)·S/(2b) (SB sharding.md)."""
    model = TopologyModel(load_hardware("tpu-v4"))
    group = Group(size=16, devices=4096)
    ag = pick(model, "all_gather", S, group, "torus_rings")
    # + 3.5 us: the runtime's fixed cost per collective (tpu-v4.toml collective_overhead_us)
    assert ag.time_s == pytest.approx(3.5e-6 + 8 * 1e-6 + 15 / 16 * S / (2 * 45e9), rel=1e-12)
    ar = pick(model, "all_reduce", S, group, "torus_rings")
    assert ar.time_s == pytest.approx(2 * ag.time_s - 3.5e-6, rel=1e-12)  # one overhead per collective
    # An open axis (a 4x4x4 slice cut to 2 chips wide is closed only at multiples of 4): half the bandwidth.
    open_line = pick(TopologyModel(load_hardware("tpu-v4")), "all_gather", S, Group(size=2, devices=8), "torus_rings")
    assert open_line.terms.bandwidth_s == pytest.approx(1 / 2 * S / 45e9)


def test_torus_multi_axis_all_gather_uses_every_axis():
    """SB sharding.md: over n_axes axes T = V/(W_ICI,bidi · n_axes); 16x16x16 chips, 3 axes."""
    model = TopologyModel(load_hardware("tpu-v4"))
    ag = pick(model, "all_gather", S, Group(size=4096, devices=4096), "torus_rings")
    assert ag.terms.bandwidth_s == pytest.approx(4095 / 4096 * S / (3 * 2 * 45e9), rel=1e-12)


def test_tree_correction_is_nccls_table_by_size():
    """treeCorrectionFactor[p][log2(bytes/64)] (NVIDIA/nccl ncclTopoGetAlgoTime): 64 B -> index 0, 1 MiB -> 14."""
    from moesim.collectives.nccl import tree_correction

    assert tree_correction("LL", 64) == 1.0 and tree_correction("Simple", 64) == 0.9
    assert tree_correction("LL128", 2**20) == 0.6 and tree_correction("LL", 2**20) == 0.5
    assert tree_correction("LL128", 2**20 - 1) == 0.6  # log2i rounds down: 1 MiB - 1 B is index 13
    assert tree_correction("Simple", 2**29 - 1) == 0.9  # index 22, the tree's last (256 MiB - 512 MiB)
    assert tree_correction("Simple", 2**30) == 1.0 and tree_correction("LL", 8) == 1.0  # outside the table


def test_tree_correction_stops_at_logsize_23_for_the_tree():
    """NCCL corrects the tree all-reduce only for 0 <= logSize < 23, logSize = log2i(nBytes >> 6): none from 512 MiB
    (NVIDIA/nccl src/graph/tuning.cc ncclTopoGetAlgoTime, v2.18.1-1 .. v2.30.7-1); index 23 (Simple 0.9) is read
    for NVLSTree only (logSize < 24, SM100 on x86 hosts, from v2.29.2-1)."""
    from moesim.collectives.nccl import tree_correction

    for proto in ("LL", "LL128", "Simple"):
        assert tree_correction(proto, 2**29) == 1.0 and tree_correction(proto, 2**30 - 1) == 1.0
    assert tree_correction("Simple", 2**29, "nvlstree") == 0.9  # index 23 of the Simple row
    assert tree_correction("Simple", 2**30, "nvlstree") == 1.0


def test_tree_all_reduce_of_512_mib_to_1_gib_is_priced_uncorrected(h100):
    """The tree/Simple candidate at 512 MiB and 1 GiB - 64 B moves its bytes at the uncorrected bandwidth: its transfer
    is the one at bound 24 (index 23, 0.9) x 0.9, and at 256 MiB (index 22, 0.9) both bounds agree."""
    from moesim.collectives import nccl_tuning

    model = h100[0]
    group = Group(size=8, devices=8)
    bound = nccl_tuning._file()["tree_correction_bound"]

    def transfer(size):
        return pick(TopologyModel(model.hardware), "all_reduce", size, group, "tree", "Simple").terms.bandwidth_s

    sizes = (2**28, 2**29, 2**30 - 64)
    now = [transfer(s) for s in sizes]
    bound["tree"] = 24
    try:
        before = [transfer(s) for s in sizes]
    finally:
        bound["tree"] = 23
    assert now[0] == before[0]
    assert now[1] == pytest.approx(before[1] * 0.9, rel=1e-12) and now[2] == pytest.approx(before[2] * 0.9, rel=1e-12)


def test_ring_plateau_multiplies_multi_node_simple_ring_latency(h100):
    """NCCL: multi-node Simple ring all-reduce latency x 1.4 once bytes/(channels x ranks) >= 64 (Ampere+)."""
    model, _, _ = h100
    group = Group(size=16, devices=16)
    small = pick(model, "all_reduce", 16 * 16 * 32, group, "ring", "Simple")   # 32 B per channel-rank
    big = pick(model, "all_reduce", 16 * 16 * 64, group, "ring", "Simple")     # 64 B per channel-rank
    assert small.base_latency_s == pytest.approx(8.4e-6)
    assert big.base_latency_s == pytest.approx(8.4e-6 * 1.4)
    assert big.terms.latency_s == pytest.approx(small.terms.latency_s * 1.4)
    one_node = pick(model, "all_reduce", 2**20, Group(size=8), "ring", "Simple")
    assert one_node.base_latency_s == pytest.approx(8.4e-6)


def test_collnet_runs_only_with_collnet_enable_and_a_sharp_fabric(h100):
    """NCCL CollNet (IB SHARP) needs NCCL_COLLNET_ENABLE=1 and switches that reduce: moesim's collnet=True and
    the fabric's `sharp = true`. The default model (NCCL's default: off) never picks it."""
    import dataclasses

    from moesim.collectives.nccl import parse_nccl_algo
    from moesim.errors import SpecError

    model, _, ib = h100
    group = Group(size=64, devices=64)
    assert ib.sharp
    assert not any(c.algorithm.startswith("collnet") for c in model.candidates("all_reduce", S, group))
    on = TopologyModel(model.hardware, collnet=True)
    labels = {c.label for c in on.candidates("all_reduce", S, group)}
    assert {"collnetdirect/Simple", "collnetchain/Simple"} <= labels
    assert not any(c.algorithm.startswith("collnet") for c in on.candidates("all_gather", S, group))
    assert not any(c.algorithm.startswith("collnet") for c in on.candidates("all_reduce", S, Group(size=8)))
    levels = list(model.hardware.interconnect)
    levels[1] = dataclasses.replace(levels[1], sharp=False)
    no_sharp = TopologyModel(dataclasses.replace(model.hardware, interconnect=tuple(levels)), nccl_algo="collnet",
                             collnet=True)
    with pytest.raises(SpecError, match="leaves no algorithm"):
        no_sharp.cost("all_reduce", S, group)
    assert parse_nccl_algo("collnet") == {"collnetdirect", "collnetchain"}
    assert "collnetchain" not in parse_nccl_algo("^collnet")
    with pytest.raises(SpecError, match="unknown NCCL algorithm 'collnetx'"):
        parse_nccl_algo("collnetx")


def test_collnet_chain_and_direct_are_nccls_formulas(h100):
    """CollNetChain: 2(ppn-1)·2.8 us + 30 us (NVLink / NET hops, scaled by the profile's latency_us) and
    algbw = 0.5 x the NVLink figure; CollNetDirect: 2·(3.7 + 0.4·(ppn-1)) + 31 us and algbw 0.5 x 0.85 x it
    on Hopper (NCCL 2.30.7 tuning.cc); the network carries S/(0.5·ppn·W_net); no term grows with the nodes."""
    from moesim.collectives.nccl import fill_bytes, fill_factor

    model, nvl, ib = h100
    on = TopologyModel(model.hardware, collnet=True)
    w0 = nvl.link_bw_bytes_per_s * nvl.bw_efficiency.at(S / 64)
    w1 = ib.link_bw_bytes_per_s * ib.bw_efficiency.at(S / 64)
    ramp = fill_factor(S, fill_bytes(True))
    nvl_scale, net_scale = nvl.latency_s / 3.4e-6, ib.latency_s / 14e-6
    chain = pick(on, "all_reduce", S, Group(size=64, devices=64), "collnetchain", "Simple")
    assert chain.latency_s == pytest.approx((2 * 7 * 2.8 * nvl_scale + 30 * net_scale) * 1e-6)
    assert chain.terms.bandwidth_s == pytest.approx(max(S / (0.5 * w0), S / (0.5 * 8 * w1)) * ramp)
    direct = pick(on, "all_reduce", S, Group(size=64, devices=64), "collnetdirect", "Simple")
    assert direct.latency_s == pytest.approx((2 * (3.7 * nvl_scale + 0.4 * 7) + 31 * net_scale) * 1e-6)
    assert direct.terms.bandwidth_s == pytest.approx(S / (0.5 * 0.85 * w0) * ramp)
    bigger = pick(on, "all_reduce", S, Group(size=256, devices=256), "collnetchain", "Simple")
    assert bigger.time_s == pytest.approx(chain.time_s, rel=0.02)  # SHARP: flat in the node count


def test_pat_is_nccls_one_gpu_per_node_all_gather(h100):
    """PAT (NCCL 2.23+): all-gather / reduce-scatter with one GPU per node only: 8 us + lg N·h_net/3.5 +
    2.8 us·n, the network at 0.75 of the port with no bus->alg conversion (NCCL 2.30.7 tuning.cc)."""
    from moesim.collectives.nccl import fill_bytes, fill_factor

    model, _, ib = h100
    nodes = 16
    group = Group(size=nodes, stride=8, devices=8 * nodes)
    got = pick(model, "all_gather", S, group, "pat", "Simple")
    w = ib.link_bw_bytes_per_s * ib.bw_efficiency.at(S / nodes)
    expected = 8e-6 + 4 * ib.latency_s / 3.5 + 2.8e-6 * nodes + S / (0.75 * w) * fill_factor(S, fill_bytes(True))
    assert got.time_s == pytest.approx(expected, rel=1e-12)
    assert not any(c.algorithm == "pat" for c in model.candidates("all_reduce", S, group))
    assert not any(c.algorithm == "pat" for c in model.candidates("all_gather", S, Group(size=16, devices=16)))
    forced = TopologyModel(model.hardware, nccl_algo="pat")
    assert forced.cost("reduce_scatter", S, group).algorithm == "pat/Simple"
    # PAT's latency grows by 2.8 us a rank, the Simple ring's by a 14 us network hop a rank
    wide = Group(size=128, stride=8, devices=1024)
    ring = pick(model, "all_gather", 2**16, wide, "ring", "Simple")
    assert pick(model, "all_gather", 2**16, wide, "pat", "Simple").latency_s < ring.latency_s / 3
