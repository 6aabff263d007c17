"""Fixtures for the simulator tests (helpers live in des_helpers.py)."""

from __future__ import annotations

import pytest

from des_helpers import DATA


@pytest.fixture(scope="session")
def glam_1024():
    from moesim.specs.load import load_scenario

    return load_scenario(str(DATA / "glam-64e-1024-h100.toml"))
