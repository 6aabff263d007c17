"""GPUDirect-RDMA-less legs on every NCCL algorithm (session 8, gdrless; nccl_facts.no_gdr_hop_legs_s,
no_gdr_tuner_latency_s, no_gdr_step_legs_s): without GDR (a GPU-NIC path beyond PXB, here PHB) each network hop of PAT,
NVLSTree, CollNet and send/recv / all-to-all / broadcast gains host-memory legs over PCI, priced at NCCL's
hwLatencies[PCI] (NVIDIA/nccl v2.28.9-1 src/graph/tuning.cc), the legs counted from src/transport/net.cc and
coll_net.cc send/recvProxyConnect (cited in nccl_tuning.toml [gpu_nic_path.no_gdr_hops]). Wire only on the tuner's ops:
NCCL's own model time (time + tuner offset) and its pick do not move. Unset and PXB price alike."""

from __future__ import annotations

import pytest

from moesim.collectives import hierarchy, nccl_facts, nccl_plan
from moesim.collectives.base import Group
from moesim.collectives.nccl import tuning
from moesim.collectives.nccl_facts import no_gdr_hop_legs_s, no_gdr_tuner_latency_s
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware
from moesim.specs.system_facts import with_system_facts

TINY = 64
SIZES = (TINY, 2**16, 2**20, 2**24, 2**28)
TUNED = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")  # NCCL's tuner picks (broadcast: its protocol)


def model(name="h100-sxm", path="", **kw):
    hw = load_hardware(name)
    return TopologyModel(with_system_facts(hw, {"gpu_nic_path": path}) if path else hw, **kw)


def row(m, op, size, group, algorithm, protocol="Simple"):
    found = [c for c in m.candidates(op, size, group) if (c.algorithm, c.protocol) == (algorithm, protocol)]
    assert len(found) == 1, (algorithm, protocol, [c.label for c in m.candidates(op, size, group)])
    return found[0]


def added_us(base, staged, op, group, algorithm, protocol="Simple", size=TINY):
    """Wire latency `staged` adds to one candidate (us), after checking NCCL's own model time (time + tuner offset) did
    not move where NCCL's tuner picks (all-reduce, all-gather, reduce-scatter, broadcast; send/recv-based ops have no
    offset)."""
    a, b = row(base, op, size, group, algorithm, protocol), row(staged, op, size, group, algorithm, protocol)
    assert b.terms.transfer_s == a.terms.transfer_s and b.base_latency_s == a.base_latency_s
    if op in TUNED:
        assert b.time_s + b.tuner_offset_s == pytest.approx(a.time_s + a.tuner_offset_s, abs=1e-15)
    else:
        assert a.tuner_offset_s == b.tuner_offset_s == 0.0
    return (b.terms.latency_s - a.terms.latency_s) * 1e6


def test_pci_rows_and_legs_are_nccls():
    """hwLatencies[PCI] of CollNetDirect / CollNetChain / PAT (Simple 3.7 / 2.8 / 4.0 us, tuning.cc @v2.28.9-1); one hop
    gains a send and a receive leg on Simple (net.cc / coll_net.cc: both buffers in host memory without GDR)."""
    t = tuning()
    pci = t["gpu_nic_path"]["no_gdr_pci_hop_us"]
    assert (pci["collnetdirect"], pci["collnetchain"], pci["pat"]) == \
        ([0.0, 0.0, 3.7], [0.0, 0.0, 2.8], [0.0, 0.0, 4.0])
    assert no_gdr_hop_legs_s(t, "PXB") is None and no_gdr_hop_legs_s(t, "") is None
    legs = no_gdr_hop_legs_s(t, "PHB")
    assert {a: pytest.approx(tuple(x * 1e6 for x in v)) for a, v in legs.items()} == {
        "pat": (0.0, 0.0, 8.0), "nvlstree": (1.0, 3.8, 8.0), "collnetdirect": (0.0, 0.0, 7.4),
        "collnetchain": (0.0, 0.0, 5.6), "nvls": (0.0, 0.0, 7.4), "p2p": (0.0, 0.0, 11.4)}
    assert no_gdr_tuner_latency_s(t, "PXN", 4, 8) is None  # GDR through the intermediate GPU


@pytest.mark.parametrize("nodes", [4, 16])
def test_pat_gains_lg_n_over_3_5_hops_of_legs(nodes):
    """PAT, one GPU per node: its latency counts lg N network hops / 3.5 (nccl.py _pat), each +2 x 4.0 us."""
    group = Group(size=nodes, stride=8, devices=8 * nodes)
    base, staged = model(), model(path="PHB")
    lg = {4: 2, 16: 4}[nodes]
    for op in ("all_gather", "reduce_scatter"):
        assert added_us(base, staged, op, group, "pat") == pytest.approx(lg / 3.5 * 8.0, abs=1e-9)


@pytest.mark.parametrize("nodes", [2, 4])
def test_nvlstree_gains_2_lg_n_hops_of_the_trees_legs(nodes):
    """NVLSTree across nodes: 2 lg N network hops (nccl.py _nvls_fixed), each +2 x 4.0 us (the tree's PCI row: NCCL's
    NVLSTree row is 0; its network part is a tree on the net transport's dedicated buffers, nvls.cc)."""
    group = Group(size=8 * nodes, devices=8 * nodes)
    base, staged = model("b200", nccl_algo="nvlstree"), model("b200", path="PHB", nccl_algo="nvlstree")
    assert added_us(base, staged, "all_reduce", group, "nvlstree") == pytest.approx(2 * (nodes // 2) * 8.0, abs=1e-9)


def test_collnet_gains_one_hop_of_legs():
    """CollNet and NVLS over it (one network hop each, nccl.py _collnet): + 2 x 3.7 (Direct, NVLS) / 2 x 2.8 (Chain) us;
    one GPU per node: NCCL prices the hop as the tree's, and so the legs (2 x 4.0 us)."""
    base, staged = model(collnet=True), model(path="PHB", collnet=True)
    group = Group(size=64, devices=64)
    for algorithm, us in (("collnetdirect", 7.4), ("collnetchain", 5.6), ("nvls", 7.4)):
        assert added_us(base, staged, "all_reduce", group, algorithm) == pytest.approx(us, abs=1e-9)
    ppn1 = Group(size=8, stride=8, devices=64)
    for algorithm in ("collnetdirect", "collnetchain"):
        assert added_us(base, staged, "all_reduce", ppn1, algorithm) == pytest.approx(8.0, abs=1e-9)


def test_ring_and_tree_legs_are_unchanged():
    """The ring / tree legs (no_gdr_legs_s, session 7) stay: ring all-gather 2 x 8, 2 network steps x 2 x 5.7 us."""
    base, staged = model(nccl_algo="ring"), model(path="PHB", nccl_algo="ring")
    assert added_us(base, staged, "all_gather", Group(size=16, devices=16), "ring") == pytest.approx(22.8, abs=1e-9)


def _net_steps(counts, latency):
    """Network steps of a latency formula `latency(alpha)`: its value with alpha 0 on NVLink and 1 on the network."""
    return latency((0.0,) + (1.0,) * (len(counts) - 1))


def test_send_recv_and_all_to_all_gain_the_p2p_legs():
    """Send/recv and all-to-all between nodes (NCCL's p2p connections: shared Simple buffers, in host memory without
    GDR): + 2 x 5.7 us (the ring's PCI row) on each network message, at every size (Simple: no LL buffer by
    default). Pairwise 2 x 8 priced per peer (p2p_net_model "summed"): 8 network messages; on NCCL's p2p channels (the
    default since session 12, a2ap2p) the 8 network peers are one work batch: 1 message; 2DH: 1; a send/recv: 1. One
    node: nothing."""
    base, staged = model(), model(path="PHB")
    summed = (model(p2p_net_model="summed"), model(path="PHB", p2p_net_model="summed"))
    pair = Group(size=2, stride=8, devices=16)
    for size in (TINY, 2**20):
        assert added_us(base, staged, "send_recv", pair, "direct", size=size) == pytest.approx(11.4, abs=1e-9)
    group, counts = Group(size=16, devices=16), (8, 16)
    pairwise = _net_steps(counts, lambda a: hierarchy.pairwise_all_to_all_terms(0, 16, counts, a, (1, 1),
                                                                                 False).latency_s)
    two_level = _net_steps(counts, lambda a: hierarchy.two_level_all_to_all_terms(0, 16, counts, a, (1, 1),
                                                                                  1).latency_s)
    assert (pairwise, two_level) == (8, 1)
    for algorithm, steps in (("pairwise", pairwise), ("hierarchical", two_level)):
        assert added_us(*summed, "all_to_all", group, algorithm, size=2**24) == pytest.approx(steps * 11.4, abs=1e-9)
    for algorithm in ("pairwise", "hierarchical"):
        assert added_us(base, staged, "all_to_all", group, algorithm, size=2**24) == pytest.approx(11.4, abs=1e-9)
    assert staged.candidates("all_to_all", 2**24, Group(size=8)) == base.candidates("all_to_all", 2**24, Group(size=8))


def test_broadcast_gains_the_rings_legs():
    """NCCL's broadcast is a ring on the ring's dedicated buffers: its one network step (2 x 8) gains the ring's legs,
    LL the receive leg 1.0 us, LL128 2 x 2.5, Simple 2 x 5.7; wire only (NCCL's tuner picks its protocol)."""
    base, staged = model(), model(path="PHB")
    group = Group(size=16, devices=16)
    for proto, us in (("LL", 1.0), ("LL128", 5.0), ("Simple", 11.4)):
        assert added_us(base, staged, "broadcast", group, "ring", proto) == pytest.approx(us, abs=1e-9)


CASES = [("h100-sxm", {}, Group(size=16, devices=16)), ("h100-sxm", {"collnet": True}, Group(size=64, devices=64)),
         ("h100-sxm", {}, Group(size=16, stride=8, devices=128)), ("b200", {}, Group(size=32, devices=32))]


@pytest.mark.parametrize("name, kw, group", CASES)
def test_unset_and_pxb_price_alike_and_nccls_pick_does_not_move(name, kw, group, monkeypatch):
    """Unset = PXB = PIX (GDR on): every candidate of every op identical. PHB: NCCL's pick of the tuner's ops is the
    one it makes without this session's legs (PHB itself moves it: no LL128 past PXN), at every size."""
    base, pxb, pix, phb = (model(name, p, **kw) for p in ("", "PXB", "PIX", "PHB"))
    for op in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv"):
        for size in SIZES:
            expected = base.candidates(op, size, group)
            assert pxb.candidates(op, size, group) == expected and pix.candidates(op, size, group) == expected
    picks = {(op, size): phb.cost(op, size, group).algorithm for op in TUNED for size in SIZES}
    monkeypatch.setattr(nccl_plan, "no_gdr_tuner_latency_s", lambda *args: None)
    monkeypatch.setattr(nccl_facts, "no_gdr_step_legs_s", lambda *args: None)
    legless = model(name, "PHB", **kw)
    assert {(op, size): legless.cost(op, size, group).algorithm for op in TUNED for size in SIZES} == picks
    assert any(legless.candidates(op, size, group) != phb.candidates(op, size, group) for op in TUNED
               for size in SIZES)  # each case has a candidate with this session's legs (NVLSTree, CollNet or PAT)


def test_vultr_what_if_block_is_current(load_script):
    """scripts/gdrless_check.py (docs/collectives.md, "GDR-less legs on every algorithm"): with PHB on the b200-vultr
    2-node logs (a what-if, nothing set in logs.toml), the held all_reduce's NVLSTree rows gain 16 us and its >= 1 MiB
    MAPE falls (11.3 -> 5.4 %); the all_gather / reduce_scatter (rings) do not move; the shipped column is the path
    unset. The docs block is the script's output."""
    script = load_script("scripts/gdrless_check.py")
    found = script.errors()
    before, after = (found["b200-vultr-2node_all_reduce_perf.log"][1][v] for v in script.VARIANTS[1:])
    assert after.mape_large < before.mape_large - 0.05
    moved = [(b, a) for b, a in zip(before.sizes, after.sizes) if a.predicted_s != b.predicted_s]
    assert {a.algorithm for _, a in moved} == {"nvlstree/Simple"}
    assert all(a.predicted_s - b.predicted_s == pytest.approx(16e-6, abs=1e-9) for b, a in moved)
    for op in ("all_gather", "reduce_scatter"):
        errs = found[f"b200-vultr-2node_{op}_perf.log"][1]
        assert errs[script.VARIANTS[1]].sizes == errs[script.VARIANTS[2]].sizes
    doc = script.DOC.read_text(encoding="utf-8")
    block = doc.split(script.BEGIN)[1].split(script.END)[0].strip()
    assert block == script.render(found).strip(), "run: python scripts/gdrless_check.py --write"
