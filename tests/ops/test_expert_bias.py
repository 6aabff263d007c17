"""A biased expert FC2's bias as Megatron-Core adds it (session 23, gptossgap): without TE's op fuser, TEGroupedMLP
builds FC2 with skip_bias_add=True and `_apply_bias` adds `b * p` per local expert in FP32, then cats and casts
(Megatron-LM core_v0.17.0 megatron/core/transformer/moe/experts.py l.214, l.251-267, l.398). moesim prices it as the
`expert_fc2_bias` memory operator after expert_fc2, in the one operator list both engines read; only a model whose
experts have biases (GPT-OSS-120B among the shipped ones) on a GPU megatron-te run without `te_op_fuser` has it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from moesim.collectives.select import model_for
from moesim.des.costs import build_costs
from moesim.estimate import estimate
from moesim.models import bridge_perf as bp
from moesim.ops.base import backward
from moesim.ops import layer
from moesim.ops.layer import LayerOps
from moesim.ops.price import op_time_s
from moesim.specs.load import load_model, load_scenario

GPT_OSS_L6 = Path(__file__).parents[1] / "des" / "data" / "gpt-oss-l6-h100.toml"
BF16 = 2  # bytes of the expert output (and of the bias)
FWD_BYTES = layer.EXPERT_BIAS_FWD_FP32_BYTES + layer.EXPERT_BIAS_FWD_Q_PASSES * BF16
BWD_BYTES = layer.EXPERT_BIAS_BWD_FP32_BYTES + layer.EXPERT_BIAS_BWD_Q_PASSES * BF16


def _with(sc, **training):
    return dataclasses.replace(sc, training=dataclasses.replace(sc.training, **training))


def _experts(sc, ep=8.0, slots=16384.0):
    return LayerOps(sc.model, sc.training, 1.0, 1.0, ep, 1.0).experts(slots)


def test_the_bias_follows_fc2_with_the_loops_bytes_and_kernels():
    """Per element of the expert output (slots x h): forward 4 (b·p) + 10 (t + bp) + 8 (cat) + 6 (cast to BF16) = 28
    bytes in 2·g + 2 kernels over g local experts; backward 40 bytes in 6·g + 3 kernels."""
    sc = load_scenario(str(GPT_OSS_L6))
    assert sc.model.ffn_bias and not sc.training.te_op_fuser
    ops = _experts(sc)
    assert [op.name for op in ops] == ["expert_fc1", "expert_activation", "expert_fc2", "expert_fc2_bias"]
    bias = ops[-1]
    g = sc.model.moe.num_experts / 8
    h = sc.model.d_model
    assert (FWD_BYTES, BWD_BYTES) == (28, 40)
    assert bias.kind == "memory" and bias.part == "expert_ffn" and bias.dtype == "float32"
    assert bias.bytes == pytest.approx(28 * 16384 * h) and bias.kernels == 2 * g + 2
    (bwd,) = backward(bias)
    assert bwd.bytes == pytest.approx(40 * 16384 * h) and bwd.kernels == 6 * g + 3


@pytest.mark.parametrize("change", [{"te_op_fuser": True}, {"framework": "none"}])
def test_no_bias_loop_under_tes_op_fuser_or_outside_megatron(change):
    sc = _with(load_scenario(str(GPT_OSS_L6)), **change)
    assert [op.name for op in _experts(sc)] == ["expert_fc1", "expert_activation", "expert_fc2"]


def test_experts_without_biases_have_no_bias_operator():
    sc = load_scenario("mixtral-8x7b-h100")
    assert not sc.model.ffn_bias
    assert "expert_fc2_bias" not in [op.name for op in _experts(sc, ep=1.0)]
    biased = dataclasses.replace(sc, model=dataclasses.replace(sc.model, ffn_bias=True))
    assert "expert_fc2_bias" in [op.name for op in _experts(biased, ep=1.0)]


def test_both_engines_price_it_and_the_op_fuser_takes_it_away():
    """The estimate's step and the simulator's expert time (des/costs.py expert_ffn_s, the same operator list) both
    grow by the operator's time; with te_op_fuser they fall back to the list without it."""
    sc = load_scenario(str(GPT_OSS_L6))
    fused = _with(sc, te_op_fuser=True)
    layout = sc.resolve()
    est, est_fused = estimate(sc), estimate(fused)
    assert est.step_time_s > est_fused.step_time_s
    costs = build_costs(sc, layout, sc.training, model_for(sc), est.optimizer_time_s)
    costs_fused = build_costs(fused, layout, fused.training, model_for(fused), est_fused.optimizer_time_s)
    slots = 4096.0 * 4
    bias = _experts(sc, ep=float(layout.ep), slots=slots)[-1]
    fwd = float(np.ravel(op_time_s(bias, sc.hardware))[0])
    bwd = float(np.ravel(op_time_s(backward(bias)[0], sc.hardware))[0])
    assert costs.expert_ffn_s(slots, False) - costs_fused.expert_ffn_s(slots, False) == pytest.approx(fwd)
    assert costs.expert_ffn_s(slots, True) - costs_fused.expert_ffn_s(slots, True) == pytest.approx(bwd)


def test_the_bridge_rows_carry_the_recipes_op_fuser():
    """The six GB200 / GB300 MXFP8 GPT-OSS-120B rows of 26.06-26.08 run TE's op fuser (63b08b397
    cutedsl_fused_grouped_mlp; 381d0b825 / 4ab94dfad _apply_gpt_oss_120b_full_iter_fp8mx_configs): no bias loop; the
    others do not, and price it."""
    rows = [r for r in bp.load_newer_rows() if r.model == "gpt-oss-120b"]
    fused = {r.case for r in rows if r.te_op_fuser == "true"}
    assert fused == {f"{rel}-{sys}-gpt-oss-120b-mxfp8-ep{ep}" for rel in ("26.06", "26.06.01", "26.08")
                     for sys, ep in (("gb300", 16), ("gb200", 64))}
    assert all(r.te_op_fuser == "" for r in rows if r.case not in fused)
    assert all(r.te_op_fuser == "" for r in bp.load_rows() + bp.load_newer_rows() if r.model != "gpt-oss-120b")
    for case, on in (("26.06-gb300-gpt-oss-120b-mxfp8-ep16", True), ("26.06-b300-gpt-oss-120b-mxfp8-ep8", False)):
        row = next(r for r in rows if r.case == case)
        assert bp.row_scenario(row, "none", ()).training.te_op_fuser is on
    assert load_model("gpt-oss-120b").ffn_bias


def _megatron_apply_bias(out, biases, probs, counts):
    """The expression of Megatron-LM core_v0.17.0 moe/experts.py l.256-267 (TEGroupedMLP._apply_bias), written here:
    per local expert t + b * p over its rows, concatenated, cast back to the output's dtype."""
    import torch

    return torch.cat([t + b * p for t, b, p in zip(torch.split(out, counts), biases, torch.split(probs, counts))]
                     ).view(out.shape).to(out.dtype)


@pytest.mark.parametrize("local_experts", [4, 16])
def test_the_operator_counts_the_aten_ops_pytorch_dispatches(local_experts):
    """PyTorch's own dispatch of the loop, forward and autograd backward, on CPU (the same aten ops a GPU launches as
    kernels): every op that is not a view is one kernel, and its tensors' bytes (inputs read, output written) sum to
    FWD_BYTES / BWD_BYTES per element of the BF16 expert output, less the [h] and [rows, 1] terms
    of the bias and the probability, which vanish as the output grows (within 1 % here)."""
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.kernels, self.nbytes = 0, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not any(r.alias_info for r in func._schema.returns):  # views launch nothing
                flat = [*args, *(kwargs or {}).values(), *(out if isinstance(out, (list, tuple)) else [out])]
                tensors = [x for a in flat for x in (a if isinstance(a, (list, tuple)) else [a])
                           if isinstance(x, torch.Tensor)]
                self.kernels += 1
                self.nbytes += sum(x.numel() * x.element_size() for x in tensors)
            return out

    rows, h, g = 512, 1024, local_experts
    out = torch.randn(g * rows, h, dtype=torch.bfloat16, requires_grad=True)
    biases = [torch.randn(h, dtype=torch.bfloat16, requires_grad=True) for _ in range(g)]
    probs = torch.rand(g * rows, 1, dtype=torch.float32, requires_grad=True)
    with Count() as fwd:
        y = _megatron_apply_bias(out, biases, probs, [rows] * g)
    grad = torch.randn_like(y)
    with Count() as bwd:
        y.backward(grad)
    elements = g * rows * h
    assert (fwd.kernels, bwd.kernels) == (2 * g + 2, 6 * g + 3)
    assert fwd.nbytes / elements == pytest.approx(FWD_BYTES, rel=0.01)
    assert bwd.nbytes / elements == pytest.approx(BWD_BYTES, rel=0.01)
