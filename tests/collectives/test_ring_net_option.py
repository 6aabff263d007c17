"""The ringnet option (session 10): TopologyModel(ring_net_channel_gbps=X) / `moesim collective
--ring-net-channel-gbps X` caps a ring whose channels cross the network at channels x X, wire only; unset, nothing
moves. Not sourced, not the default (docs/collectives-history.md "Session 10 (ringnet)")."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from moesim.collectives.base import Group
from moesim.collectives.nccl_plan import ring_net_caps
from moesim.collectives.select import default_model
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

ROOT = Path(__file__).resolve().parents[2]
GIB = 2**30
SIZES = [2**k for k in range(10, 35, 2)]


@pytest.fixture(scope="module")
def h100():
    return load_hardware("h100-sxm")


def _costs(model, op, n, sizes=SIZES):
    return [model.cost(op, s, Group(size=n, devices=n)) for s in sizes]


def test_unset_prices_bit_for_bit_as_before(h100):
    shipped, unset = default_model(h100), TopologyModel(h100, ring_net_channel_gbps=None)
    for op, n in (("all_gather", 32), ("all_reduce", 64), ("reduce_scatter", 16), ("all_reduce", 8)):
        assert [(c.time_s, c.algorithm, c.bottleneck) for c in _costs(shipped, op, n)] == \
               [(c.time_s, c.algorithm, c.bottleneck) for c in _costs(unset, op, n)]


def test_caps_a_multi_node_ring_at_channels_times_the_figure(h100):
    option = TopologyModel(h100, ring_net_channel_gbps=20.0)
    big = option.cost("all_gather", 64 * GIB, Group(size=32, devices=32))
    assert big.algorithm == "ring/Simple" and big.bottleneck == "infiniband"
    assert 300e9 < big.busbw_bytes_per_s < 16 * 20e9  # 16 channels x 20 GB/s, less the ramp's last few percent
    shipped = default_model(h100).cost("all_gather", 64 * GIB, Group(size=32, devices=32))
    assert shipped.busbw_bytes_per_s > 16 * 20e9  # the shipped ring is NVLink-bound at ~369 GB/s
    # the run's channels scale the cap: NCCL_MIN_NCHANNELS=32 doubles it, so the NVLink bound is back
    more = TopologyModel(h100, ring_net_channel_gbps=20.0, nccl_min_nchannels=32).cost(
        "all_gather", 64 * GIB, Group(size=32, devices=32))
    assert more.bottleneck == "nvlink" and more.busbw_bytes_per_s > 16 * 20e9


def test_wire_only_and_one_node_untouched(h100):
    option, shipped = TopologyModel(h100, ring_net_channel_gbps=20.0), default_model(h100)
    for op, n in (("all_gather", 32), ("all_reduce", 32), ("reduce_scatter", 80)):
        new, old = _costs(option, op, n), _costs(shipped, op, n)
        assert [c.algorithm for c in new] == [c.algorithm for c in old]  # NCCL's pick does not move
        assert all(a.time_s >= b.time_s for a, b in zip(new, old))
        assert any(a.time_s > b.time_s for a, b in zip(new, old))
    one = [(c.time_s, c.algorithm) for c in _costs(option, "all_gather", 8)]
    assert one == [(c.time_s, c.algorithm) for c in _costs(shipped, "all_gather", 8)]


def test_caps_per_tier():
    assert ring_net_caps((8, 32), 16, 20e9) == (float("inf"), 16 * 20e9 / 8)
    assert ring_net_caps((8, 64, 256), 16, 20e9) == (float("inf"), 16 * 20e9 / 8, 16 * 20e9 / 64)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "20"])
def test_bad_values_name_the_field(h100, bad):
    with pytest.raises(SpecError, match="ring_net_channel_gbps"):
        TopologyModel(h100, ring_net_channel_gbps=bad)


def test_cli_flag_prices_it_says_so_and_rejects_bad_input(capsys):
    from moesim.cli import main

    args = ["collective", "all_gather", "--hardware", "h100-sxm", "--devices", "32", "--bytes", "8GiB", "--json"]
    assert main(args) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert main(args + ["--ring-net-channel-gbps", "20"]) == 0
    option = json.loads(capsys.readouterr().out)
    assert shipped["ring_net_channel_gbps"] is None and option["ring_net_channel_gbps"] == 20.0
    assert option["results"][0]["busbw_GBps"] < 320 < shipped["results"][0]["busbw_GBps"]
    for bad, hardware in (("0", "h100-sxm"), ("20", "tpu-v4")):
        assert main(["collective", "all_gather", "--hardware", hardware, "--devices", "32", "--bytes", "8GiB",
                     "--ring-net-channel-gbps", bad]) == 2
        assert "--ring-net-channel-gbps" in capsys.readouterr().err


def test_docs_block_is_current(load_script):
    module = load_script("scripts/ring_channel_cap_check.py")
    doc = (ROOT / "docs" / "collectives-history.md").read_text(encoding="utf-8")
    assert doc.split(module.BEGIN, 1)[1].split(module.END, 1)[0].strip() == module.render()


def test_the_check_prices_the_option_on_the_shipped_model(h100):
    model = dataclasses.replace(default_model(h100), ring_net_channel_gbps=20.0)
    assert model.ring_net_channel_gbps == 20.0 and model.nccl_algo == ""
