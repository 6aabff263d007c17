"""Shared fixtures: shipped scenarios and a small dense/MoE scenario built in code."""

from __future__ import annotations

import dataclasses

import pytest

from moesim.specs.load import load_hardware, load_model, load_scenario
from moesim.specs.scenario import Scenario
from moesim.specs.training import TrainingSpec


@pytest.fixture(scope="session")
def switch_c():
    return load_scenario("switch-c-2048-tpu-v3")


@pytest.fixture(scope="session")
def switch_base():
    return load_scenario("switch-base-128-tpu-v3")


def make_scenario(model: str = "switch-base-8", hardware: str = "h100-sxm", devices: int = 16,
                  batch: int = 64, **training) -> Scenario:
    """A scenario built in code, for property tests over layouts."""
    base = dict(global_batch_sequences=batch, seq_len=512, decoder_seq_len=114)
    base.update(training)
    return Scenario(name=f"{model}-{devices}", model=load_model(model), hardware=load_hardware(hardware),
                    devices=devices, training=TrainingSpec(**base))


def with_devices(scenario: Scenario, devices: int) -> Scenario:
    return dataclasses.replace(scenario, devices=devices)
