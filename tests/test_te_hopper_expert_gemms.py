"""TransformerEngine's GroupedLinear on Hopper is a loop of cuBLAS GEMMs (session 24, hopperggemm): under Megatron-LM +
TE on a Hopper profile each local expert's fc1 / fc2 is one GEMM at its own shape from the profile's `gemm` tables,
launched once per expert (TE v2.14 common/gemm/cublaslt_gemm.cu multi_stream_cublas_gemm l.969-1010); DeepSeek's own
framework (DeepGEMM) and Blackwell (cuBLASLt's grouped GEMM) keep one grouped kernel (moesim.ops.layer.expert_gemm)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moesim.des import SimOptions, simulate
from moesim.estimate.terms import TermBuilder
from moesim.megatron_rules import te_expert_gemm_loop
from moesim.ops.price import op_efficiency, op_time_s
from moesim.ops.tables import select_table, table_efficiency
from moesim.specs.layout import Layout
from moesim.specs.load import load_hardware, load_scenario
from moesim.specs.training import TrainingSpec
from moesim.workload import build_workload

KEEP = ("global_batch_sequences", "seq_len", "micro_batches", "zero_stage", "recompute")
EXPERT_GEMMS = ("expert_fc1", "expert_fc2")


def expert_ops(sc, ep: int) -> list:
    """The routed experts' GEMM operators (forward, dgrad, wgrad) of one MoE layer at tp 1 and the given ep."""
    one = lambda v: np.array([float(v)])  # noqa: E731
    tb = TermBuilder(sc.model, sc.hardware, sc.training, one(1), one(1), one(ep), one(1), np.array([0]), one(np.nan))
    terms = tb.build(build_workload(sc.model, 4096, 0).classes[0])
    return [op for op in terms.ops_fwd + terms.ops_bwd if op.name in EXPERT_GEMMS]


@pytest.fixture(scope="module")
def mixtral():
    return load_scenario("mixtral-8x7b-h100")


def on(sc, hardware: str | None = None, **training):
    hw = load_hardware(hardware) if hardware else sc.hardware
    return dataclasses.replace(sc, hardware=hw, training=dataclasses.replace(sc.training, **training))


def test_only_megatron_te_on_hopper_loops():
    """The gate: Megatron-LM + TE on a Hopper GPU profile; not framework "none", not Blackwell, not a TPU."""
    assert [load_hardware(n).gpu_arch for n in ("h100-sxm", "h800", "h200", "b200")] == [
        "hopper", "hopper", "hopper", "blackwell"]
    assert te_expert_gemm_loop("megatron-te", "gpu", "hopper")
    assert not te_expert_gemm_loop("none", "gpu", "hopper")
    assert not te_expert_gemm_loop("megatron-te", "gpu", "blackwell")
    assert not te_expert_gemm_loop("megatron-te", "tpu", "")


@pytest.mark.parametrize("ep", [2, 8])
def test_one_gemm_per_local_expert_on_hopper(mixtral, ep):
    """Mixtral on h100-sxm (Megatron-LM + TE): fc1 and fc2 each a gemm of E/ep kernels at one expert's shape, in every
    pass; with framework "none" or on b200 one grouped kernel each, as before."""
    local = 8 / ep
    ops = expert_ops(mixtral, ep)
    assert len(ops) == 6
    rows = 4096 * mixtral.model.moe.top_k / local
    for op in ops:
        assert op.kind == "gemm"
        assert float(np.ravel(op.kernels)[0]) == local
        assert float(np.ravel(op.launch_count)[0]) == local
        assert rows in [float(np.ravel(x)[0]) for x in op.shape]
    for sc in (on(mixtral, framework="none"), on(mixtral, "b200")):
        grouped = expert_ops(sc, ep)
        assert len(grouped) == 6 and all(op.kind == "grouped_gemm" and op.kernels == 1.0 for op in grouped)


def test_each_expert_gemm_priced_at_its_own_shape(mixtral):
    """A looped BF16 GEMM's time is E/ep × (one expert's FLOPs at the BF16 `gemm` table's efficiency at its shape,
    plus one launch): the table of a single GEMM, not the grouped one."""
    hw = mixtral.hardware
    launch_s = hw.efficiency.kernel_launch_s
    for op in expert_ops(mixtral, 2):
        assert op.dtype == "bfloat16"
        shape = tuple(float(np.ravel(x)[0]) for x in op.shape)
        table = select_table(hw.efficiency.op_tables, "gemm", "bfloat16", op.pass_, (op.name,))
        eff = float(np.ravel(table_efficiency(table, shape))[0])
        one = 2 * np.prod(shape) / (hw.chip.peak_for("bfloat16") * eff) + launch_s
        assert float(np.ravel(op_time_s(op, hw))[0]) == pytest.approx(4 * one)


def test_per_tensor_fp8_reads_the_bf16_table_at_the_fp8_peak(mixtral):
    """Under FP8 current scaling (a per-tensor cuBLAS GEMM, which no profile table measures: h100-sxm's FP8 `gemm`
    table is DeepGEMM's blockwise kernel) each expert GEMM reaches the BF16 table's fraction, of the FP8 peak."""
    base = {k: getattr(mixtral.training, k) for k in KEEP}
    sc = dataclasses.replace(mixtral, training=TrainingSpec.with_recipe(**base, precision_recipe="te-current-scaling"))
    hw = sc.hardware
    ops = expert_ops(sc, 2)
    assert ops and all(op.dtype == "float8" for op in ops)
    for op in ops:
        shape = tuple(float(np.ravel(x)[0]) for x in op.shape)
        bf16 = select_table(hw.efficiency.op_tables, "gemm", "bfloat16", op.pass_, (op.name,))
        deepgemm = select_table(hw.efficiency.op_tables, "gemm", "float8", "fwd", (op.name,))
        assert deepgemm is not None  # the table a plain FP8 `gemm` would read instead
        eff = float(np.ravel(op_efficiency(op, hw))[0])
        assert eff == pytest.approx(float(np.ravel(table_efficiency(bf16, shape))[0]))
        assert eff != pytest.approx(float(np.ravel(table_efficiency(deepgemm, shape))[0]))


def test_the_simulator_agrees_with_the_loop():
    """No pipeline, uniform routing, no contention: both engines read the same expert GEMMs (within 2 %)."""
    sc = load_scenario("mixtral-8x7b-h100", devices=16)
    result = simulate(sc, Layout(dp=16, ep=8), SimOptions(contention=False, expected_loads=True, trace=False))
    assert result.step_times_s[0] == pytest.approx(result.analytical_step_time_s, rel=0.02)
