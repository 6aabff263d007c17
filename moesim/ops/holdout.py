"""Held-out-by-shape error of a profile's operator tables: fit on some measured shapes, predict the others.

For each table, a seeded hash of every point's shape holds out a fraction of the points
(moesim.calibrate.records.split_holdout, the rule of the calibrations); a table of the remaining points
predicts the held-out shapes' efficiency through moesim.ops.tables (log-shape interpolation, nearest
outside). The time error of a prediction is measured/predicted efficiency − 1 (time ∝ 1/efficiency).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from moesim.calibrate.records import split_holdout
from moesim.ops.tables import table_efficiency
from moesim.specs.hardware import HardwareProfile


def held_out_by_kind(hw: HardwareProfile, fraction: float = 0.3, seed: int = 0) -> dict[str, dict]:
    """{kind: {n, mape, max_abs, mean_signed}} of the time error over held-out points of every table with
    at least 5 points."""
    errors: dict[str, list[float]] = {}
    for table in hw.efficiency.op_tables:
        if len(table.points) < 5:
            continue
        keys = [f"{table.kind}/{table.pass_}/{table.op}/{i}:" + "x".join(f"{x:g}" for x in p[:-1])
                for i, p in enumerate(table.points)]
        fit_keys, held = split_holdout(keys, fraction, seed)
        fit = set(fit_keys)
        kept = tuple(p for k, p in zip(keys, table.points) if k in fit)
        sub = dataclasses.replace(table, points=kept)
        held_points = np.array([p for k, p in zip(keys, table.points) if k not in fit])
        if not len(held_points):
            continue
        predicted = table_efficiency(sub, tuple(held_points[:, j] for j in range(held_points.shape[1] - 1)))
        errors.setdefault(table.kind, []).extend((held_points[:, -1] / predicted - 1).tolist())
    out = {}
    for kind, errs in errors.items():
        e = np.array(errs)
        out[kind] = {"n": len(e), "mape": float(np.abs(e).mean()), "max_abs": float(np.abs(e).max()),
                     "mean_signed": float(e.mean())}
    return out
