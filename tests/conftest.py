"""Shared fixtures: shipped scenarios, a small dense/MoE scenario built in code, and `load_script` (a file under
scripts/ or docs/ loaded by path)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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


ROOT = Path(__file__).resolve().parents[1]


def _load_script(path: str) -> ModuleType:
    """The module of `path` (relative to the repository root, e.g. "scripts/fresh_logs_check.py" or "docs/make_keys.py"),
    loaded afresh each call, named by its stem. Its folder joins sys.path (last), as running `python scripts/NAME.py`
    puts it there: a script's `from _repo_root import ROOT` line needs it."""
    file = ROOT / path
    if str(file.parent) not in sys.path:
        sys.path.append(str(file.parent))
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """`load_script("scripts/NAME.py")`: the script as a module (fresh each call; see _load_script)."""
    return _load_script
