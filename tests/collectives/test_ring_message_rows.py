"""scripts/ring_message_rows.py (session 17, agrs): the network message of each multi-node ring all_gather /
reduce_scatter row, NCCL's figures for it (scripts/ring_message_rows.toml) checked against the source lines they cite,
its docs block current, and the finding the docs draw from it holding on the logs as they are."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

IB_LOGS = ("b200-vultr-2node_all_gather", "b200-vultr-2node_reduce_scatter", "h100-voltagepark-4node_all_gather")
GIB_LOGS = ("h200-gke-a3ultra-2node_all_gather", "b200-gke-a4-2node_all_gather",
            "h200-gke-a3ultra-sky-2node_all_gather")


@pytest.fixture(scope="module")
def rows(load_script):
    return load_script("scripts/ring_message_rows.py")


@pytest.fixture(scope="module")
def per_log(rows):
    return {log.name: rows.log_rows(log, version) for log, _, version in rows._logs()}


def test_docs_block_is_current(rows, doc_block):
    assert doc_block("ring_message_rows") == rows.render()


def test_nccl_figures_follow_the_macros_they_cite():
    """The TOML's figures from the macros they cite: WireWordPerSlice = WARP_SIZE (32) x
    NCCL_LL128_SHMEM_ELEMS_PER_THREAD (8) words of 8 B; one word in NCCL_LL128_LINEELEMS (128 / 8 = 16) is the flag;
    an LL128 step 120 x 640 x 8 B of which 120/128 is data; an LL line 16 B holding 8; NCCL_IB_AR_THRESHOLD 8192."""
    nccl = tomllib.loads((ROOT / "scripts" / "ring_message_rows.toml").read_text(encoding="utf-8"))
    wire_words = 32 * 8
    assert nccl["ll128"]["slice_wire_bytes"] == wire_words * 8 == 2048
    assert nccl["ll128"]["slice_data_bytes"] == (wire_words - wire_words // 16) * 8 == 1920
    # one LL128 step's data, the figure nccl_tuning.toml holds as a broadcast's chunk (read from there, not copied)
    from moesim.collectives.nccl_tuning import tuning
    assert tuning()["broadcast_chunk_bytes"]["LL128"] == 120 * 640 * 8 * 120 // 128 == 576000
    assert (nccl["ll"]["line_data_bytes"], nccl["ll"]["line_wire_bytes"]) == (8, 16)
    assert nccl["ib"]["ar_threshold_bytes"] == 8192


@pytest.mark.parametrize(("protocol", "data", "wire", "over"), [
    ("LL128", 4096, 3 * 2048, False),   # divUp(4096, 1920) = 3 slices
    ("LL128", 7680, 4 * 2048, False),   # 4 slices = 8192 B: not above the threshold (`>`, ncclIbMultiSend)
    ("LL128", 7681, 5 * 2048, True),    # the first data size whose message is split
    ("LL128", 8192, 5 * 2048, True),
    ("LL", 4096, 8192, False),          # 512 lines of 16 B
    ("LL", 4097, 8208, True),
    ("Simple", 8192, 8192, False),
    ("Simple", 8193, 8193, True),
])
def test_wire_bytes_and_the_ar_threshold(rows, protocol, data, wire, over):
    assert rows.wire_bytes(protocol, data) == wire
    assert rows.above_ar_threshold(wire) is over


@pytest.mark.parametrize(("protocol", "size", "version", "channels"), [
    ("LL128", 128 * 2**10, "2.28.9", 8),    # 128 KiB of traffic in 16 KiB cells
    ("LL128", 256 * 2**10, "2.28.9", 16),
    ("LL128", 256 * 2**10, "2.29.2", 8),    # 32 KiB cells from 2.29.2
    ("LL128", 256 * 2**10, "", 8),          # no stated release: the unset 32 KiB (v2.30.7-1's)
    ("LL", 32 * 2**10, "2.28.9", 8),        # LL cells 4x denser: 4 KiB
    ("LL", 32 * 2**10, "2.24.3", 2),        # not before 2.26.2: 16 KiB cells for LL too
    ("Simple", 64 * 2**20, "2.29.2", 16),   # never above the tuner's channels
])
def test_scheduled_channels(rows, protocol, size, version, channels):
    assert rows.scheduled_channels(protocol, size, 16, version) == channels


def test_message_data_is_capped_at_one_protocol_step(rows):
    assert rows.message_data_bytes("LL128", 2**30, 16, 16) == 576000
    assert rows.message_data_bytes("Simple", 2**30, 16, 16) == 2**20
    assert rows.message_data_bytes("LL128", 2 * 2**20, 16, 16) == 8192


def test_ib_logs_step_where_ll128_messages_pass_the_ar_threshold(per_log):
    """On the three logs on a stated InfiniBand fabric, the first LL128 row whose message is above
    NCCL_IB_AR_THRESHOLD is where the measured time jumps (x1.57-1.74 over the row before, priced x1.13-1.14), and from
    there the LL128 rows run at the prior's own Simple price (MAPE < 5 %) while priced as LL128 they miss by > 40 %."""
    for name in IB_LOGS:
        rs = [r for r in per_log[name] if r["algorithm"] == "ring/LL128"]
        first = next(r for r in rs if r["over"])
        assert first["step_measured"] > 1.5 and first["step_measured"] / first["step_priced"] > 1.35, name
        over = [r for r in rs if r["over"]]
        assert sum(abs(r["simple_error"]) for r in over) / len(over) < 0.05, name
        assert sum(abs(r["error"]) for r in over) / len(over) > 0.40, name


def test_gib_logs_follow_ll128_above_the_threshold(per_log):
    """On the GKE RoCE logs (Google's gIB plugin, not NCCL's IB transport) the same LL128 rows are priced within
    20 % as LL128: the step above is not what every multi-node ring shows."""
    for name in GIB_LOGS:
        over = [r for r in per_log[name] if r["algorithm"] == "ring/LL128" and r["over"] and r["size"] >= 2**20]
        assert over and sum(abs(r["error"]) for r in over) / len(over) < 0.20, name


def test_the_tuner_channels_are_read_from_nccl_tuning(rows, monkeypatch):
    """log_rows takes the tuner's channel count from nccl_tuning.toml [pipeline] channels, not a copy of it: with
    that figure at 2 no row runs on more than 2 channels (at 16, the file's, the large rows run on more)."""
    import copy

    real = rows.tuning
    log, _, version = next(rows._logs())
    assert max(r["channels"] for r in rows.log_rows(log, version)) > 2

    def two_channels():
        t = copy.deepcopy(real())
        t["pipeline"]["channels"] = 2
        return t

    monkeypatch.setattr(rows, "tuning", two_channels)
    assert max(r["channels"] for r in rows.log_rows(log, version)) <= 2
