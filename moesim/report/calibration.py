"""Measured Switch-layer phases (validate/ JSONL, "kind": "switch_layer") beside an analytical prediction.

Notation per record (one rank's view, from the record's `config`, `tokens` and `bytes`):
  t tokens per rank, h d_model, f d_ff, E experts, r rows a rank's experts receive (max over ranks),
  q element bytes, P peak FLOP/s of the record's dtype, η(F) the profile's matmul efficiency.
Predictions (forward unless named):
  router            2·t·h·E / (P_fp32 · η)                     (Switch Eq. 1, logits in float32)
  dispatch_permute  2·t·k·h·q / (HBM bandwidth · η_mem)         (read + write each routed row)
  dispatch_a2a      all-to-all of the bytes a rank sends, over ep ranks (the profile's collective model)
  expert_compute    2 GEMMs of 2·r·h·f FLOP each / (P · η)
  combine_a2a       as dispatch_a2a with the received rows
  combine_unpermute as dispatch_permute
  backward          2 × (router + expert_compute) + dispatch_a2a + combine_a2a   (Kaplan §2.1: bwd ≈ 2 fwd)
This is the report's own first-order check, not the calibrated model (moesim.calibrate fits that).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from moesim.collectives.base import Group
from moesim.collectives.select import default_model
from moesim.errors import SpecError
from moesim.jsonl import read_jsonl_objects, warn_skipped
from moesim.specs.hardware import DTYPE_BYTES, HardwareProfile

PHASES = ("router", "dispatch_permute", "dispatch_a2a", "expert_compute", "combine_a2a", "combine_unpermute",
          "backward")
FLOPS_PER_MAC = 2
EXPERT_GEMMS = 2  # W_in and W_out of a ReLU expert (validate/switch_layer.py)


@dataclass(frozen=True)
class PhasePoint:
    """One phase of one measured configuration: measured median and predicted time."""

    config: str
    phase: str
    measured_s: float
    predicted_s: float


def read_switch_records(path: str | Path) -> tuple[list[dict], int]:
    """("switch_layer" records with status ok, count of other lines skipped); bad JSON lines are skipped."""
    lines = read_jsonl_objects(path)
    warn_skipped(lines.warnings)
    records, skipped = [], len(lines.warnings)
    for _, rec in lines.objects:
        if isinstance(rec, dict) and rec.get("kind") == "switch_layer" and rec.get("status", "ok") == "ok" \
                and isinstance(rec.get("phases"), dict) and isinstance(rec.get("config"), dict):
            records.append(rec)
        else:
            skipped += 1
    return records, skipped


def predict_phases(rec: dict, hardware: HardwareProfile) -> dict[str, float]:
    """Predicted seconds per phase of one record (module docstring)."""
    cfg = rec["config"]
    t, h, f = cfg["tokens_per_rank"], cfg["d_model"], cfg["d_ff"]
    world = cfg["world_size"]
    ep = cfg.get("ep_size") or world
    experts = ep * cfg["experts_per_rank"]
    k = cfg.get("top_k", 1)
    dtype = cfg.get("dtype", "float32")
    q = DTYPE_BYTES[dtype]
    rows = rec.get("tokens", {}).get("received_rows_per_rank_max", t * k)
    sent = rec.get("bytes", {}).get("dispatch_bytes_per_rank_max", t * k * h * q)
    peak, eff = hardware.chip.peak_for(dtype), hardware.efficiency.matmul
    router_flops = FLOPS_PER_MAC * t * h * experts
    router = router_flops / (hardware.chip.peak_for("float32") * eff.at(router_flops))
    gemm = FLOPS_PER_MAC * rows * h * f
    expert = EXPERT_GEMMS * gemm / (peak * eff.at(gemm))
    permute = 2 * t * k * h * q / (hardware.chip.hbm_bw_bytes_per_s * hardware.efficiency.memory_bandwidth)
    model, group = default_model(hardware), Group(size=ep, concurrent=max(1, world // ep), devices=world)
    dispatch = model.cost("all_to_all", sent, group).time_s
    combine = model.cost("all_to_all", rows * h * q, group).time_s
    return {"router": router, "dispatch_permute": permute, "dispatch_a2a": dispatch, "expert_compute": expert,
            "combine_a2a": combine, "combine_unpermute": permute,
            "backward": 2 * (router + expert) + dispatch + combine}


def phase_points(records: list[dict], hardware: HardwareProfile) -> list[PhasePoint]:
    """Measured (median) against predicted, per record and phase with a positive measurement."""
    points = []
    for rec in records:
        predicted = predict_phases(rec, hardware)
        name = str(rec["config"].get("name", rec.get("key", "?")))
        for phase in PHASES:
            stats = rec["phases"].get(phase)
            if isinstance(stats, dict) and stats.get("median_s", 0) > 0 and predicted[phase] > 0:
                points.append(PhasePoint(name, phase, float(stats["median_s"]), predicted[phase]))
    return points
