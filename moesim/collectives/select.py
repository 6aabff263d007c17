"""The collective model moesim uses by default for a hardware profile."""

from __future__ import annotations

from moesim.collectives.base import CollectiveModel
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.hardware import HardwareProfile


def default_model(hardware: HardwareProfile) -> CollectiveModel:
    """The topology-aware model: groups placed on the torus slice or switch tiers of `hardware`,
    the fastest (algorithm, protocol) per call (see topo_model.py)."""
    return TopologyModel(hardware)
