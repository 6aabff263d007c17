"""Switched GPU fabrics: NVSwitch / NVL72 domains, fat trees and rail-optimized Clos, as closed forms and graphs.

Notation:
  G      devices per switch domain (NVLink node: 8 on DGX, 72 on NVL72)
  E      endpoints (one injection port per device) on the scale-out fabric
  k      switch radix (ports per switch)
  o      oversubscription at the leaf: down ports / up ports (1 = full bisection)
  h      hosts (device ports) per leaf = ⌊k·o/(1+o)⌋,  u = k − h up ports
  R      rails: leaf switches per scalable unit, one per NIC index (rail-optimized only)
  W      per-device switch-domain bandwidth, b per-device NIC bandwidth (one direction)
Device ids are consecutive inside a switch domain; leaves take consecutive nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # networkx only where a graph is built: a search never builds one (session 18, coldsearch)
    import networkx as nx

# NVIDIA Quantum-2 NDR switches have 64 ports (SB gpus.md, DGX H100 SuperPod: "64-port" switches);
# used when a profile gives no switch_radix.
DEFAULT_SWITCH_RADIX = 64


def hosts_per_leaf(radix: int, oversubscription: float) -> int:
    """h = ⌊k·o/(1+o)⌋ down ports per leaf (k/2 at full bisection).

    Source: Al-Fares et al., "A Scalable, Commodity Data Center Network Architecture", SIGCOMM 2008
    (k-ary fat tree: k/2 down, k/2 up); oversubscription o = down/up.
    """
    return max(1, math.floor(radix * oversubscription / (1 + oversubscription)))


def fat_tree_tiers(endpoints: int, radix: int, oversubscription: float = 1.0) -> int:
    """Switch tiers of a fat tree: 1 if one leaf holds every endpoint, 2 if ≤ k leaves, else 3.

    Capacity: 1 tier h, 2 tiers h·k, 3 tiers h·k²/2 (= k³/4 at o = 1) (Al-Fares et al. 2008).
    """
    h = hosts_per_leaf(radix, oversubscription)
    if endpoints <= h:
        return 1
    if endpoints <= h * radix:
        return 2
    return 3


@dataclass(frozen=True)
class SwitchedFabric:
    """A system of switch domains (NVLink) joined by a scale-out fabric (fat tree or rail Clos)."""

    devices: int
    domain_devices: int  # G
    domain_bw_bytes_per_s: float  # W, per device, one direction
    domain_latency_s: float
    fabric: str  # "fat_tree", "rail_optimized", or "" when one switch domain holds every device
    nic_bw_bytes_per_s: float = 0.0  # b
    fabric_latency_s: float = 0.0
    radix: int = DEFAULT_SWITCH_RADIX
    oversubscription: float = 1.0
    rails: int = 1

    @property
    def nodes(self) -> int:
        return math.ceil(self.devices / self.domain_devices)

    @property
    def leaf_domain_devices(self) -> int:
        """Consecutive devices under one leaf (fat tree) or one scalable unit (rail Clos, PXN-aligned)."""
        h = hosts_per_leaf(self.radix, self.oversubscription)
        if self.fabric == "rail_optimized":
            per_rail = max(1, self.domain_devices // self.rails)  # NICs of one node on one rail
            return max(1, h // per_rail) * self.domain_devices
        return h

    @property
    def leaves(self) -> int:
        if not self.fabric:
            return 0
        units = math.ceil(self.devices / self.leaf_domain_devices)
        return units * (self.rails if self.fabric == "rail_optimized" else 1)

    @property
    def tiers(self) -> int:
        """Switch tiers of the scale-out fabric (0 without one)."""
        if not self.fabric:
            return 0
        if self.leaves <= 1:
            return 1
        if self.fabric == "rail_optimized":
            return 2 if self.devices <= self.leaf_domain_devices * self.radix // self.rails else 3
        return fat_tree_tiers(self.devices, self.radix, self.oversubscription)

    @property
    def bisection_bw_bytes_per_s(self) -> float:
        """One direction: E/2·b/o across the fabric (E/2·b within one leaf), G/2·W in one domain.

        Source: SB gpus.md ("Collective Bandwidth ... is also the bisection bandwidth * 2 / N": 400 GB/s
        per node of 8 on the SuperPod's full-bisection fat tree); oversubscription divides the uplinks.
        """
        if self.nodes <= 1:
            return self.devices / 2 * self.domain_bw_bytes_per_s
        half = self.devices / 2 * self.nic_bw_bytes_per_s
        cross_leaf = self.leaves > (self.rails if self.fabric == "rail_optimized" else 1)
        return half / self.oversubscription if cross_leaf else half

    @property
    def diameter_hops(self) -> int:
        """Links on the longest shortest device-to-device path: 2 in a domain, 2·tiers across the fabric."""
        if self.nodes <= 1:
            return 2 if self.devices > 1 else 0
        return max(2, 2 * self.tiers)


def build_fabric_graph(f: SwitchedFabric, domain_name: str = "nvlink",
                       fabric_name: str = "infiniband") -> nx.MultiDiGraph:
    """Devices, one logical full-bisection switch per domain, NIC links to leaves, spines (and cores).

    Edge attributes: `bw_bytes_per_s` (one direction), `latency_s` (a level's end-to-end latency
    spread over its hops), `level`. Every device has one domain port and, with a fabric, one NIC.
    """
    import networkx as nx

    g = nx.MultiDiGraph(name=f"{f.devices} devices, domains of {f.domain_devices}, {f.fabric or 'no fabric'}")

    def link(a, b, bw, lat, level):
        g.add_edge(a, b, bw_bytes_per_s=bw, latency_s=lat, level=level)
        g.add_edge(b, a, bw_bytes_per_s=bw, latency_s=lat, level=level)

    for d in range(f.devices):
        g.add_node(("device", d), devices=(d,))
    if f.devices > 1:
        for d in range(f.devices):
            link(("device", d), ("domain_switch", d // f.domain_devices), f.domain_bw_bytes_per_s,
                 f.domain_latency_s / 2, domain_name)
    if not f.fabric or f.nodes <= 1:
        return g
    hop_lat = f.fabric_latency_s / f.diameter_hops
    b = f.nic_bw_bytes_per_s
    unit = f.leaf_domain_devices
    for d in range(f.devices):
        leaf = (d // unit, d % f.domain_devices % f.rails) if f.fabric == "rail_optimized" else (d // unit, 0)
        link(("device", d), ("leaf",) + leaf, b, hop_lat, fabric_name)
    if f.tiers < 2:
        return g
    leaves = sorted(n for n in g.nodes if n[0] == "leaf")
    down = {leaf: sum(1 for _ in g.predecessors(leaf)) for leaf in leaves}
    up_ports = {leaf: max(1, math.floor(down[leaf] / f.oversubscription)) for leaf in leaves}
    if f.tiers == 2:
        spines = math.ceil(sum(up_ports.values()) / f.radix)
        for leaf in leaves:
            for port in range(up_ports[leaf]):  # uplinks spread round-robin over the spines
                link(leaf, ("spine", port % spines), b, hop_lat, fabric_name)
        return g
    # Three tiers: pods of k/2 leaves under k/2 aggregation switches, aggregation to cores.
    half = f.radix // 2
    for index, leaf in enumerate(leaves):
        pod = index // half
        for port in range(up_ports[leaf]):
            link(leaf, ("agg", pod, port % half), b, hop_lat, fabric_name)
    aggs = sorted({n for n in g.nodes if n[0] == "agg"})
    for agg in aggs:
        for port in range(half):
            link(agg, ("core", agg[2], port), b, hop_lat, fabric_name)
    return g
