"""Collective operations: definitions, algorithm costs and the models that pick among them."""

from moesim.collectives.base import OPS, CollectiveCost, CollectiveModel, Group, bus_bw_factor, wire_bytes_per_device

__all__ = ["OPS", "CollectiveCost", "CollectiveModel", "Group", "bus_bw_factor", "wire_bytes_per_device"]
