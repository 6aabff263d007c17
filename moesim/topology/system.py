"""A job's physical system: the hardware profile's levels turned into tiers, a torus slice or a fabric, a graph.

A *tier* is what the collective costs walk: a domain of `domain_devices` consecutive device ids and the
per-device bandwidth for traffic that leaves the next-inner domain but stays in this one. Tiers nest,
innermost first. A profile level maps to one tier, except a fat tree or rail Clos with
oversubscription o > 1, which adds a second tier for traffic leaving a leaf (per-device share b/o).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from moesim.errors import SpecError
from moesim.specs.hardware import NETWORK_TOPOLOGIES, EfficiencyTable, HardwareProfile, InterconnectLevel
from moesim.topology.fabric import DEFAULT_SWITCH_RADIX, SwitchedFabric, build_fabric_graph
from moesim.topology.torus import TorusSlice, build_torus_graph, make_slice

if TYPE_CHECKING:  # networkx only where a graph is built: a search never builds one (session 18, coldsearch)
    import networkx as nx

TORUS_TOPOLOGIES = ("torus", "ring")


@dataclass(frozen=True)
class Tier:
    """One level of the device hierarchy as the cost formulas see it."""

    name: str
    kind: str  # torus, switch, fabric or uplink
    domain_devices: int
    port_bw_bytes_per_s: float  # per device, one direction
    latency_s: float
    efficiency: EfficiencyTable
    level_index: int
    rails: int = 1  # rail planes of a rail-optimized fabric: a leaf serves one NIC index of many nodes
    nvls_efficiency: float = 0.0  # NVLink SHARP on this switch tier (InterconnectLevel.nvls_efficiency)
    nccl_arch: str = ""  # InterconnectLevel.nccl_arch of the NVLink tier
    sharp: bool = False  # InterconnectLevel.sharp: in-network reduction (IB SHARP) on this fabric tier
    overhead_s: float = 0.0  # InterconnectLevel.collective_overhead_s: fixed software cost per collective (torus)
    nvlstree_efficiency: float = 0.0  # InterconnectLevel.nvlstree_efficiency (nvls_efficiency where unset)
    nvlstree_net_factor: float = 1.0  # InterconnectLevel.nvlstree_net_factor (1 where unset)
    p2p_factor: float = 1.0  # InterconnectLevel.p2p_factor (1 where unset)
    p2p_latency_s: float | None = None  # InterconnectLevel.p2p_latency_s (latency_s where None)
    host_cpu: str = ""  # InterconnectLevel.host_cpu of a network tier ("" = not stated)
    gpu_nic_path: str = ""  # InterconnectLevel.gpu_nic_path of a network tier ("" = not stated)
    fill_bytes: float | None = None  # InterconnectLevel.fill_bytes (nccl_tuning.toml [pipeline] where None)
    ll_latency_s: float | None = None  # InterconnectLevel.ll_latency_s (latency_s where None)
    ll128_latency_s: float | None = None  # InterconnectLevel.ll128_latency_s (latency_s where None)
    alltoall_p2p_factor: float | None = None  # InterconnectLevel.alltoall_p2p_factor (p2p_factor where None)
    nonring_latency_s: float | None = None  # InterconnectLevel.nonring_latency_s (latency_s where None)

    def bw_at(self, message_bytes: float) -> float:
        """Usable per-device bandwidth for messages of `message_bytes` (profile efficiency table)."""
        return self.port_bw_bytes_per_s * self.efficiency.at(max(float(message_bytes), 1.0))


@dataclass(frozen=True)
class System:
    """The tiers, torus slice and fabric a job of `devices` devices runs on."""

    hardware: HardwareProfile
    devices: int
    tiers: tuple[Tier, ...]
    torus: TorusSlice | None
    fabric: SwitchedFabric | None

    @property
    def nccl(self) -> bool:
        """GPU systems run NCCL, whose protocols (LL, LL128, Simple) the model chooses among."""
        return self.hardware.device_kind == "gpu"

    def graph(self) -> nx.MultiDiGraph:
        """The networkx graph: torus chips, or devices + switches; edges carry bandwidth and latency."""
        if self.torus is not None:
            return build_torus_graph(self.torus, self.tiers[0].name)
        names = [t.name for t in self.tiers]
        return build_fabric_graph(self.fabric, names[0], names[1] if len(names) > 1 else "fabric")

    @property
    def bisection_bw_bytes_per_s(self) -> float:
        """One direction, closed form (torus: longest-axis cut; fabric: E/2·b/o)."""
        if self.torus is not None:
            return self.torus.bisection_bw_bytes_per_s
        return self.fabric.bisection_bw_bytes_per_s

    @property
    def diameter_hops(self) -> int:
        return self.torus.diameter_hops if self.torus is not None else self.fabric.diameter_hops

    def summary(self) -> dict:
        out = {"devices": self.devices, "bisection_bw_bytes_per_s": self.bisection_bw_bytes_per_s,
               "diameter_hops": self.diameter_hops,
               "tiers": [{"name": t.name, "kind": t.kind, "domain_devices": t.domain_devices,
                          "port_bw_bytes_per_s": t.port_bw_bytes_per_s, "latency_s": t.latency_s} for t in self.tiers]}
        if self.torus is not None:
            out.update(slice_dims=list(self.torus.dims), wraparound=list(self.torus.wraps),
                       links=self.torus.link_count)
        else:
            out.update(nodes=self.fabric.nodes, fabric=self.fabric.fabric, fabric_tiers=self.fabric.tiers)
        return out


def _torus_of(level: InterconnectLevel, devices: int, per_chip: int) -> TorusSlice:
    if level.topology == "ring":
        pod, rule = (level.domain_devices // per_chip,), "always"
    else:
        pod, rule = tuple(level.dims), level.wraparound
    return make_slice(pod, rule, devices, per_chip, level.link_bw_bytes_per_s, level.latency_s)


def _outer_port_bw(level: InterconnectLevel, per_chip: int) -> float:
    """Per-device injection bandwidth of a level: a torus/ring outside level 0 is treated as a switch
    whose port is all of a chip's links shared by its devices (links_per_chip·b/devices_per_chip)."""
    if level.topology in TORUS_TOPOLOGIES:
        links = level.links_per_chip or 2 * max(1, len(level.dims))
        return links * level.link_bw_bytes_per_s / per_chip
    return level.link_bw_bytes_per_s


def _level_facts(level) -> dict:
    """The Tier fields a switch, fabric or uplink tier copies from its InterconnectLevel (factors 1 where unset)."""
    return dict(nvlstree_net_factor=level.nvlstree_net_factor or 1.0, p2p_factor=level.p2p_factor or 1.0,
                p2p_latency_s=level.p2p_latency_s, host_cpu=level.host_cpu, gpu_nic_path=level.gpu_nic_path,
                fill_bytes=level.fill_bytes, ll_latency_s=level.ll_latency_s, ll128_latency_s=level.ll128_latency_s,
                alltoall_p2p_factor=level.alltoall_p2p_factor, nonring_latency_s=level.nonring_latency_s)


def build_system(hardware: HardwareProfile, devices: int) -> System:
    """Tiers, torus slice or fabric for a job of `devices` devices on `hardware`.

    Raises SpecError (field `devices`) when the count is outside 1..max_devices.
    """
    if devices < 1 or devices > hardware.max_devices:
        raise SpecError(f"{devices} devices is outside 1..{hardware.max_devices} for {hardware.name}",
                        field="devices", value=devices, allowed=f"1..{hardware.max_devices}")
    per_chip = hardware.chip.devices_per_chip
    levels = hardware.interconnect
    tiers: list[Tier] = []
    torus = None
    for index, level in enumerate(levels):
        domain = min(level.domain_devices, max(devices, 1))
        if index == 0 and level.topology in TORUS_TOPOLOGIES:
            torus = _torus_of(level, min(devices, level.domain_devices), per_chip)
            tiers.append(Tier(level.name, "torus", level.domain_devices, level.link_bw_bytes_per_s,
                              level.latency_s, level.bw_efficiency, index,
                              overhead_s=level.collective_overhead_s, p2p_latency_s=level.p2p_latency_s))
            continue
        kind = "fabric" if level.topology in NETWORK_TOPOLOGIES else "switch"
        port = _outer_port_bw(level, per_chip)
        if kind == "fabric" and level.oversubscription > 1:
            leaf = _leaf_domain(hardware, index, devices)
            inner = tiers[-1].domain_devices if tiers else 1
            rails = level.rails if level.topology == "rail_optimized" else 1
            if inner < leaf < domain:
                facts = _level_facts(level)
                tiers.append(Tier(level.name, "fabric", leaf, port, level.latency_s, level.bw_efficiency, index, rails,
                                  sharp=level.sharp, **facts))
                tiers.append(Tier(f"{level.name}-uplink", "uplink", level.domain_devices, port / level.oversubscription,
                                  level.latency_s, level.bw_efficiency, index, rails, sharp=level.sharp, **facts))
                continue
        tiers.append(Tier(level.name, kind, level.domain_devices, port, level.latency_s, level.bw_efficiency, index,
                          1, level.nvls_efficiency if kind == "switch" else 0.0, level.nccl_arch,
                          level.sharp and kind == "fabric",
                          nvlstree_efficiency=(level.nvls_efficiency if level.nvlstree_efficiency is None
                                               else level.nvlstree_efficiency) if kind == "switch" else 0.0,
                          **_level_facts(level)))
    fabric = None if torus is not None else _fabric_of(hardware, devices)
    return System(hardware=hardware, devices=devices, tiers=tuple(tiers), torus=torus, fabric=fabric)


def _leaf_domain(hardware: HardwareProfile, index: int, devices: int) -> int:
    """Devices under one leaf (or rail scalable unit), rounded up to whole inner domains."""
    level = hardware.interconnect[index]
    inner = hardware.interconnect[index - 1].domain_devices if index else 1
    f = SwitchedFabric(devices=devices, domain_devices=inner, domain_bw_bytes_per_s=1.0, domain_latency_s=0.0,
                       fabric=level.topology, nic_bw_bytes_per_s=level.link_bw_bytes_per_s,
                       radix=level.switch_radix or DEFAULT_SWITCH_RADIX, oversubscription=level.oversubscription,
                       rails=level.rails)
    return math.ceil(f.leaf_domain_devices / inner) * inner


def _fabric_of(hardware: HardwareProfile, devices: int) -> SwitchedFabric:
    levels = hardware.interconnect
    first = levels[0]
    outer = next((lv for lv in levels[1:] if lv.topology in NETWORK_TOPOLOGIES), None)
    if outer is None:
        return SwitchedFabric(devices=devices, domain_devices=min(first.domain_devices, devices),
                              domain_bw_bytes_per_s=first.link_bw_bytes_per_s, domain_latency_s=first.latency_s,
                              fabric="")
    return SwitchedFabric(devices=devices, domain_devices=first.domain_devices,
                          domain_bw_bytes_per_s=first.link_bw_bytes_per_s, domain_latency_s=first.latency_s,
                          fabric=outer.topology, nic_bw_bytes_per_s=outer.link_bw_bytes_per_s,
                          fabric_latency_s=outer.latency_s, radix=outer.switch_radix or DEFAULT_SWITCH_RADIX,
                          oversubscription=outer.oversubscription, rails=outer.rails)
