"""The system facts NCCL reads beyond GPUs and links (moesim/collectives/nccl_facts.py, NVIDIA/nccl v2.28.9-1): the
hosts' CPU (network post overhead, the LL cap's multi-node row) and the GPU-NIC PCIe path (LL128 across nodes,
GPUDirect RDMA), set on a network level (InterconnectLevel.host_cpu / gpu_nic_path) or over a shared profile by a
logs.toml entry, a scenario's [system] table or calibrate(system=) (moesim/specs/system_facts.py)."""

from __future__ import annotations

import dataclasses

import pytest

from moesim.collectives.base import Group
from moesim.collectives.nccl import _ll_cap, tuning
from moesim.collectives.nccl_facts import gdr, ll128_across_nodes, ll_multi_node_row, net_overhead_us, no_gdr_legs_s
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware
from moesim.specs.system_facts import set_system_facts, system_facts, with_system_facts

TINY = 64  # bytes: latency-bound
TWO_NODES = Group(size=16, devices=16)
PATHS = ("PIX", "PXB", "P2C", "PXN", "PHB", "NODE", "SYS")


def model(name="b200", algo="ring", **facts):
    return TopologyModel(with_system_facts(load_hardware(name), facts), nccl_algo=algo)


def one(m, op, group, protocol, size=TINY):
    found = [c for c in m.candidates(op, size, group) if c.protocol == protocol]
    assert len(found) == 1
    return found[0]


def test_rules_and_constants_are_nccls():
    """getNetOverhead: 2 us on AMD x86, 1 us else; llMaxBws on several nodes: row 1 for AMD / mixed, row 0 else;
    LL128 across nodes up to PXN on sm90+ (NCCL_LL128_C2C = 1), up to PXB before; GDR up to PXB (+ P2C, PXN)."""
    t = tuning()
    assert [net_overhead_us(t, c) for c in ("", "intel", "amd", "arm", "mixed")] == [1.0, 1.0, 2.0, 1.0, 1.0]
    assert [ll_multi_node_row(t, c) for c in ("", "intel", "amd", "arm", "mixed")] == \
        ["volta", "volta", "ampere", "volta", "ampere"]
    pci = t["gpu_nic_path"]["no_gdr_pci_hop_us"]  # more rows since session 8 (test_nccl_gdrless.py)
    assert (pci["ring"], pci["tree"]) == ([1.0, 2.5, 5.7], [1.0, 1.9, 4.0])
    on = {arch: [p for p in PATHS if ll128_across_nodes(t, arch, p)] for arch in ("ampere", "hopper", "blackwell")}
    assert on == {"ampere": ["PIX", "PXB"], "hopper": ["PIX", "PXB", "P2C", "PXN"],
                  "blackwell": ["PIX", "PXB", "P2C", "PXN"]}
    assert [p for p in PATHS if gdr(t, p)] == ["PIX", "PXB", "P2C", "PXN"]
    assert ll128_across_nodes(t, "blackwell", "") and gdr(t, "") and no_gdr_legs_s(t, "PXB") is None
    legs = no_gdr_legs_s(t, "NODE")  # NODE is PHB in NCCL's graph: no GDR
    assert legs["ring"] == pytest.approx((1.0e-6, 5.0e-6, 11.4e-6)) and legs["tree"] == pytest.approx((1e-6, 3.8e-6, 8e-6))


@pytest.mark.parametrize("name", ["b200", "h100-sxm"])
def test_unstated_facts_price_as_before(name):
    """"" = not stated: NCCL's default figures, which are Intel's and those of a path at most PXB."""
    base = model(name, algo="")
    for facts in ({"host_cpu": "intel"}, {"gpu_nic_path": "PXB"}, {"host_cpu": "arm", "gpu_nic_path": "PIX"}):
        other = model(name, algo="", **facts)
        for op in ("all_reduce", "all_gather"):
            for size in (TINY, 2**20, 2**28):
                assert other.candidates(op, size, TWO_NODES) == base.candidates(op, size, TWO_NODES)


def test_amd_hosts_post_each_network_step_in_2_us():
    """2 x 8 B200 ring all-gather: the 13 NVLink steps of the slowest chunk cost max(hop, 2 us) on AMD (1 us on Intel):
    LL's wire hop 1.0 us -> 2.0 (+13 us), Simple 3.4 -> 3 x 2 = 6 (+33.8 us), LL128's 2.0 stays. NCCL's own model
    (time + tuner offset, its 14 NVLink steps): LL 1.0 -> 2.0 (+14 us), LL128 1.9 -> 2.0 (+1.4 us). One node: none."""
    intel, amd = model(), model(host_cpu="amd")
    for proto, wire, own in (("LL", 13.0, 14.0), ("LL128", 0.0, 1.4), ("Simple", 33.8, 36.4)):
        a, b = one(intel, "all_gather", TWO_NODES, proto), one(amd, "all_gather", TWO_NODES, proto)
        assert (b.terms.latency_s - a.terms.latency_s) * 1e6 == pytest.approx(wire, abs=1e-9)
        nccl_a = a.terms.latency_s + a.tuner_offset_s + _channel_part_s(intel, proto, a)
        nccl_b = b.terms.latency_s + b.tuner_offset_s + _channel_part_s(amd, proto, b)
        assert (nccl_b - nccl_a) * 1e6 == pytest.approx(own, abs=1e-9)
    assert amd.candidates("all_gather", TINY, Group(size=8)) == intel.candidates("all_gather", TINY, Group(size=8))


def _channel_part_s(m, proto, c):
    """(ramp round, merge) The wire-only part of the tuner offset from NCCL's per-size channel count (nccl_channels):
    the candidate's transfer against the same candidate priced with every channel running."""
    from moesim.collectives import nccl_plan

    saved = nccl_plan.share_at
    nccl_plan.share_at = lambda rule, size: 1.0
    try:
        full = one(TopologyModel(m.hardware, nccl_algo=m.nccl_algo), "all_gather", TWO_NODES, proto)
    finally:
        nccl_plan.share_at = saved
    return c.terms.bandwidth_s - full.terms.bandwidth_s


def test_ll_cap_on_several_nodes_is_the_cpus_row():
    """AMD or mixed hosts: 22.5 GB/s on 2 nodes, 19 on 4+; Intel / other / unstated: 39, 20.4; one node: the GPU's."""
    tier0 = load_hardware("b200").interconnect[0]
    for cpu, two, more in (("amd", 22.5e9, 19e9), ("mixed", 22.5e9, 19e9), ("intel", 39e9, 20.4e9),
                           ("arm", 39e9, 20.4e9), ("", 39e9, 20.4e9)):
        assert (_ll_cap(tier0, 2, cpu), _ll_cap(tier0, 8, cpu), _ll_cap(tier0, 1, cpu)) == \
            pytest.approx((two, more, 282e9))
    ring_ll = one(model(host_cpu="amd"), "all_gather", TWO_NODES, "LL", size=2**20)
    assert ring_ll.terms.transfer_s != one(model(), "all_gather", TWO_NODES, "LL", size=2**20).terms.transfer_s


@pytest.mark.parametrize("path, arch_profile, ll128", [("PHB", "b200", False), ("SYS", "h100-sxm", False),
                                                      ("PXN", "b200", True), ("PXN", "a100-80gb", False),
                                                      ("PXB", "a100-80gb", True)])
def test_ll128_across_nodes_follows_the_gpu_nic_path(path, arch_profile, ll128):
    for algo, op in (("ring", "all_gather"), ("tree", "all_reduce")):
        m = model(arch_profile, algo=algo, gpu_nic_path=path)
        protos = {c.protocol for c in m.candidates(op, 2**20, TWO_NODES)}
        assert ("LL128" in protos) == ll128 and {"LL", "Simple"} <= protos
        assert "LL128" in {c.protocol for c in m.candidates(op, 2**20, Group(size=8))}  # one node: no NIC


def test_without_gdr_every_network_step_stages_through_host_memory():
    """GPU-NIC path SYS: no GPUDirect RDMA. The 2 network steps of the 2 x 8 ring's slowest chunk gain the receive
    leg (LL: 1.0 us each) and a send and a receive leg (Simple: 2 x 5.7 us each); the tree all-reduce's 2 network hops
    (LL 1.0, Simple 2 x 4.0 us). Wire only: NCCL's own model (time + tuner offset) does not move."""
    for algo, op, per_step in (("ring", "all_gather", {"LL": 1.0, "Simple": 11.4}),
                               ("tree", "all_reduce", {"LL": 1.0, "Simple": 8.0})):
        base, staged = model(algo=algo), model(algo=algo, gpu_nic_path="SYS")
        for proto, leg in per_step.items():
            a, b = one(base, op, TWO_NODES, proto), one(staged, op, TWO_NODES, proto)
            assert (b.terms.latency_s - a.terms.latency_s) * 1e6 == pytest.approx(2 * leg, abs=1e-9)
            assert b.terms.latency_s + b.tuner_offset_s == pytest.approx(a.terms.latency_s + a.tuner_offset_s,
                                                                        abs=1e-15)
    pxn = model(gpu_nic_path="PXN")  # GDR through the intermediate GPU: no legs
    assert one(pxn, "all_gather", TWO_NODES, "LL").terms == one(model(), "all_gather", TWO_NODES, "LL").terms


def test_facts_are_validated_where_they_are_set(tmp_path):
    level = load_hardware("b200").interconnect[1]
    with pytest.raises(SpecError, match="unknown host_cpu 'epyc'") as err:
        dataclasses.replace(level, host_cpu="epyc")
    assert err.value.field == "interconnect.infiniband.host_cpu" and "amd" in err.value.allowed
    with pytest.raises(SpecError, match="unknown gpu_nic_path 'QPI'"):
        dataclasses.replace(level, gpu_nic_path="QPI")
    with pytest.raises(SpecError, match="describe a network level"):
        dataclasses.replace(load_hardware("b200").interconnect[0], host_cpu="amd")
    with pytest.raises(SpecError, match="no network level"):
        with_system_facts(load_hardware("tpu-v3"), {"host_cpu": "amd"})
    with pytest.raises(SpecError, match="unknown system facts"):
        with_system_facts(load_hardware("b200"), {"cpu": "amd"})
    with pytest.raises(SpecError, match="host_cpu 'zen5' is not allowed"):
        system_facts({"host_cpu": "zen5"})
    text = (load_hardware.__globals__["resolve_ref"]("b200", "hardware_profiles")).read_text()
    bad = tmp_path / "b200-bad.toml"
    bad.write_text(text.replace('topology = "rail_optimized"', 'topology = "rail_optimized"\nhost_cpu = "AMD"'))
    with pytest.raises(SpecError) as err:
        load_hardware(str(bad))
    assert "host_cpu" in str(err.value) and "b200-bad.toml" in str(err.value)


def test_system_facts_over_a_shared_profile():
    hw = with_system_facts(load_hardware("b200"), {"host_cpu": "amd", "gpu_nic_path": "NODE"})
    assert [(lv.host_cpu, lv.gpu_nic_path) for lv in hw.interconnect] == [("", ""), ("amd", "NODE")]
    raw = {"interconnect": [{"topology": "switch"}, {"topology": "rail_optimized"}]}
    assert set_system_facts(raw, {"host_cpu": "amd"})["interconnect"] == \
        [{"topology": "switch"}, {"topology": "rail_optimized", "host_cpu": "amd"}]


def test_a_scenario_system_table_sets_the_facts(tmp_path):
    from moesim.specs.load import load_scenario

    base = ('schema_version = 1\nname = "s"\nmodel = "switch-base-8"\nhardware = "b200"\ndevices = 16\n'
            '[training]\nglobal_batch_sequences = 64\nseq_len = 1024\n')
    path = tmp_path / "s.toml"
    path.write_text(base + '[system]\nhost_cpu = "amd"\ngpu_nic_path = "PXB"\n')
    net = load_scenario(str(path)).hardware.interconnect[1]
    assert (net.host_cpu, net.gpu_nic_path) == ("amd", "PXB")
    path.write_text(base + '[system]\nhost_cpu = "epyc"\n')
    with pytest.raises(SpecError, match="host_cpu"):
        load_scenario(str(path))
    path.write_text(base + '[system]\nnic = "PXB"\n')
    with pytest.raises(SpecError, match="nic"):
        load_scenario(str(path))


def test_calibrate_fits_with_the_facts_and_writes_them(tmp_path):
    from pathlib import Path

    from moesim.calibrate import calibrate

    log = Path(__file__).parents[1] / "data" / "nccl" / "b200-vultr-2node_all_gather_perf.log"
    out = tmp_path / "cal.toml"
    result = calibrate([str(log)], "b200", out, bootstrap=0, holdout_fraction=0.0, nccl_ranks=16,
                       system={"host_cpu": "amd"})
    assert result.fit.prior.interconnect[1].host_cpu == "amd"
    assert [lv.host_cpu for lv in load_hardware(str(out)).interconnect] == ["", "amd"]
