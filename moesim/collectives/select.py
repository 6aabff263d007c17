"""The collective model moesim uses by default for a hardware profile."""

from __future__ import annotations

from moesim.collectives.alphabeta import AlphaBetaModel
from moesim.collectives.base import CollectiveModel
from moesim.specs.hardware import HardwareProfile


def default_model(hardware: HardwareProfile) -> CollectiveModel:
    """The alpha-beta model on the slowest interconnect level a group spans."""
    return AlphaBetaModel(hardware)
