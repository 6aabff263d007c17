"""What calibrate's fit did to the user's own nccl-tests logs, per size band, and what to try (session 16, calreport;
docs/collectives-history.md "Session 16 (calreport)"). Nothing here changes what calibrate writes: it prices the log's
rows with the prior and with the written profile, after the profile is written.

- In-sample busbw MAPE per band, prior | fitted: per log (one collective and group size), as the per-log table of
  docs/collectives.md measures a log (nccl_error.log_error: the faster of each size's rows, MAPE at >= 1 MiB and below;
  transfer_band.own_band_mapes prices a calibration log the same way). Prior: the --hardware profile with the facts the
  user stated (--host-cpu, --gpu-nic-path); fitted: the profile calibrate wrote.
- A note where the fit made a log's own >= 1 MiB rows worse than the prior by more than NOISE (the held-out matrix's
  0.3 pt, transfer_band.GUARD_NOISE): the rows below 1 MiB carry most of the fit's loss (Session 15 (calband)), and
  `--row-weight band-loss` weighs each band as half the prior's loss (Session 16 (bandfit)), at the cost of part of the
  < 1 MiB gain.
- A warning where one process drove several GPUs (nccl-tests -g N, N > 1) and the rank lines name more than one host:
  such runs pay a per-call cost moesim does not price (Session 14 (g8), Session 15 (newlogs6)), which the fitted
  network figures then absorb.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from moesim.calibrate.nccl_error import LARGE_BYTES, log_error
from moesim.calibrate.records import Measurements
from moesim.calibrate.transfer_band import GUARD_NOISE

NOISE = GUARD_NOISE  # 0.3 pt: the held-out matrix's noise (tests/calibrate/test_calibration_matrix.py NOISE)
# The per-call cost of one process driving 8 GPUs across two nodes, at 1 MiB (measured minus priced time per call):
# MIT ORCD Engaging's B200 pairs 183-861 us (Ubuntu pair 183-285, Rocky pairs 382-861), a Lambda and an MGHPCC H100 pair
# 463 and 764 us (docs/collectives-history.md "Session 15 (newlogs6)"; the launch read in NCCL's source: "Session 14
# (g8)"). Not every such run shows it (h200-spectrumx, -g 8 on 2 nodes, is within 3.3 % at >= 1 MiB with the prior).
G_COST_1MIB_US = (183, 861)
G_COST_H100_1MIB_US = (463, 764)
G_COST_DOC = 'docs/collectives-history.md "Session 14 (g8)" and "Session 15 (newlogs6)"'


@dataclass(frozen=True)
class InSample:
    """One log's own busbw MAPE per band (fractions; None: no row in that band) with the prior and the written profile;
    `band_loss`: the same with the profile a `--row-weight band-loss` fit would write (None: not fitted)."""

    log: str
    op: str
    ranks: int
    prior: tuple[float | None, float | None]  # (>= 1 MiB, < 1 MiB)
    fitted: tuple[float | None, float | None]
    band_loss: tuple[float | None, float | None] | None = None

    @property
    def worse_large(self) -> bool:
        """The fit made the log's own >= 1 MiB rows worse than the prior by more than NOISE."""
        return None not in (self.prior[0], self.fitted[0]) and self.fitted[0] - self.prior[0] > NOISE

    def as_dict(self) -> dict:
        b = self.band_loss or (None, None)
        return {"log": self.log, "op": self.op, "ranks": self.ranks,
                "busbw_mape_ge_1mib_prior": self.prior[0], "busbw_mape_ge_1mib_fitted": self.fitted[0],
                "busbw_mape_lt_1mib_prior": self.prior[1], "busbw_mape_lt_1mib_fitted": self.fitted[1],
                "fit_worse_ge_1mib": self.worse_large,
                "busbw_mape_ge_1mib_band_loss": b[0], "busbw_mape_lt_1mib_band_loss": b[1]}


def _logs(measurements: Measurements) -> dict[tuple, tuple]:
    """(file, op, group size) -> the nccl-tests rows of that log, in input order."""
    logs: dict[tuple, list] = {}
    for p in measurements.collectives:
        if p.nccl_tests:
            logs.setdefault((p.source.rsplit(":", 1)[0], p.op, p.group_size), []).append(p)
    return {k: tuple(v) for k, v in logs.items()}


def band_mapes(points: tuple, profile, gpus_per_thread: int) -> tuple[float | None, float | None]:
    """(MAPE >= 1 MiB, MAPE < 1 MiB) of `profile` (its default collective model) on one log's rows."""
    e = log_error(points, profile, None, gpus_per_thread)
    return e.mape_large, e.mape_small


def in_sample(measurements: Measurements, prior, written, gpus_per_thread: int = 1) -> tuple[InSample, ...]:
    """Each nccl-tests log's own busbw MAPE per band with `prior` and with `written`."""
    g = gpus_per_thread
    return tuple(InSample(log, op, n, band_mapes(pts, prior, g), band_mapes(pts, written, g))
                 for (log, op, n), pts in _logs(measurements).items())


def with_band_loss(rows: tuple[InSample, ...], measurements: Measurements, band_loss_profile,
                   gpus_per_thread: int = 1) -> tuple[InSample, ...]:
    """`rows` (in_sample's, same order) with each log's MAPE per band under `band_loss_profile` added."""
    return tuple(replace(r, band_loss=band_mapes(pts, band_loss_profile, gpus_per_thread))
                 for r, pts in zip(rows, _logs(measurements).values()))


def multinode_g_warnings(measurements: Measurements, gpus_per_thread: int = 1) -> tuple[str, ...]:
    """One warning per nccl-tests log whose one process drove N > 1 GPUs (its header's nGpus, else --gpus-per-thread)
    and whose rank lines name more than one host."""
    out = []
    logs = {log for log, _, _ in _logs(measurements)}
    for f in measurements.files:
        n = max(f.header_gpus) if f.header_gpus else gpus_per_thread
        if f.path in logs and n > 1 and len(f.hosts) > 1:
            (lo, hi), (h1, h2) = G_COST_1MIB_US, G_COST_H100_1MIB_US
            out.append(f"{f.path}: one process drove {n} GPUs (nccl-tests -g {n}) on {len(f.hosts)} nodes "
                       f"({', '.join(f.hosts)}): such runs may pay a per-call cost moesim does not price (measured at "
                       f"1 MiB: {lo}-{hi} us on MIT ORCD Engaging's -g 8 B200 pairs, {h1} and {h2} us on two -g 8 H100 "
                       f"pairs; {G_COST_DOC}); where they do, the fit reads it as network time, so the network figures "
                       "it moves absorb it and would price a run with one process per GPU (as in training) slower than "
                       "its links")
    return tuple(out)


def _pct2(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def worse_notes(rows: tuple[InSample, ...], row_weight: str) -> tuple[str, ...]:
    """One note per log whose fit is worse at >= 1 MiB than the prior by more than NOISE."""
    out = []
    for r in rows:
        if not r.worse_large:
            continue
        text = (f"{r.log}: the fit made its own rows at >= {LARGE_BYTES >> 20} MiB worse than the prior "
                f"({_pct2(r.prior[0])} -> {_pct2(r.fitted[0])}, more than the {100 * NOISE:.1f} pt noise)")
        if row_weight == "band-loss":
            out.append(text + " under --row-weight band-loss")
            continue
        if r.prior[1] is None:  # one band: every row weight is 1 (row_weight.py), band-loss fits the same
            out.append(text + ". The log has no rows below 1 MiB, so --row-weight band-loss fits the same; --transfer "
                       "band-guard writes at the prior a figure whose move the log's own >= 1 MiB rows refuse "
                       "(docs/collectives-history.md \"Session 15 (calband)\")")
            continue
        text += (": the rows below 1 MiB carry most of the fit's loss. Try --row-weight band-loss (each band half the "
                 "prior's loss; docs/collectives-history.md \"Session 16 (bandfit)\"), which gives back part of the "
                 f"< 1 MiB gain ({_pct2(r.prior[1])} -> {_pct2(r.fitted[1])} with this fit)")
        if r.band_loss is not None:
            text += (f"; on this log it gives {_pct2(r.band_loss[0])} at >= 1 MiB and {_pct2(r.band_loss[1])} below "
                     "(one more fit, made here)")
        out.append(text)
    return tuple(out)


def render_in_sample(rows: tuple[InSample, ...]) -> list[str]:
    """The CLI's table: one line per log."""
    from moesim.cli.output import table

    if not rows:
        return []
    body = [(r.log, r.op, r.ranks, _pct2(r.prior[0]), _pct2(r.fitted[0]), _pct2(r.prior[1]), _pct2(r.fitted[1]))
            for r in rows]
    return ["your log, in-sample busbw MAPE per band: prior | fitted (the faster row per size, as the per-log table "
            "of docs/collectives.md)",
            table(body, ["log", "collective", "ranks", ">= 1 MiB prior", "fitted", "< 1 MiB prior", "fitted"],
                  align="llrrrrr")]
