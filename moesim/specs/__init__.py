"""Specs: model, hardware, training, layout and scenario — frozen, typed, unit-explicit."""

from moesim.specs.hardware import HardwareProfile
from moesim.specs.layout import Layout
from moesim.specs.load import load_hardware, load_model, load_scenario
from moesim.specs.model import ModelSpec, MoESpec
from moesim.specs.scenario import Scenario
from moesim.specs.training import TrainingSpec

__all__ = [
    "HardwareProfile", "Layout", "ModelSpec", "MoESpec", "Scenario", "TrainingSpec",
    "load_hardware", "load_model", "load_scenario",
]
