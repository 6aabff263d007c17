"""NCCL figures whose value changed at a release, given their release rows (session 17 versiongap): each row pinned to
the line of NVIDIA/nccl it was read at (git show TAG:FILE), and what the scheduler's figures do to a pinned channel
count at each release. docs/collectives-history.md "Session 17 (versiongap)"."""

from __future__ import annotations

import pytest

from moesim.collectives import nccl_tuning
from moesim.collectives.nccl_channels import channel_rule, pinned_share, ring_tree_channels_at

ABSENT = nccl_tuning.ABSENT


@pytest.mark.parametrize("version, path, value", [
    # src/enqueue.cc scheduleCollTasksToPlan, `constexpr size_t MinTrafficPerChannel = ...`
    ("2.21.5", "channels.min_traffic_per_channel_bytes", ABSENT),  # v2.21.5-1: no such constant
    ("2.22.3", "channels.min_traffic_per_channel_bytes", 512),     # v2.22.3-1 l. 614: `= 512;`
    ("2.23.4", "channels.min_traffic_per_channel_bytes", 16384),   # v2.23.4-1 l. 723: `= 16 << 10;`
    ("2.28.9", "channels.min_traffic_per_channel_bytes", 16384),   # v2.28.9-1 l. 529: `= 16 << 10;`
    ("2.29.2", "channels.min_traffic_per_channel_bytes", 32768),   # v2.29.2-1 l. 576: `= 32 << 10;`
    ("2.30.7", "channels.min_traffic_per_channel_bytes", 32768),   # v2.30.7-1 l. 585: `= 32 << 10;`
    # src/enqueue.cc, `if (task->protocol == NCCL_PROTO_LL) trafficPerByte *= 4;`
    ("2.25.1", "channels.min_traffic_ll_multiplier", 1),           # v2.25.1-1 l. 557-558: cellSize without it
    ("2.26.2", "channels.min_traffic_ll_multiplier", 4),           # v2.26.2-1 l. 568
    ("2.30.7", "channels.min_traffic_ll_multiplier", 4),           # v2.30.7-1 l. 658
    # src/include/device.h `#define MAXCHANNELS`
    ("2.24.3", "channels.max_channels", 32),                       # v2.24.3-1 l. 62
    ("2.25.1", "channels.max_channels", 64),                       # v2.25.1-1 l. 62
    # src/graph/tuning.cc CollNetDirect latency, `(nRanks/nNodes-1) * 0.x) + interLat`
    ("2.18.6", "collnet.direct_per_local_rank_us", 0.5),           # v2.18.6-1 l. 232
    ("2.19.1", "collnet.direct_per_local_rank_us", 0.4),           # v2.19.1-1 l. 236
    # src/include/device.h `#define NCCL_MAX_NVLS_ARITY`
    ("2.20.5", "nvls_chunk.max_arity", 8),                         # v2.20.5-1 l. 160
    ("2.21.5", "nvls_chunk.max_arity", 32),                        # v2.21.5-1 l. 170
    # src/graph/paths.cc `NCCL_PARAM(NetGdrC2c, "NET_GDR_C2C", x)`: GDR on a P2C (Grace C2C) path where 1
    ("2.26.6", "gpu_nic_path.gdr_also", ["PXN"]),                  # v2.26.6-1 l. 381: 0
    ("2.27.3", "gpu_nic_path.gdr_also", ["P2C", "PXN"]),           # v2.27.3-1 l. 386: 1
])
def test_each_release_row_is_the_tagged_line(version, path, value):
    assert nccl_tuning.row_for(path, version) == value


def test_unset_keeps_the_file_figures():
    """Unset, the figures are the file's own, v2.30.7-1's as the rest of its tables: 32 KiB cells, LL 4x denser, 64
    channels, 0.4 us, 32 heads; a release without MinTrafficPerChannel keeps the file's."""
    t = nccl_tuning.tuning()
    assert (t["channels"]["min_traffic_per_channel_bytes"], t["channels"]["min_traffic_ll_multiplier"],
            t["channels"]["max_channels"], t["collnet"]["direct_per_local_rank_us"],
            t["nvls_chunk"]["max_arity"]) == (32768, 4, 64, 0.4, 32)
    with nccl_tuning.at_version("2.22.3"):
        assert nccl_tuning.tuning()["channels"]["min_traffic_per_channel_bytes"] == 512
    with nccl_tuning.at_version("2.19.3"):  # no MinTrafficPerChannel in that release: the file's value is kept
        assert nccl_tuning.tuning()["channels"]["min_traffic_per_channel_bytes"] == 32768


@pytest.mark.parametrize("version, protocol, channels", [
    # a 64 KiB ring all_gather pinned to 16 channels (traffic = nBytes): ceil(64 KiB / cell) channels
    ("", "LL128", 2),         # unset: v2.30.7-1's 32 KiB cells
    ("2.28.9", "LL128", 4),   # 16 KiB
    ("2.29.2", "LL128", 2),   # 32 KiB
    ("2.22.3", "LL128", 16),  # 512 B: every pinned channel
    ("2.28.9", "LL", 16),     # LL 4x denser: 4 KiB cells
    ("2.29.2", "LL", 8),      # 8 KiB
    ("", "LL", 8),            # unset: 8 KiB
    ("2.24.3", "LL", 4),      # before v2.26.2-1 LL's cells are as large as the others'
    ("2.21.5", "LL128", 16),  # v2.18.1-1 .. v2.21.5-1: no MinTrafficPerChannel, the plugin's count taken whole
    ("2.19.1", "LL", 16),
])
def test_the_pinned_channel_count_follows_the_release(version, protocol, channels):
    size = 64 * 2**10
    with nccl_tuning.at_version(version):
        rule = channel_rule("ring", protocol, 16, 16)
        _, nt = ring_tree_channels_at(rule, size)
        assert pinned_share(rule, size, 16, 1, protocol) == pytest.approx(channels * nt / rule[6])
