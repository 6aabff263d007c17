"""End-to-end harness runs at world size 2 via torch.multiprocessing (file:// rendezvous, no ports).

Checks the JSONL record structure, resume (finished keys are skipped, a line cut short by a crash
is tolerated), timing sanity (positive, layer >= every phase), world-size skipping, and that a peer
that stops answering ends the run with a clear error after --timeout-s.
"""

import json
import time
from dataclasses import asdict

import pytest
import torch.multiprocessing as mp

from validate.config import load_sweep
from validate.records import append_record, config_key, read_records
from validate.run import launch_local

LAYER_A = """
[defaults]
world_size = 2
warmup = 1
repeats = 3
tokens_per_rank = 64
d_model = 16
d_ff = 32

[[layer]]
name = "a"
experts_per_rank = 2
capacity_factor = 1.25
"""

LAYER_B = """
[[layer]]
name = "b-drops"
experts_per_rank = 1
top_k = 2
capacity_factor = 0.5

[[layer]]
name = "needs-4"
world_size = 4
experts_per_rank = 1
"""

COLLECTIVE = """
[[collective]]
name = "c"
ops = ["all_to_all_single", "all_reduce", "all_gather", "reduce_scatter"]
sizes_bytes = [1024, 65536]
warmup = 1
repeats = 3
"""

LAYER_KEYS = {"schema_version", "kind", "key", "created_utc", "env", "config", "derived", "phases",
              "bytes", "tokens", "dropped_token_fraction", "expert_flops_per_rank_forward",
              "expert_flops_per_rank_forward_mean", "peak_memory_bytes", "peak_memory_kind",
              "status", "wall_s"}
PHASES = {"router", "router_matmul", "router_gating", "dispatch_permute", "dispatch_a2a", "expert_compute",
          "combine_a2a", "combine_unpermute", "backward", "layer", "layer_unsynced", "grad_sync"}
STATS = {"median_s", "p10_s", "p90_s", "min_s", "max_s", "mean_s", "n"}
ENV = {"torch_version", "backend", "device", "device_name", "world_size", "hostname", "num_threads"}


def _run(tmp_path, sweep_text, out, extra=()):
    sweep = tmp_path / f"sweep{len(list(tmp_path.glob('sweep*')))}.toml"
    sweep.write_text(sweep_text)
    launch_local(2, ["--sweep", str(sweep), "--out", str(out), "--timeout-s", "60", *extra],
                 str(tmp_path))


def _check_layer_record(rec):
    assert LAYER_KEYS <= rec.keys()
    assert rec["schema_version"] == 1 and rec["kind"] == "switch_layer" and rec["status"] == "ok"
    assert ENV <= rec["env"].keys()
    assert rec["env"]["world_size"] == 2 and rec["env"]["backend"] == "gloo"
    assert rec["env"]["num_threads"] == 1
    assert rec["phases"].keys() == PHASES
    for name, st in rec["phases"].items():
        assert st.keys() == STATS, name
        assert 0 < st["min_s"] <= st["p10_s"] <= st["median_s"] <= st["p90_s"] <= st["max_s"], name
        assert st["n"] == rec["config"]["repeats"]
    ph = rec["phases"]
    inner = PHASES - {"layer", "layer_unsynced", "grad_sync"}
    for key in ("median_s", "min_s", "max_s", "p10_s", "p90_s"):
        assert ph["layer"][key] >= max(ph[p][key] for p in inner)
        # per repeat, router = router_matmul + router_gating on each rank (then the max over ranks), so
        # every order statistic of router is at least that of either part
        assert ph["router"][key] >= max(ph["router_matmul"][key], ph["router_gating"][key])
    assert ph["router"]["max_s"] <= ph["router_matmul"]["max_s"] + ph["router_gating"]["max_s"] * (1 + 1e-12)
    b = rec["bytes"]
    d, elem = rec["config"]["d_model"], rec["derived"]["element_bytes"]
    assert 0 < b["dispatch_bytes_per_rank_mean"] <= b["dispatch_bytes_per_rank_max"]
    assert b["dispatch_bytes_per_rank_max"] % (d * elem) == 0
    assert b["dispatch_remote_bytes_per_rank_max"] <= b["dispatch_bytes_per_rank_max"]
    assert b["dispatch_bytes_per_rank_max"] <= b["dispatch_bytes_capacity_padded_per_rank"]
    t = rec["tokens"]
    assert t["assignments_total"] == 2 * rec["derived"]["assignments_per_rank"]
    assert rec["dropped_token_fraction"] == pytest.approx(
        1 - t["kept_assignments_total"] / t["assignments_total"])
    assert rec["expert_flops_per_rank_forward"] == 4 * t["received_rows_per_rank_max"] * d * rec["config"]["d_ff"]
    assert rec["peak_memory_bytes"] > 0 and rec["peak_memory_kind"] == "cpu_ru_maxrss_process_peak"


@pytest.mark.slow
def test_end_to_end_resume_and_structure(tmp_path):
    out = tmp_path / "results.jsonl"
    _run(tmp_path, LAYER_A + COLLECTIVE, out)
    first, bad = read_records(out)
    assert bad == 0
    assert [r["kind"] for r in first] == ["switch_layer"] + ["collective"] * 4
    _check_layer_record(first[0])
    assert first[0]["dropped_token_fraction"] < 0.5
    for rec in first[1:]:
        assert rec["status"] == "ok" and rec["schema_version"] == 1
        assert [p["bytes"] for p in rec["points"]] == [1024, 65536]
        for p in rec["points"]:
            assert 0 < p["min_s"] <= p["median_s"] <= p["max_s"]
            assert p["algbw_bytes_per_s"] == pytest.approx(p["bytes"] / p["median_s"])
        assert rec["fit"] is not None and {"alpha_s", "beta_s_per_byte"} <= rec["fit"].keys()
    assert {r["config"]["op"] for r in first[1:]} == {"all_to_all_single", "all_reduce",
                                                      "all_gather", "reduce_scatter"}

    # a writer killed mid-line leaves a partial record: resume must ignore it and start a new line
    with out.open("a") as f:
        f.write('{"schema_version": 1, "kind": "switch_la')
    _run(tmp_path, LAYER_A + LAYER_B + COLLECTIVE, out)
    second, bad = read_records(out)
    assert bad == 1
    added = second[len(first):]
    assert [r["config"]["name"] for r in added] == ["b-drops"]   # a + collectives resumed, needs-4 skipped
    _check_layer_record(added[0])
    assert added[0]["dropped_token_fraction"] > 0.2
    assert len({r["key"] for r in second}) == len(second)

    # a third run has nothing to do
    _run(tmp_path, LAYER_A + LAYER_B + COLLECTIVE, out)
    assert len(read_records(out)[0]) == len(second)
    for line in out.read_text().splitlines()[-1:]:
        json.loads(line)


@pytest.mark.slow
def test_error_records_are_retried_unless_skip_errored(tmp_path):
    out = tmp_path / "results.jsonl"
    cfg = load_sweep_text(tmp_path, LAYER_A).layers[0]
    key = config_key("switch_layer", asdict(cfg), 2, "gloo")
    append_record(out, {"schema_version": 1, "kind": "switch_layer", "key": key,
                        "config": asdict(cfg), "status": "error", "error": "earlier failure"})
    _run(tmp_path, LAYER_A, out, ["--skip-errored"])
    assert [r["status"] for r in read_records(out)[0]] == ["error"]
    _run(tmp_path, LAYER_A, out)
    assert [r["status"] for r in read_records(out)[0]] == ["error", "ok"]


def load_sweep_text(tmp_path, text):
    path = tmp_path / "parse.toml"
    path.write_text(text)
    return load_sweep(path)


@pytest.mark.slow
def test_hung_peer_ends_with_clear_error_after_timeout(tmp_path):
    out = tmp_path / "results.jsonl"
    mine = tmp_path / "mine.toml"
    mine.write_text(LAYER_A)
    other = tmp_path / "other.toml"   # rank 1 has nothing to run, then idles without collectives
    other.write_text(LAYER_A.replace("world_size = 2", "world_size = 3"))
    argv = lambda p: ["--sweep", str(p), "--out", str(out), "--timeout-s", "2"]  # noqa: E731
    start = time.monotonic()
    with pytest.raises(mp.ProcessRaisedException) as info:
        launch_local(2, [argv(mine), argv(other)], str(tmp_path), linger_s=[0.0, 20.0])
    assert time.monotonic() - start < 15
    text = str(info.value)
    assert "HarnessError" in text and "config 'a'" in text and "--timeout-s=2" in text
    recs = read_records(out)[0]
    assert [r["status"] for r in recs] == ["error"] and "--timeout-s=2" in recs[0]["error"]
