"""Where a collective group's members sit on the physical system, and who shares their links.

For a `Group` (size n, stride s, concurrent c) on a `System`:
  g_i      members of one group inside one tier-i domain (g_{-1} = 1, g_top = n)
  boost_i  how much more than its fair share of an oversubscribed leaf uplink a device gets when
           fewer groups run than there are devices under the leaf (1 when all run)
and, on a torus, the group's chips as a sub-torus:
  m_i, d_i  members and chip step on axis i;  wrap_i  whether the group's ring closes on axis i
  q         group members per chip (2 when both TensorCores of a v2/v3 chip are in the group)
  share_i   devices of all running groups on one axis-i line segment of the group ÷ the group's own:
            how many groups' traffic shares each link (Group.concurrent, Group.stride, cores per chip)
Everything is computed once per distinct group with numpy over the members (O(c·n)); the costs then
use closed forms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moesim.collectives.base import Group
from moesim.topology.mapping import active_groups
from moesim.topology.system import System
from moesim.topology.torus import TorusSlice


@dataclass(frozen=True)
class TorusGroup:
    """A group's chips as a (sub-)torus: per-axis members, step, closure, link sharing."""

    m: tuple[int, ...]
    d: tuple[int, ...]
    wrap: tuple[bool, ...]
    share: tuple[float, ...]
    q: int
    chips: int
    regular: bool
    pair_hops: tuple[int, ...]  # hops per axis between consecutive members (send/recv)

    @property
    def axes(self) -> tuple[int, ...]:
        """Axes the group spans (m_i > 1)."""
        return tuple(i for i, m in enumerate(self.m) if m > 1)

    @property
    def diameter_hops(self) -> int:
        """Σ_i (⌊m_i/2⌋ if wrap_i else m_i − 1)·d_i: the farthest two members, in links."""
        return sum((m // 2 if w else m - 1) * d for m, d, w in zip(self.m, self.d, self.wrap))


@dataclass(frozen=True)
class GroupPlacement:
    """Per-tier member counts of one group, the tier bounding it, and its torus shape if any."""

    size: int
    counts: tuple[int, ...]  # g_i per tier
    top: int  # innermost tier whose domain holds the whole group
    boost: tuple[float, ...]  # per tier, uplink fair-share boost (>= 1)
    pair_tier: int  # tier a consecutive pair of members communicates through
    torus: TorusGroup | None

    def children(self, tier: int) -> int:
        """D_i = g_i / g_{i−1}: tier-(i−1) domains of the group inside one tier-i domain."""
        inner = self.counts[tier - 1] if tier > 0 else 1
        return max(1, math.ceil(self.counts[tier] / inner))

    def ports(self, tier: int) -> int:
        """c_i = g_{i−1}: members of one tier-(i−1) domain, whose ports carry its tier-i traffic."""
        return self.counts[tier - 1] if tier > 0 else 1


def place(system: System, group: Group) -> GroupPlacement:
    """Analyse `group` on `system` (see module docstring)."""
    active = active_groups(group)
    members = active[0]
    counts = []
    for tier in system.tiers:
        domain = min(tier.domain_devices, max(system.devices, 1))
        counts.append(int(np.bincount(members // domain).max()))
    top = next((i for i, g in enumerate(counts) if g >= group.size), len(counts) - 1)
    boost = []
    for i, tier in enumerate(system.tiers):
        if tier.kind != "uplink":
            boost.append(1.0)
            continue
        unit = system.tiers[i - 1].domain_devices  # a leaf, or a scalable unit of `rails` rail leaves
        under = active // unit == members[0] // unit
        ports = unit
        if tier.rails > 1:  # one rail leaf: the same NIC index on every node of the unit
            node = system.tiers[i - 2].domain_devices if i >= 2 else 1
            under &= (active % node) % tier.rails == (members[0] % node) % tier.rails
            ports = unit // tier.rails
        oversub = system.tiers[i - 1].port_bw_bytes_per_s / tier.port_bw_bytes_per_s
        boost.append(min(oversub, ports / max(int(np.count_nonzero(under)), 1)))
    pair_tier = 0
    if group.size > 1:  # send/recv: every member to the next at once; the farthest pair bounds it
        for i, t in enumerate(system.tiers):
            if np.any(members[:-1] // t.domain_devices != members[1:] // t.domain_devices):
                pair_tier = min(i + 1, len(system.tiers) - 1)
    torus = None
    if system.torus is not None:
        inside = members[members // system.tiers[0].domain_devices == members[0] // system.tiers[0].domain_devices]
        torus = torus_group(system.torus, inside, active.reshape(-1))
    return GroupPlacement(size=group.size, counts=tuple(counts), top=top, boost=tuple(boost), pair_tier=pair_tier,
                          torus=torus)


def torus_group(torus: TorusSlice, members: np.ndarray, running: np.ndarray) -> TorusGroup:
    """The sub-torus of `members` (one group) and its link sharing with every `running` device."""
    coords = torus.chip_coords(members)
    chips, per_chip = np.unique(members // torus.devices_per_chip, return_counts=True)
    chip_coords = torus.chip_coords(chips * torus.devices_per_chip)
    k = len(torus.dims)
    m, d, regular = [], [], True
    for axis in range(k):
        values = np.unique(chip_coords[:, axis])
        m.append(int(values.size))
        steps = np.diff(values)
        if steps.size == 0:
            d.append(1)
        elif np.all(steps == steps[0]):
            d.append(int(steps[0]))
        else:  # irregular: the mean spacing over the bounding range
            regular = False
            d.append(max(1, math.ceil((values[-1] - values[0]) / (values.size - 1))))
    if math.prod(m) != chips.size:
        regular = False
    wrap = tuple(bool(torus.wraps[i] and m[i] * d[i] == torus.dims[i] and m[i] > 1) for i in range(k))
    run_coords = torus.chip_coords(running)
    first = chip_coords[0]
    share = []
    for axis in range(k):
        if m[axis] < 2:
            share.append(1.0)
            continue
        others = [j for j in range(k) if j != axis]
        lo, hi = (0, torus.dims[axis] - 1) if wrap[axis] else (coords[:, axis].min(), coords[:, axis].max())
        on_line = np.all(run_coords[:, others] == first[others], axis=1) if others else np.ones(len(running), bool)
        on_line &= (run_coords[:, axis] >= lo) & (run_coords[:, axis] <= hi)
        own = np.all(coords[:, others] == first[others], axis=1) if others else np.ones(len(members), bool)
        share.append(max(1.0, float(np.count_nonzero(on_line)) / max(int(np.count_nonzero(own)), 1)))
    hops = [0] * k
    if members.size > 1:  # the consecutive pair farthest apart
        delta = np.abs(coords[1:] - coords[:-1])
        dims = np.asarray(torus.dims)
        wrapped = np.where(np.asarray(torus.wraps), np.minimum(delta, dims - delta), delta)
        hops = [int(h) for h in wrapped[int(np.argmax(wrapped.sum(axis=1)))]]
    return TorusGroup(m=tuple(m), d=tuple(d), wrap=wrap, share=tuple(share), q=int(per_chip.max()),
                      chips=int(chips.size), regular=regular, pair_hops=tuple(hops))
