"""TPU-style tori: slice shape, wraparound, closed-form link counts, bisection and diameter, graph.

Notation (chips, not devices; a TPU v2/v3 chip holds two devices that share its links):
  D = (D_1..D_k)   pod shape in chips (`InterconnectLevel.dims`)
  a = (a_1..a_k)   slice shape in chips, a_i <= D_i, P = Π a_i chips
  w_i              1 if axis i has its wraparound link, else 0 (rule per profile)
  b                one direction of one link, bytes/s (`link_bw_bytes_per_s`)
Chips are numbered x-fastest: chip = x_1 + a_1·(x_2 + a_2·x_3); device = core + devices_per_chip·chip.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from moesim.errors import SpecError
from moesim.specs.hardware import WRAPAROUND_RULES

if TYPE_CHECKING:  # networkx only where a graph is built: a search never builds one (session 18, coldsearch)
    import networkx as nx

MULTIPLE_OF_4 = 4  # v4/v5p slices are tori on axes that are multiples of 4 (cloud.google.com/tpu/docs/v4)


@lru_cache(maxsize=256)
def slice_shape(pod_dims: tuple[int, ...], chips: int) -> tuple[int, ...]:
    """The slice of `chips` chips inside `pod_dims`: exact products first, then the most cubic.

    Rule (as TPU slices are offered, cloud.google.com/tpu/docs/v4 "4x4x8" style shapes): among shapes
    a with a_i <= D_i and Π a_i = chips, the smallest max(a_i), then the smallest Σ a_i, then the
    smaller axes first (innermost axis smallest). If no shape multiplies to `chips` exactly, the
    smallest slice holding them is taken (the rest of it idles).
    """
    if chips < 1 or chips > math.prod(pod_dims):
        raise SpecError(f"{chips} chips do not fit a pod of {'x'.join(map(str, pod_dims))}", field="devices",
                        value=chips, allowed=f"1..{math.prod(pod_dims)} chips")
    best: tuple | None = None
    for target in range(chips, math.prod(pod_dims) + 1):
        for shape in _factorisations(target, pod_dims):
            key = (max(shape), sum(shape), shape)
            best = key if best is None or key < best else best
        if best is not None:
            return best[2]
    raise AssertionError("unreachable: the whole pod always fits")


def _factorisations(n: int, bounds: tuple[int, ...]):
    if len(bounds) == 1:
        if n <= bounds[0]:
            yield (n,)
        return
    for first in range(1, min(n, bounds[0]) + 1):
        if n % first == 0:
            for rest in _factorisations(n // first, bounds[1:]):
                yield (first,) + rest


def axis_wraps(rule: str, slice_dims: tuple[int, ...], pod_dims: tuple[int, ...]) -> tuple[bool, ...]:
    """Wraparound per axis: full_axis (v2/v3: only an axis spanning the pod), multiple_of_4 (v4/v5p),
    always, never. An axis of one chip has no links at all.

    Source: ../shared/reference/collectives.md (SB tpus.md: "No wraparound (... not a multiple of 4 on
    v4/v5p)"); cloud.google.com/tpu/docs/v4 (torus on slices of multiples of 4).
    """
    if rule not in WRAPAROUND_RULES:
        raise SpecError(f"unknown wraparound rule '{rule}'", field="wraparound", value=rule, allowed=WRAPAROUND_RULES)
    out = []
    for a, d in zip(slice_dims, pod_dims):
        if a < 2:
            out.append(False)
        elif rule == "full_axis":
            out.append(a == d)
        elif rule == "multiple_of_4":
            out.append(a % MULTIPLE_OF_4 == 0)
        else:
            out.append(rule == "always")
    return tuple(out)


def torus_link_count(dims: tuple[int, ...], wraps: tuple[bool, ...]) -> int:
    """Undirected links = Σ_i (P/a_i)·(a_i if w_i else a_i − 1).

    An axis of length 2 with wraparound has two parallel links per chip pair (the +1 and the wrap
    link both join the same two chips): a naive simple-graph build loses one of them.
    Source: counting argument (design.md "Traps": networkx tori with an axis of length 2).
    """
    chips = math.prod(dims)
    return sum((chips // a) * (a if w else a - 1) for a, w in zip(dims, wraps) if a > 1)


def torus_bisection_links(dims: tuple[int, ...], wraps: tuple[bool, ...]) -> int:
    """Links crossing the cut that halves the longest axis k, per direction: (P/k)·(2 if w else 1).

    Source: ../shared/reference/modeling.md §3.6 (bisection of a torus cuts its longest dimension).
    """
    active = [(a, w) for a, w in zip(dims, wraps) if a > 1]
    if not active:
        return 0
    k, w = max(active, key=lambda t: (t[0], not t[1]))
    return (math.prod(dims) // k) * (2 if w else 1)


def torus_bisection_bw_bytes_per_s(dims: tuple[int, ...], wraps: tuple[bool, ...], link_bw_bytes_per_s: float) -> float:
    """Bisection bandwidth, one direction = crossing links × b (Google quotes this figure per pod:
    "bisection 6.4 TB/s" for the 32x32 v3 pod = 64 links × 1e11 B/s; cloud.google.com/tpu/docs/v3)."""
    return torus_bisection_links(dims, wraps) * link_bw_bytes_per_s


def torus_diameter_hops(dims: tuple[int, ...], wraps: tuple[bool, ...]) -> int:
    """Diameter = Σ_i (⌊a_i/2⌋ if w_i else a_i − 1) hops (dimension-ordered shortest paths)."""
    return sum(a // 2 if w else a - 1 for a, w in zip(dims, wraps))


@dataclass(frozen=True)
class TorusSlice:
    """A job's slice of a torus pod, with the devices on its chips."""

    pod_dims: tuple[int, ...]
    dims: tuple[int, ...]
    wraps: tuple[bool, ...]
    devices_per_chip: int
    link_bw_bytes_per_s: float
    latency_s: float

    @property
    def chips(self) -> int:
        return math.prod(self.dims)

    @property
    def link_count(self) -> int:
        return torus_link_count(self.dims, self.wraps)

    @property
    def bisection_bw_bytes_per_s(self) -> float:
        return torus_bisection_bw_bytes_per_s(self.dims, self.wraps, self.link_bw_bytes_per_s)

    @property
    def diameter_hops(self) -> int:
        return torus_diameter_hops(self.dims, self.wraps)

    def chip_coords(self, devices: np.ndarray) -> np.ndarray:
        """Coordinates (len(devices), k) of each device's chip, x fastest."""
        chip = np.asarray(devices, dtype=np.int64) // self.devices_per_chip
        coords = np.empty((chip.size, len(self.dims)), dtype=np.int64)
        for axis, a in enumerate(self.dims):
            coords[:, axis] = chip % a
            chip = chip // a
        return coords


def make_slice(pod_dims: tuple[int, ...], wraparound: str, devices: int, devices_per_chip: int,
               link_bw_bytes_per_s: float, latency_s: float) -> TorusSlice:
    """The slice a job of `devices` devices gets (see `slice_shape`, `axis_wraps`)."""
    chips = math.ceil(devices / devices_per_chip)
    dims = slice_shape(tuple(pod_dims), chips)
    return TorusSlice(pod_dims=tuple(pod_dims), dims=dims, wraps=axis_wraps(wraparound, dims, tuple(pod_dims)),
                      devices_per_chip=devices_per_chip, link_bw_bytes_per_s=link_bw_bytes_per_s,
                      latency_s=latency_s)


def build_torus_graph(torus: TorusSlice, name: str = "ici") -> nx.MultiDiGraph:
    """Chips as nodes (attribute `devices`), one directed edge per link direction.

    Edge attributes: `bw_bytes_per_s` (one direction), `latency_s`, `axis`, `level`. Parallel links
    (an axis of length 2 with wraparound) are parallel edges, so multiplicity is kept.
    """
    import networkx as nx

    g = nx.MultiDiGraph(name=f"torus {'x'.join(map(str, torus.dims))}")
    k = len(torus.dims)
    for chip, coord in enumerate(itertools.product(*(range(a) for a in reversed(torus.dims)))):
        xyz = tuple(reversed(coord))
        first = chip * torus.devices_per_chip
        g.add_node(xyz, devices=tuple(range(first, first + torus.devices_per_chip)))
    attrs = dict(bw_bytes_per_s=torus.link_bw_bytes_per_s, latency_s=torus.latency_s, level=name)
    for xyz in list(g.nodes):
        for axis in range(k):
            a = torus.dims[axis]
            if a < 2:
                continue
            ends = [xyz[axis] + 1] if xyz[axis] + 1 < a else []
            if torus.wraps[axis] and xyz[axis] == a - 1:
                ends.append(0)  # the wrap link; for a = 2 it doubles the 0-1 pair
            for end in ends:
                other = xyz[:axis] + (end,) + xyz[axis + 1:]
                g.add_edge(xyz, other, axis=axis, **attrs)
                g.add_edge(other, xyz, axis=axis, **attrs)
    return g
