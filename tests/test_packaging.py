"""The wheel carries every built-in data file, so built-in names work outside a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from moesim.paths import builtin_names

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_builtin_data(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("moesim-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind, folder in (("hardware_profiles", "moesim/_data/hardware_profiles"),
                         ("scenarios", "moesim/_data/scenarios"), ("models", "moesim/models/library")):
        for name in builtin_names(kind):
            assert any(n.startswith(f"{folder}/{name}.") for n in names), (kind, name)
    assert "moesim/cli/__init__.py" in names
    assert "moesim/precision_recipes.toml" in names  # the named precision recipes
