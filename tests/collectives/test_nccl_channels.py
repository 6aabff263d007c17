"""NCCL's per-size channel and thread count (ramp round, issue 11): once the tuner has picked a ring or tree
(algorithm, protocol), NCCL 2.30.7 src/enqueue.cc topoGetAlgoInfo runs small messages on fewer channels and then
fewer threads; moesim prices that share of the full-size rate on the wire only (nccl_channels.channel_share), so NCCL's pick
is unchanged. Constants: nccl_tuning.toml [channels]."""

from __future__ import annotations

import pytest

from moesim.collectives.base import Group
from moesim.collectives.nccl import tuning
from moesim.collectives.nccl_channels import channel_share, ring_tree_channels
from moesim.collectives.select import default_model
from moesim.specs.load import load_hardware

MAX_THREADS = {"LL": 512, "LL128": 640, "Simple": 512}  # NCCL_{LL,LL128,SIMPLE}_MAX_NTHREADS (device.h)
THRESHOLD = {"LL": 8, "LL128": 8, "Simple": 64}  # NCCL_{LL,LL128,SIMPLE}_THREAD_THRESHOLD (comm.h)


def nccl_loop(algorithm, protocol, n_bytes, n_ranks, n_channels):
    """topoGetAlgoInfo's ring / tree branch as written in NCCL 2.30.7, step by step (returns nc, total threads)."""
    nc, nt = n_channels, MAX_THREADS[protocol]
    threshold = THRESHOLD[protocol] * (n_ranks if algorithm == "ring" and protocol == "LL" else 1)
    while n_bytes < nc * nt * threshold:
        if nc >= 2:
            nc -= 1
        else:
            break
    while n_bytes < nc * nt * threshold:
        if nt % 128 == 0:
            nt //= 2
        else:
            break
    if protocol == "Simple":
        nt += 32 if algorithm == "ring" else 4 * 32
    nt = 3 * 32 if nt // 32 < 3 else nt
    if algorithm == "tree":
        nt = 640
    return nc, nt


def test_constants_are_nccls():
    ch = tuning()["channels"]
    assert ch["max_threads"] == MAX_THREADS and ch["thread_threshold"] == THRESHOLD
    assert (ch["sync_warp"], ch["min_threads"], ch["all_threads"]) == (32, 96, 640)


@pytest.mark.parametrize("algorithm", ["ring", "tree"])
@pytest.mark.parametrize("protocol", ["LL", "LL128", "Simple"])
@pytest.mark.parametrize("n", [8, 16, 64])
def test_channel_and_thread_count_follow_ncclS_loop(algorithm, protocol, n):
    for n_channels in (16, 32):
        for size in [1, 8, 100, 4096, 5000, 2**14, 2**15, 40000, 2**17, 2**18, 300000, 2**20, 2**22, 2**24]:
            nc, nt_total = nccl_loop(algorithm, protocol, size, n, n_channels)
            got_nc, data_threads = ring_tree_channels(algorithm, protocol, float(size), n, n_channels)
            sync = 32 if algorithm == "ring" and protocol == "Simple" else 0
            assert (got_nc, data_threads + sync) == (nc, nt_total), (size, n_channels)


def test_share_is_one_at_full_size_and_small_below():
    # ring Simple: 16 x 512 threads x 64 B = 512 KiB before a channel is dropped; ring LL over 16 ranks 16 x 512 x 8 x 16
    assert channel_share("ring", "Simple", 2.0**19, 8, 16) == 1.0
    assert channel_share("ring", "Simple", 2.0**19 - 1, 8, 16) == pytest.approx(15 / 16)
    assert channel_share("ring", "LL", 2.0**20, 16, 16) == 1.0
    assert channel_share("ring", "LL", 2.0**18, 16, 16) == pytest.approx(4 / 16)
    # one channel, then threads: 64 B of ring LL over 8 ranks runs 1 channel of 96 threads (of 16 x 512)
    assert channel_share("ring", "LL", 64.0, 8, 16) == pytest.approx(96 / (16 * 512))
    # a tree keeps all 640 threads on its one channel
    assert channel_share("tree", "LL", 64.0, 16, 16) == pytest.approx(1 / 16)


def test_the_channel_count_is_wire_only(monkeypatch):
    """NCCL picks with its table, then cuts channels: against the same model with every channel running, each ring /
    tree candidate's time + tuner offset (what the pick ranks by) is unchanged and its transfer is / share (LL: the
    share on the uncapped rate, then NCCL's LL cap on the total, so between the two)."""
    from moesim.collectives import nccl_plan

    hw, group = load_hardware("h100-sxm"), Group(size=16, devices=16)
    sizes = (64.0, 2.0**12, 2.0**16, 2.0**18, 2.0**22)
    cut = {s: default_model(hw).candidates("all_gather", s, group) for s in sizes}
    monkeypatch.setattr(nccl_plan, "share_at", lambda *a: 1.0)
    for size in sizes:
        full = default_model(hw).candidates("all_gather", size, group)
        moved = 0
        for a, b in zip(cut[size], full):
            assert a.label == b.label
            assert a.time_s + a.tuner_offset_s == pytest.approx(b.time_s + b.tuner_offset_s, rel=1e-12)
            if a.algorithm == "ring":
                share = channel_share("ring", a.protocol, size, 16, tuning()["pipeline"]["channels"])
                if a.protocol == "LL":  # NCCL's LL cap is on the total (busBw = min(llMaxBw, nc x bw x 0.5))
                    assert b.terms.bandwidth_s * (1 - 1e-12) <= a.terms.bandwidth_s
                    assert a.terms.bandwidth_s <= b.terms.bandwidth_s / share * (1 + 1e-12)
                else:  # no cap on the total: the transfer / share
                    assert a.terms.bandwidth_s == pytest.approx(b.terms.bandwidth_s / share, rel=1e-12)
                moved += a.terms.bandwidth_s > b.terms.bandwidth_s
        # ring LL over 16 ranks is cut below 1 MiB, LL128 below 80 KiB, Simple below 512 KiB (16 channels); at 256 KiB
        # LL's 4 channels still reach the 2-node LL cap, so it does not move there
        assert moved == {64.0: 3, 2.0**12: 3, 2.0**16: 3, 2.0**18: 1, 2.0**22: 0}[size]


def test_docs_print_the_ramp_check():
    """scripts/ramp_channel_check.py: before / shipped / replaced per healthy log; docs/collectives.md prints exactly
    its block, and the shipped form has fewer misses than both others."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("ramp_channel_check", root / "scripts" / "ramp_channel_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    found = script.errors()
    small = {v: sum(e[v].mape_small or 0 for e in found.values()) for v in script.VARIANTS}
    large = {v: sum(e[v].mape_large or 0 for e in found.values()) for v in script.VARIANTS}
    assert small["shipped"] < small["before"] - 0.5  # 385.8 -> 313.1 points below 1 MiB (main's vultr facts, gIB logs)
    assert large["shipped"] == pytest.approx(large["before"])  # no logged size >= 1 MiB moves
    assert large["replaced"] > large["shipped"] + 1.0  # the channel count does not carry the 1-256 MiB ramp
    doc = (root / "docs" / "collectives.md").read_text(encoding="utf-8")
    block = doc.split(script.BEGIN)[1].split(script.END)[0].strip()
    assert block == script.render(found).strip(), "run: python scripts/ramp_channel_check.py --write"
