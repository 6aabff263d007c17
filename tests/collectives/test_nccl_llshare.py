"""The small-size ring LL share on 8 A100 in one node at NCCL 2.19.3 (session 17 llshare; docs/collectives-history.md
"Session 17 (llshare)"): NCCL's channels / threads for a small ring LL all-reduce, by hand from NVIDIA/nccl v2.19.3-1
src/enqueue.cc topoGetAlgoInfo l. 1225-1229 (`while (nBytes < nc*nt*threadThreshold) { if (nc >= 2) nc--; else if
((nt % 128) == 0) nt/=2; else break; }`) and l. 1236 (at least 3 warps), src/graph/tuning.cc l. 359-363 (ring LL
threshold NCCL_LL_THREAD_THRESHOLD x nRanks), src/include/comm.h l. 34 (NCCL_LL_THREAD_THRESHOLD 8) and
src/include/device.h l. 57 (NCCL_LL_MAX_NTHREADS 512); and the terms of moesim's flat ring LL time there."""

from __future__ import annotations

import pytest

from moesim.collectives.base import Group
from moesim.collectives.nccl import fill_factor, fill_bytes
from moesim.collectives.nccl_channels import (channel_rule, ring_ll_share_on, ring_tree_channels_at, share_at,
                                              without_ring_ll_share)
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware

KIB = 1024
CHANNELS = 16  # moesim's nChannels (nccl_tuning.toml [pipeline] channels)
# by hand from the loop above: threshold 8 x 8 ranks = 64 B per thread, 512 threads, so 32 KiB per channel
HAND = {4 * KIB: (1, 96), 8 * KIB: (1, 128), 16 * KIB: (1, 256), 32 * KIB: (1, 512), 64 * KIB: (2, 512),
        128 * KIB: (4, 512), 256 * KIB: (8, 512), 512 * KIB: (16, 512), 1024 * KIB: (16, 512)}


@pytest.mark.parametrize("size", sorted(HAND))
def test_ring_ll_channels_and_threads_as_nccl_2_19_3_runs_them(size):
    assert ring_tree_channels_at(channel_rule("ring", "LL", 8, CHANNELS), size) == HAND[size]


def test_share_is_size_over_512_kib_from_8_kib():
    # nc x nt / (16 x 512) with nc x nt x 64 B = S from 8 KiB up: the share grows as the size, so S / share is flat
    rule = channel_rule("ring", "LL", 8, CHANNELS)
    for size in (8 * KIB, 16 * KIB, 32 * KIB, 64 * KIB, 128 * KIB, 256 * KIB):
        assert share_at(rule, size) == size / (CHANNELS * 512 * 64)
    assert share_at(rule, 4 * KIB) == 96 / (CHANNELS * 512)  # the 3-warp floor: above 4 KiB / 512 KiB


@pytest.mark.parametrize("size", [8 * KIB, 32 * KIB, 256 * KIB])
def test_moesim_ring_ll_transfer_is_the_full_size_rate_at_512_kib(size):
    # transfer = 2 (n-1)/n x S / (W x 0.5 x S / 512 KiB) x the fill ramp: W = 300 GB/s x 0.78 (a100-80gb.toml),
    # 0.5 the ring LL factor unset, ramp 1 + S_fill / (S + S_fill) (nccl.fill_factor); below the 87.7 GB/s LL cap
    model = TopologyModel(load_hardware("a100-80gb"), nccl_version="2.19.3")
    ring_ll = _ring_ll(model, size)
    hand_s = 2 * 7 / 8 * (CHANNELS * 512 * 64) / (300e9 * 0.78 * 0.5) * fill_factor(size, fill_bytes(False))
    assert max(ring_ll.terms.transfer_s) == pytest.approx(hand_s, rel=1e-9)
    assert ring_ll.terms.latency_s == pytest.approx(14 * 1.0e-6, rel=1e-9)  # 14 NVLink steps x the 1 us LL hop


def _ring_ll(model, size):
    return next(c for c in model.candidates("all_reduce", float(size), Group(8))
                if (c.algorithm, c.protocol) == ("ring", "LL"))


@pytest.mark.parametrize("size", [8 * KIB, 256 * KIB])
def test_without_the_share_the_ring_ll_wire_runs_at_the_full_busbw(size):
    # NCCL v2.19.3-1 tuning.cc ncclTopoGetAlgoTime l. 418-424: nBytes / bw at the full busBw (info->nChannels unset)
    assert ring_ll_share_on()
    shipped = _ring_ll(TopologyModel(load_hardware("a100-80gb"), nccl_version="2.19.3"), size)
    with without_ring_ll_share():
        assert not ring_ll_share_on()
        off = _ring_ll(TopologyModel(load_hardware("a100-80gb"), nccl_version="2.19.3"), size)
    assert ring_ll_share_on()  # restored
    # W x 0.5 = 117 GB/s is above llMaxBws' Ampere one-node 87.7 GB/s (v2.19.3-1 tuning.cc l. 86-90): the cap binds
    hand_s = 2 * 7 / 8 * size / min(300e9 * 0.78 * 0.5, 87.7e9) * fill_factor(size, fill_bytes(False))
    assert max(off.terms.transfer_s) == pytest.approx(hand_s, rel=1e-9)
    assert max(off.terms.transfer_s) < max(shipped.terms.transfer_s)
    # the pick is NCCL's model either way: the tuner offset took the share back, so the ranked time is the same
    assert off.time_s + off.tuner_offset_s == pytest.approx(shipped.time_s + shipped.tuner_offset_s, rel=1e-12)


def test_without_the_share_only_ring_ll_moves():
    model = TopologyModel(load_hardware("a100-80gb"), nccl_version="2.19.3")
    shipped = {(c.algorithm, c.protocol): c.time_s for c in model.candidates("all_reduce", 64.0 * KIB, Group(8))}
    with without_ring_ll_share():
        model = TopologyModel(load_hardware("a100-80gb"), nccl_version="2.19.3")
        off = {(c.algorithm, c.protocol): c.time_s for c in model.candidates("all_reduce", 64.0 * KIB, Group(8))}
    assert {k for k in shipped if shipped[k] != off[k]} == {("ring", "LL")}
