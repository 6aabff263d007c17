"""Fixtures of the tests that read DeepSeek's H800 trace (scripts/dsv3_trace.py, tests/data/dsv3_trace)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def dsv3(load_script):
    return load_script("scripts/dsv3_trace.py")


@pytest.fixture(scope="module")
def kernels(dsv3):
    return dsv3.read_record(dsv3.RECORD)
