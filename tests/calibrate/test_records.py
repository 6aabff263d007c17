"""Strict reading of validate/ JSONL records and the seeded held-out split."""

import json

import pytest

from moesim.calibrate.records import (
    TOTAL, holdout_score, read_jsonl, read_measurements, record_key, split_holdout,
)
from moesim.errors import SpecError

from calibrate_synth import collective_record_dict, layer_record_dict, true_cpu_profile, write_jsonl


def _write(tmp_path, records, name="r.jsonl"):
    return write_jsonl(tmp_path / name, records)


def test_layer_record_fields(tmp_path):
    rec = layer_record_dict(tokens=512, d_model=64, d_ff=256, experts_per_rank=4, top_k=2, key="k1",
                            phase_s={"router": 1e-3, "dispatch_permute": 2e-4, "dispatch_a2a": 5e-4,
                                     "expert_compute": 4e-3, "combine_a2a": 5e-4, "combine_unpermute": 2e-4,
                                     "backward": 9e-3, "grad_sync": 1e-3, "layer_unsynced": 0.0155})
    m = read_jsonl(_write(tmp_path, [rec]))
    (r,) = m.layers
    assert (r.key, r.world_size, r.ep_size, r.dp_size, r.num_experts) == ("k1", 2, 2, 1, 8)
    assert r.dispatch_bytes == 512 * 2 * 64 * 4 and r.sent_rows == 1024 and r.received_rows == 1024
    assert r.expert_flops_forward == 4 * 1024 * 64 * 256
    assert r.measured_s[TOTAL] == 0.0155  # the free-running layer, not the instrumented one
    assert r.measured_s["backward"] == 9e-3 and r.spread["backward"] == pytest.approx(0.01)
    assert r.source.endswith("r.jsonl:1")


def test_instrumented_layer_is_the_fallback_total(tmp_path):
    rec = layer_record_dict()
    del rec["phases"]["layer_unsynced"]
    (r,) = read_jsonl(_write(tmp_path, [rec])).layers
    assert r.measured_s[TOTAL] == rec["phases"]["layer"]["median_s"]


def test_router_parts_are_read_when_present(tmp_path):
    split, whole = layer_record_dict(name="split"), layer_record_dict(name="whole", tokens=512)
    for part in ("router_matmul", "router_gating"):
        del whole["phases"][part]
    a, b = read_jsonl(_write(tmp_path, [split, whole])).layers
    assert a.measured_s["router_matmul"] == a.measured_s["router_gating"] == 1e-3
    assert "router_matmul" not in b.measured_s and "router_gating" not in b.spread
    assert b.measured_s["router"] == 1e-3


def test_collective_records_become_points(tmp_path):
    rec = collective_record_dict(true_cpu_profile(), "all_to_all_single", sizes=[1024, 4096])
    m = read_jsonl(_write(tmp_path, [rec]))
    assert [(p.op, p.size_bytes, p.group_size) for p in m.collectives] == [("all_to_all", 1024, 2),
                                                                           ("all_to_all", 4096, 2)]


def test_error_records_are_skipped_and_counted(tmp_path):
    bad = {**layer_record_dict(name="x"), "status": "error", "error": "peer died"}
    m = read_jsonl(_write(tmp_path, [layer_record_dict(), bad]))
    assert len(m.layers) == 1 and len(m.skipped) == 1 and ":2: status 'error'" in m.skipped[0]


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["bytes"].pop("dispatch_bytes_per_rank_max"),
     r":2: field 'bytes.dispatch_bytes_per_rank_max': required field is missing"),
    (lambda r: r.update(schema_version=2), r":2: field 'schema_version': record schema version 2 is not supported"),
    (lambda r: r.update(kind="gemm"),
     r":2: field 'kind': unknown record kind 'gemm' \(allowed: switch_layer, collective\)"),
    (lambda r: r["phases"]["router"].update(median_s=-1.0), r":2: field 'phases.router.median_s': must be > 0"),
    (lambda r: r["phases"]["router"].update(median_s="fast"), r"field 'phases.router.median_s': expected float"),
    (lambda r: r["derived"].update(element_bytes=2), r"element_bytes 2 does not match dtype float32"),
    (lambda r: r["config"].update(dtype="int8"), r"unknown dtype 'int8'"),
    (lambda r: r["derived"].update(ep_size=4), r"ep_size 4 x dp_size 1 is not world_size 2"),
])
def test_bad_records_name_file_line_and_field(tmp_path, mutate, message):
    bad = layer_record_dict(name="bad")
    mutate(bad)
    path = _write(tmp_path, [layer_record_dict(), bad])
    with pytest.raises(SpecError, match=message) as info:
        read_jsonl(path)
    assert str(path) in str(info.value)


def test_partial_line_is_skipped_with_a_warning_naming_the_line(tmp_path):
    # issue #14: a line cut by a crash is skipped (with a warning naming file and line), not fatal
    path = tmp_path / "cut.jsonl"
    path.write_text(json.dumps(layer_record_dict()) + "\n" + '{"schema_version": 1, "kind": "switch_la')
    with pytest.warns(UserWarning, match=rf"{path}:2: skipped a line cut short"):
        m = read_jsonl(path)
    assert len(m.layers) == 1 and m.skipped == (f"{path}:2: skipped a line cut short (a write did not finish)",)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(SpecError, match="no usable records"):
        read_jsonl(empty)
    with pytest.raises(SpecError, match="no such file"):
        read_measurements([tmp_path / "missing.jsonl"])


def test_duplicate_configuration_across_files(tmp_path):
    a = _write(tmp_path, [layer_record_dict(key="same")], "a.jsonl")
    b = _write(tmp_path, [layer_record_dict(key="same")], "b.jsonl")
    with pytest.raises(SpecError, match=r"key same appears more than once .*a.jsonl:1, .*b.jsonl:1"):
        read_measurements([a, b])


def test_record_key_without_key_is_stable():
    rec = layer_record_dict()
    assert record_key(rec) == record_key(json.loads(json.dumps(rec)))
    assert record_key(rec) != record_key(layer_record_dict(tokens=2048))
    assert len(record_key(rec)) == 16


def test_holdout_split_is_seeded_and_order_free():
    keys = [f"{i:016x}" for i in range(20)]
    fit, held = split_holdout(keys, 0.3, seed=0)
    assert len(held) == 6 and set(fit) | set(held) == set(keys) and not set(fit) & set(held)
    assert split_holdout(list(reversed(keys)), 0.3, seed=0)[1] == list(reversed(held))
    assert set(split_holdout(keys, 0.3, seed=1)[1]) != set(held)
    assert all(0 <= holdout_score(k, 0) < 1 for k in keys)
    assert split_holdout(keys[:2], 0.01, seed=0)[1] and split_holdout(keys[:2], 0.99, seed=0)[0]
    assert split_holdout(keys, 0.0, seed=0) == (keys, [])
    with pytest.raises(SpecError, match="holdout fraction"):
        split_holdout(keys, 1.0, seed=0)
