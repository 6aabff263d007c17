"""Mesh axes → groups of physical devices.

Device ids are mixed-radix over the layout's `order`, innermost axis first (as Megatron-Core's
rank generator lays `tp-cp-ep-dp-pp`). Two meshes share the device ids (MoE parallel folding,
arXiv 2504.14960): the attention/dense mesh (tp, dp, pp) drops `ep` from the order; the expert
mesh (etp, ep, edp, pp) reads `tp` as etp and `dp` as edp.
"""

from __future__ import annotations

from moesim.collectives.base import Group
from moesim.specs.layout import Layout

ATTENTION_AXES = ("tp", "dp", "pp")
EXPERT_AXES = ("etp", "ep", "edp", "pp")
_EXPERT_NAME = {"tp": "etp", "ep": "ep", "dp": "edp", "pp": "pp"}


def _strides(order: tuple[str, ...], sizes: dict[str, int]) -> dict[str, int]:
    strides, stride = {}, 1
    for axis in order:
        strides[axis] = stride
        stride *= sizes[axis]
    return strides


def mesh_strides(layout: Layout) -> dict[str, int]:
    """Device-id stride of every axis of both meshes."""
    attention_order = tuple(a for a in layout.order if a != "ep")
    attention = _strides(attention_order, {"tp": layout.tp, "dp": layout.dp, "pp": layout.pp})
    expert_order = tuple(_EXPERT_NAME[a] for a in layout.order)
    expert = _strides(expert_order, {"etp": layout.etp, "ep": layout.ep, "edp": layout.edp, "pp": layout.pp})
    return {**{a: attention[a] for a in ("tp", "dp")}, **expert}


def axis_sizes(layout: Layout) -> dict[str, int]:
    return {"tp": layout.tp, "dp": layout.dp, "pp": layout.pp, "etp": layout.etp, "ep": layout.ep,
            "edp": layout.edp}


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
