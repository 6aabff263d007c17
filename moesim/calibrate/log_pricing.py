"""One manifest log priced as the per-log table of docs/collectives.md prices it: the step nccl_table.prior_rows, its
held-out matrix and the check scripts under scripts/ share.

A log is priced with (1) its hardware profile with the entry's system facts set over it (nccl_table.entry_hardware),
(2) the entry's model: NCCL_ALGO / NCCL_PROTO / CollNet / channel knobs as the run set them (nccl_table.entry_model),
else the profile's default model (collectives/select.default_model), and (3) nccl-tests' host floor of
`gpus_per_thread` kernel launches per iteration (the entry's `-g`; nccl_error.log_error). A check script's variant
is the same log priced with another model (`error(model)`, e.g. `error(log.model(p2p_net_model="summed"))`) or on
another profile (`on(profile)`, `dataclasses.replace(log, hardware=...)`).

Units: the rows' sizes are bytes and their times seconds (calibrate/records.CollectivePoint); a LogError's errors
are fractions (measured time / predicted time - 1; nccl_error.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from moesim.calibrate.nccl_error import LogError, log_error
from moesim.calibrate.nccl_table import _points, entry_hardware, entry_model
from moesim.calibrate.records import CollectivePoint
from moesim.collectives.base import CollectiveModel
from moesim.collectives.select import default_model
from moesim.specs.hardware import HardwareProfile


@dataclass(frozen=True)
class PricedLog:
    """One manifest entry's rows and the profile they are priced on; `model` and `error` build the rest."""

    entry: dict  # the manifest's [[log]] table (nccl_table.read_manifest)
    points: tuple[CollectivePoint, ...]  # every row of the log: size_bytes, time_s, out-of-place and in-place
    hardware: HardwareProfile  # the profile with the entry's system facts (nccl_table.entry_hardware)

    @property
    def name(self) -> str:
        """The log's file without `_perf.log` (the name the docs' tables print)."""
        return self.entry["file"].removesuffix("_perf.log")

    @property
    def gpus_per_thread(self) -> int:
        """GPUs one nccl-tests thread drives (`-g`; 1 = one process or thread per GPU): the host floor's launches."""
        return self.entry.get("gpus_per_thread", 1)

    @property
    def group_size(self) -> int:
        """Ranks of the log's collective."""
        return self.points[0].group_size

    def model(self, **changes) -> CollectiveModel:
        """The entry's model (entry_model) or the profile's default, with the TopologyModel fields in `changes`
        replaced; a new model at every call (plans are memoised per model, so one built inside a what-if sees it)."""
        model = entry_model(self.entry, self.hardware) or default_model(self.hardware)
        return dataclasses.replace(model, **changes) if changes else model

    def error(self, model: CollectiveModel | None = None) -> LogError:
        """Busbw error of `model` (None: `self.model()`, built now) on the log's rows with the entry's host floor."""
        return log_error(self.points, self.hardware, self.model() if model is None else model, self.gpus_per_thread)

    def on(self, profile: HardwareProfile) -> PricedLog:
        """The same log priced on `profile` (a calibrated profile, say) with the entry's system facts set over it."""
        return dataclasses.replace(self, hardware=entry_hardware(self.entry, profile))


def priced_log(folder: Path, entry: dict, profile: HardwareProfile | None = None) -> PricedLog:
    """The log of `entry` read from `folder` (its collective and ranks as the entry states them), on `profile` (None:
    the entry's `hardware`) with the entry's system facts."""
    return PricedLog(entry, tuple(_points(folder, entry)), entry_hardware(entry, profile))
