"""Session 24 (newlogs14): the b200-engaging-ubuntu held-out pair that makes that cluster's mean positive, read
(scripts/heldout_positive.py), and heldout_rule.py's `TRANSFER+weight:NAME` candidates (docs/collectives-history.md,
"Session 24 (newlogs14)")."""

from __future__ import annotations

from pathlib import Path

import pytest

from moesim.calibrate.log_pricing import priced_log
from moesim.calibrate.nccl_table import matrix_fit, read_manifest
from moesim.specs.load import load_hardware

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "nccl" / "logs.toml"
ENTRIES = {e["file"]: e for e in read_manifest(MANIFEST)}
SENDRECV = "b200-engaging-ubuntu-2node_sendrecv_perf.log"
ALLTOALL = "b200-engaging-ubuntu-2node_alltoall_perf.log"


def _held_out_change(rule: str | None) -> float:
    """The alltoall log's busbw MAPE >= 1 MiB with the profile calibrated on the send/recv log, less its MAPE at the
    prior (a fraction), calibrate's `--transfer rule` (None: the default)."""
    log = priced_log(MANIFEST.parent, ENTRIES[ALLTOALL], load_hardware("b200"))
    fitted = matrix_fit(MANIFEST, SENDRECV, transfer_rule=rule).profile
    return log.on(fitted).error().mape_large - log.error().mape_large


def test_sendrecv_fit_moves_only_the_one_peer_line(load_script):
    """The send/recv fit raises the one-peer send/recv line (the network's p2p_bandwidth) by ~5 % and moves no other
    figure by more than 0.5 %."""
    figures = load_script("scripts/heldout_pairs.py").fit_figures(matrix_fit(MANIFEST, SENDRECV))
    assert [name for name, _, _ in figures] == ["infiniband.p2p_bandwidth"]
    assert 0.04 < figures[0][1] < 0.07
    assert figures[0][2] == {"SR direct/Simple net"}


def test_shared_carries_the_line_to_alltoall_and_lines_does_not():
    """Under `shared` the line reaches the alltoall log, priced too fast already, which loses > 5 pt at >= 1 MiB;
    under `--transfer lines` the all-to-all line stays at the prior and the pair does not move."""
    assert _held_out_change(None) > 0.05
    assert abs(_held_out_change("lines")) < 1e-4


def test_heldout_rule_prices_a_transfer_with_a_row_weight(load_script, monkeypatch):
    """`TRANSFER+weight:NAME` asks calibration_matrix for both options at once, at the automatic prior weight."""
    script = load_script("scripts/heldout_rule.py")
    calls = []
    monkeypatch.setattr(script, "calibration_matrix", lambda manifest, **kw: calls.append(kw) or ())
    assert script.priced("lines+weight:band-loss") == []
    assert calls == [{"transfer_rule": "lines", "row_weight": "band-loss", "fixed_weight": False}]


def test_positive_clusters_are_main_s(load_script):
    assert load_script("scripts/heldout_positive.py").POSITIVE == ("b200-together", "h100-qoofyk",
                                                                    "b200-engaging-ubuntu")


@pytest.mark.parametrize("file", [SENDRECV, ALLTOALL])
def test_shape_reads_the_logs_as_the_matrix_does(load_script, file):
    """Both logs: 16 ranks and the same eight sizes, 1 MiB - 16 GiB by x4; the collectives differ."""
    op, ranks, sizes = load_script("scripts/heldout_positive.py").shape(ENTRIES[file], load_hardware("b200"))
    assert op == ("send_recv" if file == SENDRECV else "all_to_all")
    assert ranks == 16
    assert sizes == tuple(1 << (20 + 2 * k) for k in range(8))
