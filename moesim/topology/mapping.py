"""Mesh axes → groups of physical devices.

Device ids are mixed-radix over the layout's `order`, innermost axis first (as Megatron-Core's
rank generator lays `tp-cp-ep-dp-pp`). Two meshes share the device ids (MoE parallel folding,
arXiv 2504.14960): the attention/dense mesh (tp, cp, dp, pp) drops `ep` from the order and puts cp
right after tp (Megatron's tp-cp-ep-dp-pp); the expert
mesh (etp, ep, edp, pp) reads `tp` as etp and `dp` as edp.
"""

from __future__ import annotations

import numpy as np

from moesim.collectives.base import Group
from moesim.specs.layout import Layout

_EXPERT_NAME = {"tp": "etp", "ep": "ep", "dp": "edp", "pp": "pp"}


def _strides(order: tuple[str, ...], sizes: dict[str, int]) -> dict[str, int]:
    strides, stride = {}, 1
    for axis in order:
        strides[axis] = stride
        stride *= sizes[axis]
    return strides


def mesh_strides(layout: Layout) -> dict[str, int]:
    """Device-id stride of every axis of both meshes."""
    attention_order = tuple(n for a in layout.order if a != "ep" for n in (("tp", "cp") if a == "tp" else (a,)))
    attention = _strides(attention_order, {"tp": layout.tp, "cp": layout.cp, "dp": layout.dp, "pp": layout.pp})
    expert_order = tuple(_EXPERT_NAME[a] for a in layout.order)
    expert = _strides(expert_order, {"etp": layout.etp, "ep": layout.ep, "edp": layout.edp, "pp": layout.pp})
    return {**{a: attention[a] for a in ("tp", "cp", "dp")}, **expert}


def axis_sizes(layout: Layout) -> dict[str, int]:
    return {"tp": layout.tp, "dp": layout.dp, "pp": layout.pp, "etp": layout.etp, "ep": layout.ep,
            "edp": layout.edp, "cp": layout.cp}


def axis_group(layout: Layout, axis: str) -> Group:
    """The collective group of `axis` (tp, dp, pp, etp, ep, edp) and how many run concurrently."""
    sizes = axis_sizes(layout)
    size = sizes[axis]
    return Group(size=size, stride=mesh_strides(layout)[axis], concurrent=layout.devices // size,
                 devices=layout.devices)


def device_coordinates(layout: Layout, device: int) -> dict[str, int]:
    """Index of `device` along every axis of both meshes."""
    sizes = axis_sizes(layout)
    return {axis: (device // stride) % sizes[axis] for axis, stride in mesh_strides(layout).items()}


def group_base(index, size: int, stride: int):
    """First device of the `index`-th group of an axis with `size` members `stride` ids apart.

    Groups of one axis partition the devices: the `stride` groups of a block of size·stride
    consecutive ids interleave (bases 0..stride−1), then the next block starts. `index` may be an array.
    """
    return index % stride + (index // stride) * size * stride


def active_groups(group: Group) -> np.ndarray:
    """Device ids (concurrent, size) of the `group.concurrent` groups of an axis that run at once.

    The first `concurrent` groups in the order of `group_base`: with concurrent = devices/size
    this is every group of the axis, as the estimate runs them.
    """
    bases = group_base(np.arange(group.concurrent, dtype=np.int64), group.size, group.stride)
    return bases[:, None] + np.arange(group.size, dtype=np.int64)[None, :] * group.stride


def devices_spanned(group: Group) -> int:
    """Devices a job needs to hold the concurrent groups: whole blocks of size·stride ids."""
    blocks = -(-group.concurrent // group.stride)
    if blocks == 1:
        return (group.size - 1) * group.stride + group.concurrent
    return blocks * group.size * group.stride


def axis_devices(layout: Layout, axis: str) -> np.ndarray:
    """Concrete device ids (groups, members) of every collective group of `axis` on the layout."""
    return active_groups(axis_group(layout, axis))
