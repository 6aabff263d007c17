"""Session 18 review18: `calibrate --transfer cv-gate` on a log of one message size (moesim/calibrate/transfer_cv.py).
Its 'one message size' branch came after the fold fits, and the one fold's fit, on the rows outside it, had none:
calibrate stopped with "nothing to fit" where the shared fit wrote a profile. docs/collectives-history.md, "Session 18
(review)"."""

from __future__ import annotations

from moesim.calibrate import calibrate
from moesim.specs.load import load_hardware

# The 4 MiB row of tests/data/nccl/b200-lambda-2node_all_reduce_perf.log (16 ranks): out of place and in place.
ONE_SIZE_LOG = """# nccl-tests version 2.17.6 nccl-headers=22602 nccl-library=22602
# Collective test starting: all_reduce_perf
#
#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw   busbw  #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)             (us)  (GB/s)  (GB/s)
     4194304       1048576     float     sum      -1   118.25   35.47   66.50       0   117.11   35.82   67.15       0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 66.825
"""


def test_cv_gate_on_one_size_writes_the_moved_figures_at_the_prior(tmp_path):
    log = tmp_path / "one-size_all_reduce_perf.log"
    log.write_text(ONE_SIZE_LOG)
    runs = {rule: calibrate([str(log)], "b200", tmp_path / f"{rule}.toml", transfer_rule=rule, bootstrap=0,
                            holdout_fraction=0.0, seed=0, nccl_ranks=16) for rule in ("shared", "cv-gate")}
    prior = {lv.name: lv.latency_s for lv in load_hardware("b200").interconnect}
    shared = {lv.name: lv.latency_s for lv in runs["shared"].profile.interconnect}
    gated = {lv.name: lv.latency_s for lv in runs["cv-gate"].profile.interconnect}
    moved = [name for name in prior if shared[name] != prior[name]]
    assert moved  # the shared fit moves a hop latency on the one size
    assert all(gated[name] == prior[name] for name in moved), (gated, prior)
    notes = runs["cv-gate"].transfer_notes
    assert notes and all("fewer than two message sizes" in n and n.endswith("written at the prior") for n in notes)
