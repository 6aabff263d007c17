"""The split of specs/load.py, estimate/core.py and collectives/topo_model.py (and session 10's of collectives/nccl.py
and calibrate/api.py, session 11's of calibrate/design.py, specs/hardware.py and again collectives/topo_model.py) kept
every name importable from where it was imported before."""

from __future__ import annotations

import importlib

import pytest

# Names other modules, tests, scripts, benchmarks and docs import from the two old modules (grep of the repo
# before the split), each with the module that now defines it.
MOVED = {
    "moesim.specs.load": {
        "load_hardware": "moesim.specs.hardware_file", "hardware_from_table": "moesim.specs.hardware_file",
        "load_model": "moesim.specs.model_file", "model_from_table": "moesim.specs.model_file",
        "load_scenario": "moesim.specs.scenario_file", "scenario_from_table": "moesim.specs.scenario_file",
        "training_from_table": "moesim.specs.scenario_file", "search_from_table": "moesim.specs.scenario_file",
        "scenario_moe": "moesim.specs.scenario_file", "SCENARIO_MOE_KEYS": "moesim.specs.scenario_file",
        "read_data_file": "moesim.specs.data_files", "resolve_ref": "moesim.specs.data_files",
        "SCHEMA_VERSION": "moesim.specs.data_files", "DATA_SUFFIXES": "moesim.specs.data_files",
    },
    "moesim.estimate.core": {
        "Evaluation": "moesim.estimate.evaluation", "CommTotal": "moesim.estimate.evaluation",
        "PER_MB_AXES": "moesim.estimate.evaluation", "_order_free_rows": "moesim.estimate.folds",
        "_schedule_free_rows": "moesim.estimate.folds",
        # session 24 (tidy24): what each device holds and a pipeline layout's chunks split out
        "device_holdings": "moesim.estimate.holdings", "fitting_rows": "moesim.estimate.holdings",
        "nothing_fits": "moesim.estimate.holdings", "no_layout": "moesim.estimate.layout_chunks",
        "layout_chunk_weights": "moesim.estimate.layout_chunks", "layout_bubble": "moesim.estimate.layout_chunks",
        "grad_sync": "moesim.estimate.grad_sync", "model_flops_and_drops": "moesim.estimate.expert_drops",
        "capacity_by_stack": "moesim.estimate.expert_drops",
        "exposed_sync_s": "moesim.estimate.grad_sync", "stage_comms": "moesim.estimate.stage_comms",
        "BACKWARD_ONLY_CALLS": "moesim.estimate.stage_comms",
    },
    "moesim.estimate.terms": {  # session 24 (tidy24): the per-class terms' dataclasses split out
        "CommCall": "moesim.estimate.class_terms", "ClassTerms": "moesim.estimate.class_terms",
        "MOE_PARTS": "moesim.estimate.class_terms", "expand": "moesim.estimate.class_terms",
    },
    "moesim.des.schedule": {  # session 24 (tidy24): the program's pieces, ZB-V's inputs and two order readers split out
        **{name: "moesim.des.program" for name in (
            "STREAMS", "COMPUTE", "COLLECTIVE", "SEND", "TO_EXPERTS", "FROM_EXPERTS", "EXPERT", "GATHER", "STAGE_NAMES",
            "COMM_NAMES", "FORWARD_SUFFIX", "Op", "StageProgram")},
        "zbv_piece_times": "moesim.des.zbv_times", "zbv_stage_times": "moesim.des.zbv_times",
        "zbv_inputs": "moesim.des.zbv_times", "grad_passes_per_piece": "moesim.des.orders",
        "pipeline_order": "moesim.des.orders",
    },
    "moesim.ops.layer": {  # session 24 (tidy24): the blocks' small operators and the output head split out
        **{name: "moesim.ops.block_ops" for name in (
            "READ_WRITE", "FP32_BYTES", "SINK_FLOPS_PER_ROW", "gate_factor", "self_attention_mask", "mask_params",
            "sink_flops", "expert_bias_op", "_norm", "_residual", "_fanned_out", "_activation", "_ffn_ops",
            "_no_weights", "EXPERT_BIAS_FWD_FP32_BYTES", "EXPERT_BIAS_FWD_Q_PASSES", "EXPERT_BIAS_BWD_FP32_BYTES",
            "EXPERT_BIAS_BWD_Q_PASSES")},
        "logits_ops": "moesim.ops.output_head",
    },
    "moesim.models.bridge_perf": {  # session 25 (tidy25): the rows' reader and the generated blocks split out
        **{name: "moesim.models.bridge_rows" for name in (
            "DATA", "DATA_NEWER", "PRECISION_RECIPE", "HARDWARE_LABEL", "HARDWARE", "MODEL_LABEL", "DISPATCH_BACKEND",
            "A2A_OVERLAP", "RECIPE_FLAG", "OPTIONAL_FIELDS", "SM_COUNT_DISPATCHERS", "BridgeRow", "FIELDS",
            "load_rows", "load_newer_rows")},
        **{name: "moesim.models.bridge_render" for name in (
            "RELEASES", "OLDER_RELEASES", "FLOP_SPREAD", "PARTS", "flop_outlier", "not_written", "_same_release",
            "render_block", "_same_run", "release_spread", "render_newer_block")},
    },
    "moesim.collectives.dispatch": {  # session 25 (tidy25): deepep.toml's and hybridep.toml's readers split out
        name: "moesim.collectives.deepep_data" for name in (
            "_CONSTANTS", "_HYBRIDEP", "RECORD_KERNELS", "_RECORD_KEYS", "_KEYS", "_constants", "_hybridep_rates",
            "hybridep_kernel_sms", "hybridep_published_ranks", "hybridep_rate_bytes_per_s", "record_bytes",
            "forward_rate_bytes_per_s", "normal_kernel_sms", "rdma_fraction")
    },
    "moesim.specs.layout": {  # session 25 (tidy25): the layout's keys and its one-line text form split out
        name: "moesim.specs.layout_line" for name in (
            "STAGE_KEYS", "LAYOUT_KEYS", "OPTION_KEYS", "DROPLESS", "LAYOUT_LINE_KEYS", "parse_layout_text",
            "option_problem", "_check_option", "parse_layout_value", "split_layout_options", "layout_arg")
    },
    "moesim.collectives.topo_model": {  # session 8: the algorithm menu split out
        "_PASSES": "moesim.collectives.algorithm_menu", "_P2P_OPS": "moesim.collectives.algorithm_menu",
        "_HALVING_NAME": "moesim.collectives.algorithm_menu", "_algorithm_names": "moesim.collectives.algorithm_menu",
        "_algorithm_terms": "moesim.collectives.algorithm_menu", "_peer_bytes": "moesim.collectives.algorithm_menu",
        # session 11 (tidy): the size-free layout and its per-tier facts split out
        "_Layout": "moesim.collectives.tier_layout", "_nic_tier": "moesim.collectives.tier_layout",
        "_p2p_line": "moesim.collectives.tier_layout",
    },
    "moesim.collectives.nccl": {  # session 10 (tidy): the tuning loader and send/recv's channels split out
        "tuning": "moesim.collectives.nccl_tuning", "p2p_channels": "moesim.collectives.nccl_p2p",
        "p2p_bw_cap": "moesim.collectives.nccl_p2p", "p2p_net_peer_channels": "moesim.collectives.nccl_p2p",
        "p2p_net_bw_cap": "moesim.collectives.nccl_p2p",
    },
    "moesim.calibrate.api": {  # session 10 (tidy): the written profile's checks and the text output split out
        "PriorGuard": "moesim.calibrate.profile_checks", "LayerGap": "moesim.calibrate.profile_checks",
        "CONSISTENCY_RTOL": "moesim.calibrate.profile_checks", "prior_guard": "moesim.calibrate.profile_checks",
        "kept_prior_table": "moesim.calibrate.profile_checks", "layer_gap": "moesim.calibrate.profile_checks",
        "consistency_gaps": "moesim.calibrate.profile_checks", "header_lines": "moesim.calibrate.calibration_text",
        "render_calibration": "moesim.calibrate.calibration_text", "SKIPPED_SHOWN": "moesim.calibrate.calibration_text",
    },
    "moesim.calibrate.design": {  # session 11 (tidy): the observations and their knots split out
        "Observation": "moesim.calibrate.observations", "choose_knots": "moesim.calibrate.observations",
        "MAX_KNOTS": "moesim.calibrate.observations", "MIN_KNOT_GAP": "moesim.calibrate.observations",
    },
    "moesim.specs.hardware": {  # session 11 (tidy): the efficiency tables and the dtypes split out
        "EfficiencyTable": "moesim.specs.efficiency", "OpTable": "moesim.specs.efficiency",
        "ComputeEfficiency": "moesim.specs.efficiency", "OP_KINDS": "moesim.specs.efficiency",
        "OP_PASSES": "moesim.specs.efficiency", "OP_DIMS": "moesim.specs.efficiency",
        "OP_STATUS": "moesim.specs.efficiency", "DTYPES": "moesim.specs.dtypes", "DTYPE_BYTES": "moesim.specs.dtypes",
    },
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_moved_name_is_the_same_object_from_the_old_module(old):
    module = importlib.import_module(old)
    for name, new in MOVED[old].items():
        defined = importlib.import_module(new)
        assert getattr(module, name) is getattr(defined, name.lstrip("_")), (old, name, new)


def test_evaluate_stays_in_core_and_the_package_exports_it():
    core = importlib.import_module("moesim.estimate.core")
    estimate = importlib.import_module("moesim.estimate")
    assert core.evaluate.__module__ == "moesim.estimate.core" and estimate.evaluate is core.evaluate
    assert estimate.Evaluation is core.Evaluation


def test_the_split_modules_are_under_the_line_and_the_moved_classes_are_defined_where_they_now_live():
    """Session 11 (tidy): the house rule's ~400 lines, and the classes' own module (a pure move, not a copy)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "moesim"
    for rel in ("calibrate/design.py", "calibrate/observations.py", "specs/hardware.py", "specs/efficiency.py",
                "specs/dtypes.py", "collectives/topo_model.py", "collectives/tier_layout.py",
                "estimate/holdings.py", "estimate/layout_chunks.py", "estimate/grad_sync.py",
                "estimate/expert_drops.py", "estimate/stage_comms.py", "estimate/class_terms.py",
                "estimate/amax_comms.py", "estimate/shared_tp_comms.py", "estimate/zbv_paths.py", "des/program.py",
                "des/layer_tp_calls.py", "des/zbv_times.py", "des/orders.py", "ops/layer.py", "ops/block_ops.py",
                "ops/output_head.py",
                "specs/param_overlap.py", "des/param_sync.py", "models/bridge_overlap.py", "models/bridge_perf.py",
                "models/bridge_rows.py", "models/bridge_render.py", "collectives/dispatch.py",
                "collectives/deepep_data.py", "collectives/call_model.py", "specs/layout.py", "specs/layout_line.py"):
        assert len((root / rel).read_text().splitlines()) <= 400, rel
    efficiency = importlib.import_module("moesim.specs.efficiency")
    for name in ("EfficiencyTable", "OpTable", "ComputeEfficiency"):
        assert getattr(efficiency, name).__module__ == "moesim.specs.efficiency", name
    assert importlib.import_module("moesim.calibrate.observations").Observation.__module__ == \
        "moesim.calibrate.observations"
