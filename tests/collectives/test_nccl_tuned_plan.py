"""NCCL 2.20.3-2.21.5's plan for a collective whose channel count a tuner plugin set (session 18 ncclleft;
docs/collectives-history.md "Session 18 (ncclleft)"): the threads halved against the plugin's count
(v2.20.3-1 src/enqueue.cc getChannnelThreadInfo l. 1561-1578) and the channels capped at comm->nChannels and cut to
whole aligned shares of the count (addTunedCollToPlan l. 340-347, computeCollAlignCount l. 214-223). The figures are
worked by hand from those lines."""

from __future__ import annotations

import pytest

from moesim.collectives import nccl_code_rules, nccl_tuning
from moesim.collectives.base import Group
from moesim.collectives.nccl_channels import channel_rule, pinned_share, ring_tree_channels_at
from moesim.collectives.nccl_tuned_plan import align_bytes, count_bytes, tuned_channels, tuned_threads
from moesim.collectives.nccl_tuner_rules import load_tuner_rules
from moesim.collectives.topo_model import TopologyModel
from moesim.specs.load import load_hardware

KIB, MIB = 2**10, 2**20


@pytest.mark.parametrize("algorithm, protocol, n, size, op, plugin, threads, channels", [
    # ring LL, 8 ranks (threshold 8 x 8 = 64 B): 512 -> 256 -> 128 -> 64, at least 3 warps = 96; align 8 x 96 = 768 B;
    # DIVUP(32 KiB, 16) = 2048 -> 3 x 768 = 2304 B per channel -> DIVUP(32768, 2304) = 15 channels
    ("ring", "LL", 8, 32 * KIB, "all_reduce", 16, 96, 15),
    # ring LL128 all-gather, 16 ranks: 640 -> 320 (320 % 128 != 0); align 480 x 10 warps = 4800 B; the count is one
    # rank's 4 KiB: one channel
    ("ring", "LL128", 16, 64 * KIB, "all_gather", 16, 320, 1),
    # ring Simple 16 KiB: 512 -> 64, + the sync warp = 96; align 4 KiB: 1 KiB per channel rounds to 4 KiB -> 4 channels
    ("ring", "Simple", 8, 16 * KIB, "all_reduce", 16, 96, 4),
    # 1 MiB on 4 plugin channels: no halving (512 + 32), 256 KiB per channel, all 4
    ("ring", "Simple", 8, MIB, "all_reduce", 4, 544, 4),
    # 32 plugin channels on a 16-channel communicator: the threads halve against 32 (512 -> 128 at 256 KiB, where 16
    # would stop at 256), the channels are capped at 16: 16 KiB each, a multiple of 8 x 128 B
    ("ring", "LL", 8, 256 * KIB, "all_reduce", 32, 128, 16),
    # tree Simple: its threads halve as a ring's (512 -> 64) and add four warps (192); 4 KiB shares of 16 KiB: 4
    ("tree", "Simple", 8, 16 * KIB, "all_reduce", 16, 192, 4),
])
def test_threads_and_channels_by_hand(algorithm, protocol, n, size, op, plugin, threads, channels):
    rule = channel_rule(algorithm, protocol, n, 16)
    assert tuned_threads(rule, size, plugin, protocol) == threads
    assert tuned_channels(count_bytes(op, size, n), plugin, 16, threads, protocol) == channels


def test_alignment_and_count_by_hand():
    assert (align_bytes("LL", 96), align_bytes("LL128", 320), align_bytes("Simple", 544)) == (768, 4800, 4096)
    assert (count_bytes("all_gather", 64 * KIB, 16), count_bytes("reduce_scatter", 64 * KIB, 16),
            count_bytes("all_reduce", 64 * KIB, 16), count_bytes("broadcast", 64 * KIB, 16)) == (4096, 4096, 65536,
                                                                                               65536)
    assert tuned_channels(0, 16, 16, 96, "LL") == 16  # an empty count: nothing to cut


@pytest.mark.parametrize("version, mechanism", [("2.19.4", False), ("2.20.3", True), ("2.20.5", True),
                                                ("2.21.5", True), ("2.22.3", False), ("", False)])
def test_pinned_share_by_release(version, mechanism):
    size, op, n = 32 * KIB, "all_reduce", 8
    with nccl_tuning.at_version(version):
        rule = channel_rule("ring", "LL", n, 16)
        with_plan = pinned_share(rule, size, 16, 2, "LL", count_bytes(op, size, n))
        assert nccl_code_rules.rule("tuned_coll_to_plan") is mechanism
        if mechanism:
            assert with_plan == pytest.approx(15 * 96 / rule[6])  # 15 channels x 96 threads (above)
        else:  # the count is not read: as before
            assert with_plan == pinned_share(rule, size, 16, 2, "LL")
    if mechanism:  # before this round: the plugin's 16 channels whole with NCCL's own per-size threads (512 here)
        assert ring_tree_channels_at(rule, size) == (1, 512)


@pytest.fixture
def plan_off():
    """[tuned_coll_to_plan] false at every release for the duration (the pricing before session 18 ncclleft)."""
    entry = nccl_code_rules._file()["tuned_coll_to_plan"]
    saved = entry["rows"]
    entry["rows"] = [[first, last, False] for first, last, _ in saved]
    nccl_code_rules._at.cache_clear()
    try:
        yield
    finally:
        entry["rows"] = saved
        nccl_code_rules._at.cache_clear()  # after the rows are back: no value of the test's rows stays cached


def _cost(version, tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('schema_version = 1\n[[rule]]\ncollective = "all_reduce"\nalgorithm = "ring"\nprotocol = '
                    '"Simple"\nchannels = 16\n')
    model = TopologyModel(load_hardware("h200"), tuner_rules=load_tuner_rules(path), nccl_version=version)
    return model.cost("all_reduce", 16 * KIB, Group(size=8))


@pytest.mark.parametrize("version", ["2.20.3", "2.21.5"])
def test_a_pinned_small_ring_runs_as_the_release_plans_it(version, tmp_path, request):
    """16 KiB ring/Simple pinned to 16 channels on 8 H200: 4 channels x 64 data threads (above), the same share as
    NCCL's own 1 channel x 256 threads, so the same time as without the plugin; before, the 16 channels whole at 256
    threads (a share 16x larger) priced it faster."""
    after = _cost(version, tmp_path)
    own = TopologyModel(load_hardware("h200"), nccl_algo="ring", nccl_proto="Simple",
                        nccl_version=version).cost("all_reduce", 16 * KIB, Group(size=8))
    assert after.algorithm == own.algorithm == "ring/Simple"
    assert after.time_s == pytest.approx(own.time_s, rel=1e-12)
    request.getfixturevalue("plan_off")
    before = _cost(version, tmp_path)
    assert before.algorithm == "ring/Simple" and before.time_s < after.time_s


def test_other_releases_and_unset_do_not_move(tmp_path, request):
    now = {v: _cost(v, tmp_path).time_s for v in ("2.19.4", "2.22.3", "")}
    request.getfixturevalue("plan_off")
    assert {v: _cost(v, tmp_path).time_s for v in now} == now
