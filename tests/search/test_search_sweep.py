"""What-if sweeps: keys and values, the grid, CSV/JSON columns, worker processes and a Dask cluster."""

from __future__ import annotations

import csv
import dataclasses
import io
import os

import pytest

from moesim.errors import SpecError
from moesim.search import search
from moesim.search.overrides import ALIASES, apply_point
from moesim.search.sweep import LAYOUT_COLUMNS, failed_status, grid, parse_vary, run_sweep, to_csv
from moesim.search.workers import map_items
from search_fixtures import DENSE, ODD_MOE, TINY_MOE, build

SMALL = dict(devices=8, batch=16, seq_len=512)


def test_aliases_resolve_and_parse():
    assert set(ALIASES) == {"experts", "capacity_factor", "hardware", "devices", "seq_len", "batch"}
    assert parse_vary("experts=8,16").values == (8, 16)
    assert parse_vary("capacity_factor=1, 1.25,none").values == (1.0, 1.25, None)
    assert parse_vary("training.overlap_grad_reduce=true,no").values == (True, False)
    assert parse_vary("hardware=h100-sxm,a100-80gb").values == ("h100-sxm", "a100-80gb")


@pytest.mark.parametrize("text, message", [
    ("expert=8", "cannot vary 'expert'"),
    ("training.micro_batches=2", "search.max_micro_batches"),
    ("experts=8.5", "is not an integer"),
    ("seq_len=", "needs at least one value"),
    ("experts", "is not KEY=V1,V2"),
    ("training.sequence_parallel=maybe", "is not true or false"),
])
def test_bad_keys_and_values_name_the_key(text, message):
    with pytest.raises(SpecError, match=message) as err:
        parse_vary(text)
    assert "--vary" in str(err.value)
    if "cannot vary" in message:
        assert "allowed: experts, capacity_factor, hardware, devices, seq_len, batch" in str(err.value)


def test_invalid_point_values_fail_before_any_search():
    scenario = build(TINY_MOE, **SMALL)
    with pytest.raises(SpecError, match="--vary experts"):
        run_sweep(scenario, [parse_vary("experts=16,0")], workers=1)
    with pytest.raises(SpecError, match="unknown hardware profile"):
        run_sweep(scenario, [parse_vary("hardware=h100-sxm,no-such-gpu")], workers=1)
    with pytest.raises(SpecError, match="devices"):
        run_sweep(scenario, [parse_vary("devices=8,4096")], workers=1)
    with pytest.raises(SpecError, match="no capacity factor"):
        run_sweep(build(DENSE, **SMALL), [parse_vary("capacity_factor=1.0")], workers=1)
    with pytest.raises(SpecError, match="varied twice"):
        grid([parse_vary("experts=8"), parse_vary("model.moe.num_experts=16")])


def test_grid_is_the_cartesian_product_last_key_fastest():
    points = grid([parse_vary("experts=8,16"), parse_vary("seq_len=256,512,1024")])
    assert len(points) == 6
    assert points[0] == {"experts": 8, "seq_len": 256} and points[1] == {"experts": 8, "seq_len": 512}
    assert points[-1] == {"experts": 16, "seq_len": 1024}


def test_apply_point_changes_the_named_fields():
    scenario = build(TINY_MOE, **SMALL)
    point = {"experts": 8, "capacity_factor": 2.0, "batch": 32, "seq_len": 256, "training.zero_stage": 1,
             "training.recompute": "full", "devices": 4, "hardware": "a100-80gb",
             "hardware.price_per_device_hour_usd": 2.0, "model.attention.num_kv_heads": 8}
    s = apply_point(scenario, point)
    assert s.model.moe.num_experts == 8 and s.training.capacity_factor == 2.0
    assert (s.training.global_batch_sequences, s.training.seq_len, s.devices) == (32, 256, 4)
    assert s.hardware.name == "a100-80gb" and s.hardware.price_per_device_hour_usd == 2.0
    assert s.model.attention.num_kv_heads == 8
    assert s.search.zero_stages == (1,) and s.search.recompute_modes == ("full",)
    assert scenario.model.moe.num_experts == 16  # the original is untouched
    priced_first = apply_point(scenario, {"hardware.price_per_device_hour_usd": 2.0, "hardware": "a100-80gb"})
    assert priced_first.hardware.price_per_device_hour_usd == 2.0  # the profile loads before its fields


def test_varying_the_precision_recipe_applies_its_keys(tmp_path):
    """Session 20 (newuser3): `--vary training.precision_recipe=bf16,deepseek-v3-fp8` on deepseek-v3-h800 gave the
    same step time and memory at both points: the recipe's keys are filled in when the file is read, so replacing
    the name alone changed nothing. A point now equals the scenario file with that recipe named (the keys the file
    sets beside the recipe win, as when it is read)."""
    from pathlib import Path

    from moesim.estimate import estimate
    from moesim.specs.load import load_scenario

    text = (Path(__file__).parents[2] / "scenarios" / "deepseek-v3-h800.toml").read_text()
    assert 'precision_recipe = "deepseek-v3-fp8"' in text
    bf16_file = tmp_path / "dsv3-bf16.toml"
    bf16_file.write_text(text.replace('precision_recipe = "deepseek-v3-fp8"', 'precision_recipe = "bf16"'))
    fp8, bf16 = load_scenario("deepseek-v3-h800"), load_scenario(str(bf16_file))
    assert apply_point(fp8, {"training.precision_recipe": "bf16"}).training == bf16.training
    assert apply_point(bf16, {"training.precision_recipe": "deepseek-v3-fp8"}).training == fp8.training
    assert apply_point(fp8, {"training.precision_recipe": "deepseek-v3-fp8"}).training == fp8.training
    assert (estimate(apply_point(fp8, {"training.precision_recipe": "bf16"})).step_time_s
            == estimate(bf16).step_time_s != estimate(fp8).step_time_s)
    # a key set over the recipe (here FP8 dispatch under bf16, whose own is BF16) stays when the recipe changes
    kept = dataclasses.replace(bf16, training=dataclasses.replace(bf16.training, dispatch_dtype="float8"))
    # (current scaling: the scenario recomputes layernorm, which Megatron-LM refuses under delayed scaling)
    changed = apply_point(kept, {"training.precision_recipe": "te-current-scaling"}).training
    assert changed.dispatch_dtype == "float8" and changed.gemm_scaling == "per_tensor_current"
    # a precision key varied beside the recipe wins, whichever is named first
    both = apply_point(fp8, {"training.dispatch_dtype": "float8", "training.precision_recipe": "bf16"}).training
    assert both.dispatch_dtype == "float8" and both.gemm_dtype == "bfloat16"
    with pytest.raises(SpecError, match="unknown precision recipe") as err:
        apply_point(fp8, {"training.precision_recipe": "fp4"})
    assert "--vary training.precision_recipe" in str(err.value) and "bf16" in str(err.value)


def test_sweep_point_is_the_search_best():
    scenario = build(TINY_MOE, **SMALL)
    sweep = run_sweep(scenario, [parse_vary("experts=8,16")], workers=1)
    for point in sweep["points"]:
        best = search(apply_point(scenario, point["point"]))
        assert point["status"] == "ok"
        assert point["layout"] == best.layout_dict(0)
        assert point["step_time_s"] == best.step_time_s[0]
        assert point["considered"] == best.considered and point["ranked"] == best.ranked


def test_csv_and_json_columns():
    scenario = build(TINY_MOE, **SMALL)  # h100-sxm carries a list price now: take it away (unpriced unit below)
    scenario = dataclasses.replace(scenario, hardware=dataclasses.replace(scenario.hardware,
                                                                          price_per_device_hour_usd=None))
    sweep = run_sweep(scenario, [parse_vary("experts=8,16"), parse_vary("capacity_factor=1,2")],
                      objective="cost", workers=1)
    rows = list(csv.DictReader(io.StringIO(to_csv(sweep))))
    assert len(rows) == 4
    header = list(rows[0])
    assert header[:2] == ["experts", "training.capacity_factor"]  # renamed: a result column is capacity_factor
    for column in ("status", "objective", "objective_unit", "objective_value", "step_time_s",
                   "memory_bytes_per_device", "mfu", "bottleneck", "considered", "ranked", *LAYOUT_COLUMNS):
        assert column in header
    assert rows[0]["objective_unit"] == "device-s/step"
    assert float(rows[0]["objective_value"]) == pytest.approx(8 * float(rows[0]["step_time_s"]))
    assert [r["training.capacity_factor"] for r in rows] == ["1.0", "2.0", "1.0", "2.0"]
    assert [r["capacity_factor"] for r in rows] == ["1.0", "2.0", "1.0", "2.0"]  # the best layout's, pinned
    assert set(sweep) == {"scenario", "objective", "vary", "points"}
    assert sweep["vary"] == {"experts": [8, 16], "capacity_factor": [1.0, 2.0]}


def test_point_where_no_layout_is_valid_does_not_blame_memory():
    """Session 20 (newuser3): `--vary training.pipeline_schedule=...,interleaved` on deepseek-v3-h800 (61 layers: no
    pp·vp divides them) said "no valid layout fits in memory" though no layout was rejected for memory."""
    sweep = run_sweep(build(ODD_MOE, devices=12, pipeline_schedule="interleaved"),
                      [parse_vary("model.decoder_layers=3,4")], workers=1)
    none, ok = sweep["points"]
    assert none["ranked"] == 0 and none["rejected"]["out_of_memory"] == 0
    assert none["rejected"]["interleaved_layers_not_divisible_by_pp_vp"] > 0
    assert "memory" not in none["status"] and "breaks a rule" in none["status"]
    assert ok["status"] == "ok"


def test_point_where_nothing_fits():
    sweep = run_sweep(build(ODD_MOE, devices=12), [parse_vary("hardware.memory_reserved_bytes=0,79.9e9")],
                      workers=1)
    ok, full = sweep["points"]
    assert ok["status"] == "ok" and full["status"] == "no valid layout fits in memory"
    rows = list(csv.DictReader(io.StringIO(to_csv(sweep))))
    assert rows[1]["step_time_s"] == "" and rows[1]["dp"] == ""


def test_worker_processes_give_the_serial_answer():
    scenario = build(TINY_MOE, **SMALL)
    axes = [parse_vary("experts=8,16"), parse_vary("seq_len=256,512")]
    serial = run_sweep(scenario, axes, workers=1)
    parallel = run_sweep(scenario, axes, workers=2)
    assert parallel == serial


def test_worker_processes_are_gone_when_the_sweep_returns():
    """What a worker keeps for its next search (the enumeration, the memoised costs) lives no longer than the sweep:
    map_items shuts its pool down and the workers exit, so the system has their memory back (session 18 ncclleft:
    why no worker calls release_kept after its last point)."""
    pids = map_items(os.getpid, [(), (), ()], workers=2)
    assert os.getpid() not in pids
    for pid in set(pids):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_dask_local_cluster_gives_the_serial_answer():
    distributed = pytest.importorskip("distributed")
    scenario = build(TINY_MOE, **SMALL)
    axes = [parse_vary("experts=8,16")]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                                  silence_logs=40) as cluster:
        on_dask = run_sweep(scenario, axes, dask_address=cluster.scheduler_address)
    assert on_dask == run_sweep(scenario, axes, workers=1)


def test_dask_unreachable_scheduler_is_a_spec_error():
    pytest.importorskip("distributed")
    with pytest.raises(SpecError, match="--dask"):
        run_sweep(build(TINY_MOE, **SMALL), [parse_vary("experts=8")], dask_address="tcp://127.0.0.1:9",
                  connect_timeout_s=0.5)


def test_capacity_floor_note_is_the_rule_against_its_floor():
    from moesim.capacity import capacity_floor_note

    # Switch-C: 512-token routing groups over 2048 experts, floor 2 (T5X min_expert_capacity): floor(512 CF / 2048)
    said = capacity_floor_note(512, 2048, 1, 2.0, "switch", 2)
    assert said.startswith("capacity factor 2 gives 0 slots per expert per routing group of 512 tokens")
    assert "below min_expert_capacity 2: 2 are used" in said and "from capacity factor 8 on" in said
    assert capacity_floor_note(512, 2048, 1, 8.0, "switch", 2) is None  # floor(512 x 8 / 2048) = 2: the rule's own
    assert capacity_floor_note(512, 2048, 1, 2.0, "switch", 0) is None  # no floor
    assert capacity_floor_note(512, 2048, 1, None, "dropless", 2) is None
    # megatron: ceil(t k CF / E) reaches 2 once t k CF / E is above 1
    assert "above capacity factor 1" in capacity_floor_note(64, 64, 1, 0.5, "megatron", 2)


def test_sweep_says_when_the_capacity_floor_overrides_the_swept_factor(capsys):
    """Session 20 (whyrank): Switch-C's capacity-factor sweep moved nothing (the 2-slot floor binds at every factor
    tried) and no output said so (newuser3's log)."""
    from moesim.cli import main
    from moesim.specs.load import load_scenario

    sweep = run_sweep(load_scenario("switch-c-2048-tpu-v3"), [parse_vary("capacity_factor=2.0,8.0")], workers=1)
    low, high = sweep["points"]
    # session 24 (newuser7): each stack's routing group, the decoder's 114 tokens too
    assert [n[:52] for n in low["notes"]] == ["expert capacity floor (encoder): capacity factor 2 g",
                                              "expert capacity floor (decoder): capacity factor 2 g"]
    assert low["notes"][0].startswith("expert capacity floor (encoder): capacity factor 2 gives 0")
    # floor(512 x 8 / 2048) = 2 slots: the factor sets the encoder's capacity; the decoder's floor(114 x 8 / 2048) = 0
    assert [n[:32] for n in high["notes"]] == ["expert capacity floor (decoder):"]
    assert main(["sweep", "switch-c-2048-tpu-v3", "--vary", "capacity_factor=2.0", "--workers", "1", "-q"]) == 0
    assert f"note at capacity_factor=2.0: {low['notes'][0]}" in capsys.readouterr().out


def test_sweep_varies_the_search_lists():
    """Session 20 (whyrank): `sweep` could not vary search.context_parallel or search.pipeline_schedules (newuser3:
    a context-parallel what-if needed a scenario file). A value is one entry, several joined by '+'."""
    assert parse_vary("search.context_parallel=1,2+4").values == ((1,), (2, 4))
    assert parse_vary("search.pipeline_schedules=1f1b,zb-h1+dualpipe").values == (("1f1b",), ("zb-h1", "dualpipe"))
    assert parse_vary("search.cp_comms=p2p+a2a").values == (("p2p", "a2a"),)
    scenario = build(ODD_MOE, devices=12)
    assert apply_point(scenario, {"search.context_parallel": (1, 2)}).search.context_parallel == (1, 2)
    sweep = run_sweep(scenario, [parse_vary("search.pipeline_schedules=1f1b,zb-h1")], workers=1)
    for point in sweep["points"]:
        best = search(apply_point(scenario, point["point"]))
        assert point["layout"] == best.layout_dict(0) and point["step_time_s"] == best.step_time_s[0]
        assert point["layout"]["pipeline_schedule"] == point["point"]["search.pipeline_schedules"][0]
    rows = list(csv.DictReader(io.StringIO(to_csv(run_sweep(scenario, [parse_vary("search.context_parallel=1+2")],
                                                            workers=1)))))
    assert rows[0]["search.context_parallel"] == "1+2"


@pytest.mark.parametrize("text, message", [
    ("search.pipeline_schedules=1f1b,zigzag", "'zigzag' is not allowed"),
    ("search.cp_comms=ring", "'ring' is not allowed"),
    ("search.context_parallel=two", "'two' is not an integer"),
    ("search.context_parallel=1++2", "has an empty entry"),
    ("search.orders=tp-ep-dp-pp", "cannot vary 'search.orders'"),
])
def test_bad_search_list_values_name_the_key_and_the_allowed(text, message):
    with pytest.raises(SpecError, match=message) as err:
        parse_vary(text)
    assert f"--vary {text.partition('=')[0]}" in str(err.value) or "cannot vary" in message
    if "zigzag" in text:
        assert "allowed: 1f1b, gpipe, interleaved" in str(err.value)
    if "cannot vary" in message:
        assert "search.context_parallel" in str(err.value)  # the allowed keys name the lists


def test_out_of_range_search_list_value_fails_before_any_search():
    with pytest.raises(SpecError, match="--vary search.context_parallel"):
        run_sweep(build(ODD_MOE, devices=12), [parse_vary("search.context_parallel=1,0")], workers=1)


def test_a_bad_router_impl_names_the_vary_flag():
    """review20: an unknown `model.moe.router_impl` was caught only where the layer was priced, the error naming
    moesim/ops/mcore_moe.toml instead of the flag."""
    with pytest.raises(SpecError, match="'megatron-core-main' is not allowed") as err:
        parse_vary("model.moe.router_impl=megatron-core-main")
    assert err.value.field == "--vary model.moe.router_impl" and "megatron-core-23e00ed0" in str(err.value)
    assert parse_vary("model.moe.router_impl=megatron-core-23e00ed0")


def test_a_failed_point_names_the_rule_and_megatrons_refusals():
    """A point that ranks nothing says which rule took most layouts, and how many Megatron-LM refuses (enumerate
    REASONS megatron_*), so a sweep over training.sequence_parallel = false says why tp > 1 is gone."""
    rules = {"heads_not_divisible_by_tp": 5, "megatron_moe_tp_needs_sequence_parallel": 40,
             "megatron_flex_dispatcher_needs_etp_ep_above_1": 0, "out_of_memory": 0}
    status = failed_status(rules)
    assert status.startswith("no valid layout: every one breaks a rule (most often "
                             "megatron_moe_tp_needs_sequence_parallel, counts in rejected)")
    assert status.endswith("; Megatron-LM refuses megatron_moe_tp_needs_sequence_parallel (40) before pricing")
    assert failed_status(rules | {"out_of_memory": 3}) == ("no valid layout fits in memory; Megatron-LM refuses "
                                                          "megatron_moe_tp_needs_sequence_parallel (40) before pricing")
    assert failed_status({"out_of_memory": 3, "megatron_moe_tp_needs_sequence_parallel": 0}) == \
        "no valid layout fits in memory"
