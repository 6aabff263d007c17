"""Fixtures for the calibration tests (helpers: calibrate_synth.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibrate_synth import synthetic_records, true_cpu_profile, write_jsonl


@pytest.fixture()
def true_hw():
    return true_cpu_profile()


@pytest.fixture()
def synthetic_jsonl(tmp_path, true_hw) -> Path:
    return write_jsonl(tmp_path / "synthetic.jsonl", synthetic_records(true_hw))
