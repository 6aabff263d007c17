"""Shared fixtures: shipped scenarios, a small dense/MoE scenario built in code, `load_script` (a file under
scripts/ or docs/ loaded by path), and `doc_block` / `script_stdout` (a generated doc block against its script)."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
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


@pytest.fixture(scope="session")
def doc_block():
    """`doc_block("NAME")`: the generated block NAME of docs/collectives-history.md (`doc` another file), between its
    `<!-- BEGIN NAME: python scripts/NAME.py --write -->` and `<!-- END NAME -->` lines, stripped."""
    def block(name: str, doc: str = "docs/collectives-history.md") -> str:
        text = (ROOT / doc).read_text(encoding="utf-8")
        begin, end = f"<!-- BEGIN {name}: python scripts/{name}.py --write -->", f"<!-- END {name} -->"
        return text.split(begin, 1)[1].split(end, 1)[0].strip()
    return block


@pytest.fixture(scope="session")
def script_stdout():
    """`script_stdout("scripts/NAME.py")`: what the script prints (run from the repository root), stripped."""
    def run(path: str) -> str:
        return subprocess.run([sys.executable, str(ROOT / path)], capture_output=True, text=True, check=True,
                              cwd=ROOT).stdout.strip()
    return run
