"""`moesim collective`: nccl-tests layout, JSON contract, sweeps, bad input → exit 2; estimate wiring."""

from __future__ import annotations

import json

import pytest

from moesim.cli import main
from moesim.collectives.select import default_model
from moesim.collectives.sweep import aligned_size, element_count, sweep_sizes
from moesim.collectives.topo_model import TopologyModel
from moesim.estimate import estimate
from moesim.specs.load import load_hardware


def run_json(capsys, *argv):
    code = main(["collective", *argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_sweep_doubles_like_nccl_tests():
    assert sweep_sizes(8, 128) == [8, 16, 32, 64, 128]
    assert len(sweep_sizes(8, 8 * 2**30)) == 31


def test_sizes_and_counts_as_nccl_tests_print_them():
    """count = elements per rank; all_gather/reduce_scatter/all_to_all round to whole elements per rank."""
    assert element_count("all_reduce", 1 << 20, 8) == 262144
    assert element_count("all_gather", 1 << 20, 8) == 32768
    assert aligned_size("all_to_all", 100, 8) == 96 and aligned_size("all_reduce", 100, 8) == 100


def test_json_rows(capsys):
    data = run_json(capsys, "all_reduce", "--hardware", "h100-sxm", "--devices", "8", "--sweep", "1KiB:1MiB")
    rows = data["results"]
    assert [r["bytes"] for r in rows] == [1024 * 2**i for i in range(11)]
    for r in rows:
        assert {"bytes", "time_s", "algbw_GBps", "busbw_GBps", "algorithm", "bottleneck", "count"} <= set(r)
        assert r["algbw_GBps"] == pytest.approx(r["bytes"] / r["time_s"] / 1e9)
        assert r["busbw_GBps"] == pytest.approx(r["algbw_GBps"] * 2 * 7 / 8)
    assert data["system"]["nodes"] == 1


def test_one_size_with_stride_and_concurrency(capsys):
    data = run_json(capsys, "all_to_all", "--hardware", "tpu-v3", "--devices", "1024", "--bytes", "64MiB",
                    "--group-stride", "2", "--concurrent", "2")
    (row,) = data["results"]
    assert row["algorithm"] == "dimension_ordered" and row["bottleneck"] == "ici"
    assert data["system"]["slice_dims"] == [32, 32]


def test_text_table(capsys):
    assert main(["collective", "broadcast", "--hardware", "tpu-v4", "--devices", "64", "--bytes", "1GiB"]) == 0
    out = capsys.readouterr().out
    assert "algbw" in out and "busbw" in out and "Avg bus bandwidth" in out
    assert "(B)" in out and "(elements)" in out


@pytest.mark.parametrize("argv,fragment", [
    (["all_to_al", "--hardware", "h100-sxm", "--devices", "8"], "field 'op': unknown collective 'all_to_al' "
     "(allowed: all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send_recv)"),
    (["all_reduce", "--hardware", "h100-sxm", "--devices", "8", "--bytes", "12QB"], "field '--bytes'"),
    (["all_reduce", "--hardware", "h100-sxm", "--devices", "8", "--sweep", "8GiB:8B"], "field '--sweep'"),
    (["all_reduce", "--hardware", "tpu-v3", "--devices", "4096"], "field '--devices'"),
    (["all_reduce", "--hardware", "h100-sxm", "--devices", "512", "--group-stride", "4"], "field '--group-stride'"),
    (["all_reduce", "--hardware", "h100-sxm", "--devices", "0"], "field '--devices'"),
    (["all_reduce", "--hardware", "tpu-v99", "--devices", "8"], "unknown hardware profile 'tpu-v99'"),
    (["all_reduce", "--hardware", "h100-sxm", "--devices", "64", "--nccl-algo", "collnetchain"],
     "field '--nccl-algo': NCCL_ALGO 'collnetchain' leaves no algorithm"),
])
def test_bad_input_exits_2(capsys, argv, fragment):
    assert main(["collective", *argv]) == 2
    assert fragment in capsys.readouterr().err


def test_default_model_is_topology_aware():
    assert isinstance(default_model(load_hardware("tpu-v3")), TopologyModel)


def test_switch_scenarios_price_collectives_on_the_torus(switch_c, switch_base):
    """Switch-C on a full v3 pod: dispatch/combine all-to-all at the bisection bound of the 32x32 torus;
    gradient all-reduce on bidirectional rings over both axes."""
    for scenario in (switch_c, switch_base):
        e = estimate(scenario)
        comm = e.communication
        assert comm["ep_all_to_all_dispatch"]["algorithm"] == "dimension_ordered"
        assert comm["ep_all_to_all_dispatch"]["bottleneck"] == "ici"
        assert comm["dp_all_reduce"]["algorithm"] == "torus_rings"
    c = estimate(switch_c).communication["ep_all_to_all_dispatch"]
    per_call = c["time_s"] / c["calls_per_step"]
    chip_bytes = 2 * c["size_bytes"]  # two cores per chip
    bound = 32 * chip_bytes / (8 * 1e11)
    # plus 32 hops of 1 us and the runtime's 3.5 us per collective (tpu-v3.toml collective_overhead_us)
    assert bound + 3.5e-6 <= per_call <= bound + 3.5e-6 + 33e-6


def test_nccl_collnet_flag(capsys):
    """--nccl-collnet = NCCL_COLLNET_ENABLE=1: on the SHARP fabric of h100-sxm the forced CollNetChain runs."""
    data = run_json(capsys, "all_reduce", "--hardware", "h100-sxm", "--devices", "64", "--bytes", "8GiB",
                    "--nccl-collnet", "--nccl-algo", "collnetchain")
    assert data["nccl_collnet"] is True and data["results"][0]["algorithm"] == "collnetchain/Simple"
    off = run_json(capsys, "all_reduce", "--hardware", "h100-sxm", "--devices", "64", "--bytes", "8GiB")
    assert off["nccl_collnet"] is False and not off["results"][0]["algorithm"].startswith("collnet")
