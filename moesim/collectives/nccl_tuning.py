"""The NCCL constants of moesim/collectives/nccl_tuning.toml, read once (nccl.py and its helper modules read them
through `tuning()`; nccl.tuning is the same function)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from moesim.paths import read_versioned_toml

_TUNING = Path(__file__).with_name("nccl_tuning.toml")


@lru_cache(maxsize=1)
def tuning() -> dict:
    """The NCCL constants (nccl_tuning.toml), checked for its schema version once."""
    return read_versioned_toml(_TUNING)
