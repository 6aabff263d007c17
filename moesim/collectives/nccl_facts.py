"""What NCCL reads from the system it runs on, beyond the GPUs and links: the hosts' CPU and the PCIe path from a GPU
to its NIC (InterconnectLevel.host_cpu / gpu_nic_path on a network level, moesim/specs/hardware.py), and the rules
NCCL applies to them. Constants: nccl_tuning.toml [net_overhead], [ll_max_bus_gb_per_s], [gpu_nic_path].
Source: NVIDIA/nccl v2.28.9-1 (the version of the B200 Vultr logs) src/graph/tuning.cc (getNetOverhead,
ncclTopoTuneModel), src/graph/paths.cc (ncclTopoCheckGdr), src/transport/net.cc (send/recvProxyConnect).
An unstated fact ("") prices as before: NCCL's default CPU figures (Intel's), LL128 and GPUDirect RDMA on.
docs/collectives-history.md, "Vultr 2-node rings, round 4".
"""

from __future__ import annotations

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
