"""The simulator's links: injection and ejection ports per interconnect level (a hose model).

Per level i of the hardware profile every device - every chip on a torus, whose cores share the
chip's links - has one injection port (`tx`) and one ejection port (`rx`); on a fabric level with
oversubscription o > 1 each inner domain of D_{i−1} devices also has an uplink and a downlink of
D_{i−1}·W_i/o. A collective's traffic is grouped per link: each member's sends form one flow over
its injection path, its receives one flow over its ejection path (the hose model; FasterMoE
Eq. 2 likewise sums traffic per directed link). A point-to-point transfer is one flow over
injection port, uplink, downlink and ejection port.

Port capacity is the hardware's injection bandwidth at level i, at its efficiency for large
messages: a torus chip drives all its links (links_per_chip·b, shared by its cores), a switched or
fabric level gives each device its own port b (NVLink total per GPU, or its NIC). Flows are paced
at the collective model's own rate, so a collective alone runs at the model's time as long as the
model respects the injection bandwidth; contention appears where concurrent transfers meet. Port
latency is zero: the collective model's α terms already charge each step's latency
(`moesim.des.engine`), and charging hops again would count it twice.

Another topology (a networkx graph from `moesim.topology`) plugs in by providing the same four
methods: `level`, `egress`, `ingress`, `path`, plus `mates` for the symmetry check.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from moesim.des.network import Link
from moesim.specs.hardware import HardwareProfile, InterconnectLevel

LARGE_MESSAGE_BYTES = 1e12  # past every efficiency table's last point: the level's top efficiency
TORUS_TOPOLOGIES = ("torus", "ring")
RING_LINKS = 2  # a ring level without links_per_chip: one link each way round


def port_capacity_bytes_per_s(level: InterconnectLevel) -> float:
    """One port's capacity, one direction: a torus chip's links_per_chip·b, else the device's b; × efficiency."""
    eff = level.bw_efficiency.at(LARGE_MESSAGE_BYTES)
    if level.topology in TORUS_TOPOLOGIES:
        return (level.links_per_chip or RING_LINKS) * level.link_bw_bytes_per_s * eff
    return level.link_bw_bytes_per_s * eff


@dataclass(frozen=True)
class PortFabric:
    """Ports per device (chip on a torus) and level, built from a hardware profile."""

    hardware: HardwareProfile
    devices: int

    @cached_property
    def port_bw_bytes_per_s(self) -> tuple[float, ...]:
        """Capacity of one port (chip or device) per level."""
        return tuple(port_capacity_bytes_per_s(level) for level in self.hardware.interconnect)

    def level(self, span: int) -> int:
        """Index of the level a group of `span` consecutive device ids uses (innermost holding it)."""
        return self.hardware.level_for_span(span)

    def sharers(self, level: int) -> int:
        """Devices behind one port of `level`: a torus chip's cores, else one."""
        topology = self.hardware.interconnect[level].topology
        return self.hardware.chip.devices_per_chip if topology in TORUS_TOPOLOGIES else 1

    def inner_domain(self, level: int) -> int:
        """Devices per inner domain (the unit behind an oversubscribed uplink), 0 when not oversubscribed."""
        lv = self.hardware.interconnect[level]
        if level == 0 or lv.oversubscription <= 1:
            return 0
        return self.hardware.interconnect[level - 1].domain_devices

    def mates(self, device: int, level: int) -> tuple[range, ...]:
        """Devices sharing each link of `device`'s injection path at `level` (port, then uplink)."""
        share = self.sharers(level)
        first = device - device % share
        out = [range(first, min(first + share, self.devices))]
        inner = self.inner_domain(level)
        if inner:
            start = device - device % inner
            out.append(range(start, min(start + inner, self.devices)))
        return tuple(out)

    def _port(self, direction: str, device: int, level: int) -> Link:
        lv = self.hardware.interconnect[level]
        share = self.sharers(level)
        unit = f"chip{device // share}" if share > 1 else f"dev{device}"
        return Link(f"{lv.name}.{direction}.{unit}", self.port_bw_bytes_per_s[level])

    def _trunk(self, direction: str, device: int, level: int) -> Link | None:
        inner = self.inner_domain(level)
        if not inner:
            return None
        lv = self.hardware.interconnect[level]
        return Link(f"{lv.name}.{direction}.domain{device // inner}",
                    inner // self.sharers(level) * self.port_bw_bytes_per_s[level] / lv.oversubscription)

    def egress(self, device: int, level: int) -> tuple[Link, ...]:
        """Injection path of `device` at `level`: its port, then its domain's uplink when oversubscribed."""
        up = self._trunk("up", device, level)
        return (self._port("tx", device, level),) + ((up,) if up else ())

    def ingress(self, device: int, level: int) -> tuple[Link, ...]:
        """Ejection path of `device` at `level`: its domain's downlink when oversubscribed, then its port."""
        down = self._trunk("down", device, level)
        return ((down,) if down else ()) + (self._port("rx", device, level),)

    def path(self, src: int, dst: int, level: int) -> tuple[Link, ...]:
        """Links a point-to-point transfer src → dst crosses at `level`."""
        return self.egress(src, level) + self.ingress(dst, level)


__all__ = ["LARGE_MESSAGE_BYTES", "PortFabric", "port_capacity_bytes_per_s"]
