"""What NCCL reads from the system it runs on, beyond the GPUs and links: the hosts' CPU and the PCIe path from a GPU
to its NIC (InterconnectLevel.host_cpu / gpu_nic_path on a network level, moesim/specs/hardware.py), and the rules
NCCL applies to them. Constants: nccl_tuning.toml [net_overhead], [ll_max_bus_gb_per_s], [gpu_nic_path].
Source: NVIDIA/nccl v2.28.9-1 (the version of the B200 Vultr logs) src/graph/tuning.cc (getNetOverhead,
ncclTopoTuneModel), src/graph/paths.cc (ncclTopoCheckGdr), src/transport/net.cc (send/recvProxyConnect).
An unstated fact ("") prices as before: NCCL's default CPU figures (Intel's), LL128 and GPUDirect RDMA on.
docs/collectives-history.md, "Vultr 2-node rings, round 4". The GDR-less legs beyond ring and tree (PAT, NVLSTree,
CollNet, send/recv, all-to-all, broadcast; src/transport/coll_net.cc, generic.cc, nvls.cc, src/group.cc as well):
docs/collectives.md, "GDR-less legs on every algorithm (session 8, gdrless)".
"""

from __future__ import annotations

from moesim.collectives.formulas import lg

US = 1e-6
PROTOCOLS = ("LL", "LL128", "Simple")  # nccl.PROTOCOLS (nccl.py imports this module: `t` = nccl.tuning())


def net_overhead_us(t: dict, host_cpu: str) -> float:
    """NCCL's network post overhead per step of a ring spanning nodes (Simple: × simple_multiplier): 2 us on AMD
    x86 hosts, 1 us on Intel and every other CPU (getNetOverhead; NCCL_NET_OVERHEAD unset)."""
    row = t["net_overhead"]
    return row["us_amd"] if host_cpu == "amd" else row["us"]


def ll_multi_node_row(t: dict, host_cpu: str) -> str:
    """The llMaxBws row NCCL reads on several nodes: by CPU, the AMD row for AMD or mixed hosts, else row 0."""
    row = t["ll_max_bus_gb_per_s"]
    return row["multi_node_row_amd"] if host_cpu in ("amd", "mixed") else row["multi_node_row"]


def _rank(t: dict, path: str) -> int:
    rule = t["gpu_nic_path"]
    return rule["order"].index(rule["aliases"].get(path, path))


def ll128_across_nodes(t: dict, nccl_arch: str, path: str) -> bool:
    """Whether NCCL enables LL128 for a ring / tree spanning nodes whose GPU-NIC path is `path` (typeInter):
    up to PXN on Hopper and Blackwell (NCCL_LL128_C2C = 1, the default), up to PXB before; True where the path
    or the architecture is not stated."""
    limit = t["gpu_nic_path"]["ll128_max"].get(nccl_arch)
    return not path or not limit or _rank(t, path) <= _rank(t, limit)


def gdr(t: dict, path: str) -> bool:
    """Whether NCCL uses GPUDirect RDMA between a GPU and its NIC `path` apart: up to NCCL_NET_GDR_LEVEL (PXB by
    default), P2C (NCCL_NET_GDR_C2C = 1) and PXN (the intermediate GPU's own path) as well; True where unstated."""
    rule = t["gpu_nic_path"]
    return not path or path in rule["gdr_also"] or _rank(t, path) <= _rank(t, rule["gdr_max"])


def no_gdr_legs_s(t: dict, path: str) -> dict[str, tuple[float, ...]] | None:
    """{ring, tree: (LL, LL128, Simple) s} a network step gains without GPUDirect RDMA (None with it): every
    receive buffer and the LL128 / Simple send buffers sit in host memory (net.cc; the LL send buffer is there
    already, nccl_multinode.net_ll_send_leg_s), so LL gains the receive leg and LL128 / Simple a send and a
    receive leg, each at NCCL's hop over PCI of that algorithm and protocol (hwLatencies[PCI])."""
    if gdr(t, path):
        return None
    pci = t["gpu_nic_path"]["no_gdr_pci_hop_us"]
    legs = {"LL": 1, "LL128": 2, "Simple": 2}
    return {a: tuple(legs[p] * us * US for p, us in zip(PROTOCOLS, pci[a])) for a in ("ring", "tree")}


def no_gdr_hop_legs_s(t: dict, path: str) -> dict[str, tuple[float, ...]] | None:
    """{algorithm: (LL, LL128, Simple) s} one network hop of PAT, NVLSTree, CollNet (direct, chain, NVLS over it) and
    send/recv ("p2p") gains without GPUDirect RDMA (None with it): [gpu_nic_path.no_gdr_hops]' host-memory legs, each
    at the hwLatencies[PCI] row it names (net.cc / coll_net.cc send/recvProxyConnect, cited in nccl_tuning.toml).
    Ring and tree: no_gdr_legs_s."""
    if gdr(t, path):
        return None
    rule = t["gpu_nic_path"]
    pci = rule["no_gdr_pci_hop_us"]
    return {a: tuple(n * us * US for n, us in zip(hop["legs"], pci[hop["pci_row"]]))
            for a, hop in rule["no_gdr_hops"].items()}


def no_gdr_tuner_latency_s(t: dict, path: str, nodes: int, ppn: int) -> tuple[tuple[str, float], ...] | None:
    """((algorithm, s), ...) the latency of NCCL's PAT, NVLSTree and CollNet candidates across `nodes` nodes of `ppn`
    GPUs gains without GPUDirect RDMA (None with it): the Simple legs of one hop (no_gdr_hop_legs_s) on every network
    hop their latency counts, as the hop itself is counted (nccl.py): PAT lg N / inter_divisor (_pat), NVLSTree
    2 lg N (_nvls_fixed), CollNet and NVLS over it 1 (_collnet; one GPU per node: the tree's hop, so the tree's legs,
    no_gdr_legs_s). Wire only: NCCL's tuner prices no GDR leg."""
    hop = no_gdr_hop_legs_s(t, path)
    if hop is None:
        return None
    simple = PROTOCOLS.index("Simple")
    tree = no_gdr_legs_s(t, path)["tree"][simple] if ppn == 1 else None
    return (("pat", lg(nodes) / t["pat"]["inter_divisor"] * hop["pat"][simple]),
            ("nvlstree", 2 * lg(nodes) * hop["nvlstree"][simple]),
            ("collnetdirect", hop["collnetdirect"][simple] if tree is None else tree),
            ("collnetchain", hop["collnetchain"][simple] if tree is None else tree),
            ("nvls", hop["nvls"][simple]))


def no_gdr_step_legs_s(t: dict, op: str, tier) -> dict[str, float] | None:
    """{protocol: s} one step of a send/recv-based op (send/recv, all-to-all: p2p's shared buffers) or of a broadcast
    (NCCL's ring: the ring's dedicated buffers, no_gdr_legs_s) over network `tier` gains without GPUDirect RDMA, by
    the tier's gpu_nic_path; None on an NVLink / torus tier, with GDR, or for another op (the tuner's ops:
    nccl_plan)."""
    if tier.kind in ("switch", "torus") or op not in ("send_recv", "all_to_all", "broadcast"):
        return None
    path = getattr(tier, "gpu_nic_path", "")
    legs = no_gdr_legs_s(t, path) if op == "broadcast" else no_gdr_hop_legs_s(t, path)
    if legs is None:
        return None
    return dict(zip(PROTOCOLS, legs["ring" if op == "broadcast" else "p2p"]))
