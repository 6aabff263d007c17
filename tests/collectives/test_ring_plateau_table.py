"""scripts/ring_plateau_table.py (session 10, ringnet): its docs block is current, and the two findings the docs
draw from it hold on the logs as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the ring misses (session 11's per-channel caps brought the Voltage Park all_gather under the bar: 22.4 -> 19.4 %)
MISSES = ("h100-xxrjun-10node_all_gather", "h100-xxrjun-10node_reduce_scatter",
          "b200-vultr-2node_all_gather", "b200-vultr-2node_reduce_scatter")


@pytest.fixture(scope="module")
def table(load_script):
    return load_script("scripts/ring_plateau_table.py")


def test_docs_block_is_current(table):
    doc = (ROOT / "docs" / "collectives-history.md").read_text(encoding="utf-8")
    block = doc.split(table.BEGIN, 1)[1].split(table.END, 1)[0].strip()
    assert block == table.render()


def test_no_ring_miss_would_meet_the_bar_with_its_plateau_priced_exactly(table):
    """The Vultr ring misses stay above 20 % at >= 1 MiB even with every size >= 1 GiB priced exactly: their ramp
    (1-512 MiB) alone carries more than the bar, so no plateau mechanism alone can clear them. Since session 11's
    per-channel LL128 caps (the ramp's 32-512 MiB LL128 rows slower) the xxrjun misses would meet it with their plateau
    priced exactly (16.7 / 18.1 %); their ramp is still worse than their plateau."""
    rows = {row[0]: row for row in table.split_rows()}
    assert set(MISSES) <= set(rows)
    for name in MISSES:
        exact = float(rows[name][-1].rstrip("%"))
        assert exact > 20.0 if name.startswith("b200-vultr") else exact < 20.0, name
        assert float(rows[name][1].rstrip("%")) > float(rows[name][4].rstrip("%")), name  # ramp worse than plateau


def test_met_logs_sit_at_the_same_per_nic_plateau(table):
    """The met GKE A3 Ultra H200 all_gathers and the gjaion 4-node ring all_reduce plateau at 80-85 % of 50 GB/s per
    NIC, as the H100 misses do; the GKE A4 B200 all_gather and the qoofyk 4-node VMs do not (above 90 %)."""
    per_nic = {row[0]: float(row[11]) / table.LINE_GB_PER_S for row in table.rows() if row[11] != "-"}
    for name in ("h200-gke-a3ultra-2node_all_gather", "h200-gke-a3ultra-sky-2node_all_gather",
                 "h100-ib-4node-gjaion_all_reduce", "h100-voltagepark-4node_all_gather", "h100-xxrjun-10node_all_gather"):
        assert 0.80 <= per_nic[name] <= 0.85, name
    for name in ("b200-gke-a4-2node_all_gather", "h100-vm-4node-qoofyk_all_reduce"):
        assert per_nic[name] > 0.90, name
