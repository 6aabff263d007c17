"""Which devices the simulator runs: classes of devices with identical timelines, one each.

Two devices have the same timeline in the full simulation when they run the same work (stage
program, routing loads, straggler slowdown, kernel noise) and everything they wait for or share
behaves alike: the members of each of their collective groups (tp, ep, etp, dp, edp), their
pipeline neighbours, and the devices behind their links (a chip's port, a domain's uplink). The
coarsest partition with that property is found by colour refinement (Weisfeiler-Lehman; the
bisimulation of the device graph): start from the classes of equal work, then split a class while
its members see different multisets of classes in their groups, neighbours and link mates, until
no class splits. The fold is exact by construction: members of a class join every collective at
the same time and carry the same bytes, so simulating one representative per class, with

  a collective waiting for one representative per class present in its group,
  a link standing for every link whose sharers have the same class multiset, a representative's
    flow on it counting once per member of its class behind that link (engine.py `weights`),
  a pipeline send going to the representative of its receiver's class,

reproduces every device's timeline (asserted against the unfolded run in tests/des/test_des_fold.py).
Sampled dropless routing gives every device its own loads, so nothing folds there; capacity
padding, expected loads, stragglers and pipeline stages fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moesim.des.fabric import PortFabric
from moesim.des.network import Link
from moesim.estimate.embedding_sync import EMBEDDING_AXIS, embedding_members

AXES = ("tp", "ep", "etp", "dp", "edp", EMBEDDING_AXIS)  # the last: the first and last stage (embedding_sync.py)


def _labels(rows: np.ndarray) -> np.ndarray:
    """Dense labels 0..k−1 of equal rows, numbered by first occurrence."""
    rows = np.ascontiguousarray(rows.reshape(len(rows), -1))
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)]


def _groups(n: int, size: int, stride: int) -> np.ndarray:
    """Members of every group of an axis, (groups, size)."""
    devices = np.arange(n)
    base = devices - ((devices // stride) % size) * stride
    bases = np.unique(base)
    return bases[:, None] + np.arange(size)[None, :] * stride


def _axis_groups(n: int, sizes: dict, strides: dict, axis: str) -> np.ndarray:
    """Members of every group of `axis`, (groups, size); the embedding group: each pipeline's first and last."""
    if axis == EMBEDDING_AXIS:
        return np.unique(np.stack(embedding_members(np.arange(n), sizes["pp"], strides["pp"]), axis=1), axis=0)
    return _groups(n, sizes[axis], strides[axis])


def group_members(sizes: dict, strides: dict, axis: str, device: int) -> tuple[int, ...]:
    """The members of `device`'s group on `axis` (the mesh rule; the embedding group: embedding_members)."""
    if axis == EMBEDDING_AXIS:
        return tuple(int(d) for d in embedding_members(device, sizes["pp"], strides["pp"]))
    size, stride = sizes[axis], strides[axis]
    base = device - ((device // stride) % size) * stride
    return tuple(base + i * stride for i in range(size))


def neighbourhoods(sizes: dict, strides: dict, fabric: PortFabric, n: int) -> list[np.ndarray]:
    """Sets of devices whose classes a device's timeline depends on: its collective groups and link mates."""
    out = [_axis_groups(n, sizes, strides, a) for a in AXES if sizes.get(a, 1) > 1]
    for level in range(len(fabric.hardware.interconnect)):
        for block in (fabric.sharers(level), fabric.inner_domain(level)):
            if block > 1 and n % block == 0:
                out.append(np.arange(n).reshape(-1, block))
            elif block > 1:  # a partial last block
                out.append(np.array([list(range(i, min(i + block, n))) + [-1] * max(0, i + block - n)
                                     for i in range(0, n, block)]))
    return out


def refine(work: np.ndarray, sizes: dict, strides: dict, fabric: PortFabric, pp: int) -> np.ndarray:
    """Coarsest partition refining `work` (one label per device) under which every device's groups,
    link mates and pipeline neighbours hold the same multiset of classes (labels 0..k−1)."""
    n = len(work)
    labels = _labels(np.asarray(work))
    hoods = neighbourhoods(sizes, strides, fabric, n)
    members = []
    for m in hoods:
        owner = np.full(n, -1)
        valid = m >= 0
        owner[m[valid]] = np.repeat(np.arange(len(m)), valid.sum(axis=1))
        members.append((m, owner))
    stride_pp = strides.get("pp", n)
    devices = np.arange(n)
    stage = (devices // stride_pp) % pp if pp > 1 else np.zeros(n, dtype=int)
    nxt = np.where(stage < pp - 1, devices + stride_pp, -1)
    prv = np.where(stage > 0, devices - stride_pp, -1)
    count = labels.max() + 1
    while True:
        cols = [labels[:, None]]
        padded = np.append(labels, -1)  # index −1 reads the pad
        for m, owner in members:
            multiset = np.sort(padded[m], axis=1)
            cols.append(_labels(multiset)[owner][:, None])
        cols += [padded[nxt][:, None], padded[prv][:, None]]
        new = _labels(np.hstack(cols))
        new_count = new.max() + 1
        labels = new
        if new_count == count:
            return labels
        count = new_count


@dataclass
class Fold:
    """Device classes and the simulated representatives (the smallest device id of each class)."""

    labels: np.ndarray  # class per device
    sizes: dict
    strides: dict
    fabric: PortFabric
    reps: np.ndarray = field(init=False)
    first: np.ndarray = field(init=False)  # representative per class label
    counts: np.ndarray = field(init=False)
    _group_cache: dict = field(default_factory=dict, init=False)
    _link_cache: dict = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        classes = int(self.labels.max()) + 1
        first = np.full(classes, len(self.labels))
        np.minimum.at(first, self.labels, np.arange(len(self.labels)))
        self.first = first
        self.reps = np.sort(first)
        self.counts = np.bincount(self.labels, minlength=classes)

    @classmethod
    def identity(cls, devices: int, sizes: dict, strides: dict, fabric: PortFabric) -> "Fold":
        return cls(np.arange(devices), sizes, strides, fabric)

    @property
    def classes(self) -> int:
        return len(self.reps)

    @property
    def folded(self) -> bool:
        return self.classes < len(self.labels)

    def weight(self, device: int) -> int:
        """Devices the representative `device` stands for."""
        return int(self.counts[self.labels[device]])

    def rep(self, device: int) -> int:
        """The simulated representative of `device`'s class."""
        return int(self.first[self.labels[device]])

    def group(self, axis: str, device: int) -> tuple[tuple, int]:
        """(instance key, representatives to wait for) of `device`'s group on `axis`."""
        members = group_members(self.sizes, self.strides, axis, device)
        key = (axis, members[0])
        hit = self._group_cache.get(key)
        if hit is None:
            classes = tuple(sorted(set(int(c) for c in self.labels[list(members)])))
            hit = self._group_cache[key] = ((axis, classes), len(classes))
        return hit

    def link(self, link: Link, mates: range, device: int, role: tuple) -> tuple[Link, int]:
        """The link standing for `link` (shared by `mates`) and the multiplicity of `device`'s flow on it."""
        key = (role, mates.start, mates.stop)
        hit = self._link_cache.get(key)
        if hit is None:
            multiset = tuple(sorted(int(c) for c in self.labels[mates.start:mates.stop]))
            canonical = self._link_cache.setdefault((role, multiset), link)
            hit = self._link_cache[key] = (canonical, multiset)
        canonical, multiset = hit
        return canonical, multiset.count(int(self.labels[device]))


__all__ = ["AXES", "Fold", "group_members", "neighbourhoods", "refine"]
