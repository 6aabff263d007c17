"""Scenarios for the search tests, built in code from the small models in tests/search/data (imported by the tests)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from moesim.specs.load import load_hardware, load_model
from moesim.specs.scenario import Scenario, SearchSpace
from moesim.specs.training import TrainingSpec

DATA = Path(__file__).parent / "data"
ODD_MOE = str(DATA / "odd-moe-decoder.toml")
DENSE = str(DATA / "dense-decoder.toml")
TINY_MOE = str(Path(__file__).parent.parent / "data" / "tiny-moe-decoder.toml")
MOE_64E_SCENARIO = str(DATA / "moe-64e-1024-h100.toml")


def build(model: str = ODD_MOE, devices: int = 12, batch: int = 24, seq_len: int = 512, hardware="h100-sxm",
          search: SearchSpace | None = None, **training) -> Scenario:
    """A scenario of `model` on `devices` devices of `hardware` (a name or a HardwareProfile)."""
    hw = load_hardware(hardware) if isinstance(hardware, str) else hardware
    return Scenario(name=f"{Path(model).stem}-{devices}", model=load_model(model), hardware=hw, devices=devices,
                    training=TrainingSpec(global_batch_sequences=batch, seq_len=seq_len, **training),
                    search=search or SearchSpace())


def with_hbm(scenario: Scenario, hbm_bytes: float) -> Scenario:
    """`scenario` on chips with `hbm_bytes` of memory per device (the runtime reservation dropped when it
    would not fit: since issue #14 a profile must reserve less than a device's memory)."""
    chip = dataclasses.replace(scenario.hardware.chip, hbm_bytes=hbm_bytes)
    reserved = scenario.hardware.memory_reserved_bytes
    hardware = dataclasses.replace(scenario.hardware, chip=chip,
                                   memory_reserved_bytes=reserved if reserved < hbm_bytes else 0.0)
    return dataclasses.replace(scenario, hardware=hardware)
