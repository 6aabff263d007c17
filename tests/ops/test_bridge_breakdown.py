"""Qwen3-30B-A3B's B200 Megatron-Bridge row broken down per MoE layer-micro-batch (docs/operators.md, "Qwen3-30B-A3B's
rows per layer-micro-batch"): the breakdown is the estimate's own operator list, the table positions and variants
follow from it, the source facts the reading rests on are where it says, and the generated block is current.
Validation only: nothing here is fitted, and no error is asserted to be small."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from moesim.errors import SpecError
from moesim.models import bridge_breakdown as bb
from moesim.models.bridge_perf import load_rows, row_scenario
from moesim.specs.model_file import load_model

CASE = "26.02-b200-qwen3-30b-fp8mx-ep8"
BRIDGE = Path("/work/.mirror/NVIDIA-NeMo+Megatron-Bridge/repo")  # bare clones of the sources, where at hand
MEGATRON = Path("/work/.mirror/NVIDIA+Megatron-LM/repo")
TE = Path("/work/.mirror/NVIDIA+TransformerEngine/repo")


@pytest.fixture(scope="module")
def bd() -> bb.Breakdown:
    return bb.row_breakdown(CASE)


def test_the_breakdown_is_the_estimates_compute(bd):
    """The MoE layers' operators times layer-micro-batches plus the head and embedding make the estimate's compute."""
    assert bd.layers * bd.micro_batches == 48 * 64
    total = bd.moe_layer_s * bd.layer_micro_batches + bd.other_step_s
    assert total == pytest.approx(bd.parts_s["compute"], rel=1e-9)
    assert bd.moesim_step_s == pytest.approx(sum(bd.parts_s.values()), rel=1e-9)


def test_each_local_expert_runs_every_ranks_rows(bd):
    """4096 tokens · top-8 / 128 experts from each of EP 8 ranks: 2048 rows per local expert, 16 local experts."""
    row = next(r for r in load_rows() if r.case == CASE)
    moe = load_model(row.model).moe
    rows = row.mbs * row.seq_len * moe.top_k * row.ep // moe.num_experts
    fc1 = next(r for r in bd.moe_ops if r.name == "expert_fc1" and r.pass_ == "fwd")
    assert (rows, moe.num_experts // row.ep) == (2048, 16)
    assert fc1.shape[:2] == (16.0, 2048.0)


def test_every_grouped_gemm_reads_the_nearest_measured_shape_outside_the_table(bd):
    assert len(bd.table_points) == 6
    for t in bd.table_points:
        assert "groups" in t.below and not t.above
        assert t.nearest_shape[0] == 20.0
        assert t.efficiency == pytest.approx(t.nearest_efficiency, abs=1e-9)  # moesim.ops.tables' outside rule


def test_the_pieces_and_variants_follow_from_the_list(bd):
    launch_s = row_scenario(next(r for r in load_rows() if r.case == CASE), "none", ()).hardware \
        .efficiency.kernel_launch_s
    for p in bd.pieces:
        assert p.step_s * p.factor_to_close - p.step_s == pytest.approx(bd.gap_s, rel=1e-9)
    grouped = [r for r in bd.moe_ops if r.kind == "grouped_gemm"]
    assert bd.variants["one launch per expert"] == pytest.approx(len(grouped) * 15 * launch_s)
    hw = row_scenario(next(r for r in load_rows() if r.case == CASE), "none", ()).hardware
    extra = sum(bb.per_expert_gemms_s(r, hw) - r.time_s for r in grouped)
    assert bd.variants["per-expert GEMMs at their own shapes"] == pytest.approx(extra)
    assert 0 < bd.variants["per-expert GEMMs at their own shapes"] < bd.gap_s / bd.layer_micro_batches
    assert bd.host_bound_layer_s > bd.moe_layer_s  # host-bound needs more host than GPU time per layer


def test_layer_paces_cover_the_models_rows():
    paces = bb.layer_paces()
    assert {p.case for p in paces} == {r.case for r in load_rows() if r.model == "qwen3-30b-a3b"}
    b200 = next(p for p in paces if p.case == CASE)
    assert b200.layer_micro_batches == 3072 and b200.published_layer_s > b200.moesim_layer_s


def test_bad_input_is_a_clear_error(bd):
    with pytest.raises(SpecError, match="case"):
        bb.row_breakdown("no-such-row")
    hw = row_scenario(next(r for r in load_rows() if r.case == CASE), "none", ()).hardware
    gemm = next(r for r in bd.moe_ops if r.kind == "gemm")
    with pytest.raises(SpecError, match="grouped"):
        bb.table_point(gemm, hw)


def _show(repo: Path, spec: str) -> str:
    return subprocess.run(["git", f"--git-dir={repo}", "show", spec], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.skipif(not BRIDGE.is_dir(), reason="the Megatron-Bridge source is not at hand")
def test_the_rows_recipe_as_read():
    lines = _show(BRIDGE, "df0289c1:scripts/performance/configs/qwen/qwen3_llm_pretrain.py").splitlines()
    assert lines[270].startswith("def qwen3_30b_a3b_pretrain_config_b200")
    assert lines[288].strip() == 'cfg.model.moe_token_dispatcher_type = "alltoall"'
    assert lines[35].strip() == "cfg.model.moe_router_fusion = True"
    assert lines[43].strip().startswith("cfg.model.moe_router_force_load_balancing = True")


@pytest.mark.skipif(not (MEGATRON.is_dir() and TE.is_dir()), reason="the Megatron-LM / TE sources are not at hand")
def test_the_host_wait_and_the_per_expert_gemms_as_read():
    dispatcher = _show(MEGATRON, "23e00ed0:megatron/core/transformer/moe/token_dispatcher.py").splitlines()
    assert dispatcher[522].strip() == 'self._maybe_update_cuda_sync_point("before_ep_alltoall")'
    assert dispatcher[622].strip() == '"before_ep_alltoall", self.tokens_per_expert'
    assert dispatcher[857].strip() == "self.d2h_event.synchronize()"
    gemm = _show(TE, "v2.11:transformer_engine/common/gemm/cublaslt_gemm.cu").splitlines()
    assert gemm[947].startswith("void multi_stream_cublas_gemm")
    assert gemm[1048].strip() == "if (!(is_hopper && use_cutlass)) {"
    assert "nvte_multi_tensor_gemm" in _show(TE, "v2.11:transformer_engine/pytorch/csrc/extensions/gemm.cpp") \
        .splitlines()[561]


def test_the_generated_block_is_current(load_script, doc_block):
    script = load_script("scripts/bridge_breakdown.py")
    block = doc_block("bridge_breakdown", "docs/operators.md")
    assert block == "\n\n".join(bb.render_block(bb.row_breakdown(c), bb.layer_paces()) for c in bb.CASES).strip()
    assert script.main(["--check"]) == 0
