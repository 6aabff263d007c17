"""Shared helpers for the report tests: a small scenario and a synthetic validate/ results file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moesim.specs.load import load_scenario

PHASE_TIMES_S = {"router": 2e-4, "dispatch_permute": 1e-4, "dispatch_a2a": 8e-4, "expert_compute": 3e-3,
                 "combine_a2a": 8e-4, "combine_unpermute": 1e-4, "backward": 9e-3, "layer": 1.5e-2,
                 "layer_unsynced": 1.4e-2, "grad_sync": 2e-3}


def switch_record(name: str, tokens: int, scale: float = 1.0) -> dict:
    """A "switch_layer" record in the shape validate/bench.py writes (timings made up)."""
    stats = {p: {"median_s": t * scale, "p10_s": t * scale, "p90_s": t * scale, "min_s": t * scale,
                 "max_s": t * scale, "mean_s": t * scale, "n": 5} for p, t in PHASE_TIMES_S.items()}
    return {
        "schema_version": 1, "kind": "switch_layer", "key": f"k-{name}", "status": "ok",
        "config": {"name": name, "tokens_per_rank": tokens, "d_model": 256, "d_ff": 1024, "experts_per_rank": 2,
                   "world_size": 4, "top_k": 1, "capacity_factor": 1.25, "capacity_rule": "switch",
                   "min_capacity": 1, "ep_size": None, "dtype": "float32"},
        "phases": stats,
        "tokens": {"received_rows_per_rank_max": int(tokens * 1.1)},
        "bytes": {"dispatch_bytes_per_rank_max": tokens * 256 * 4},
    }


@pytest.fixture(scope="session")
def results_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("results") / "results.jsonl"
    lines = [json.dumps(switch_record("small", 512)), json.dumps(switch_record("large", 4096, 6.0)),
             json.dumps({"kind": "collective", "key": "c", "status": "ok"}), "{cut short"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def mixtral():
    return load_scenario("mixtral-8x7b-h100")


@pytest.fixture(scope="session")
def st_moe():
    return load_scenario("st-moe-32b-tpu-v3")
