"""Autograd's gradient sums in the backward operator list (moesim/ops/base.py grad_accumulate, moesim/ops/layer.py):
one add per gradient after the first of a tensor several operators read, on GPUs; none on TPUs (session 20,
gradadds)."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.ops.base import GRAD_ACCUMULATE, memory
from moesim.ops.breakdown import term_builder
from moesim.ops.price import op_efficiency, op_time_s
from moesim.specs.load import load_scenario


def _class_ops(name: str, moe: bool):
    sc = load_scenario(name)
    layout = sc.resolve(source="layout")
    builder, wl, b = term_builder(sc, layout)
    cls = next(c for c in wl.classes if c.is_moe == moe and not c.mtp)
    terms = builder.build(cls)
    tokens = float(np.asarray(b).reshape(-1)[0]) * cls.tokens
    if sc.training.sequence_parallel:
        tokens /= layout.tp
    return sc, terms, tokens


def _adds(terms):
    return [op for op in terms.ops_bwd if op.name == GRAD_ACCUMULATE]


@pytest.mark.parametrize("name, moe, kernels", [
    ("llama3-70b-l12-b200-tp8", False, 2),  # the two residuals' inputs (GQA's one qkv GEMM, fc1 one GEMM)
    ("mixtral-8x7b-h100", True, 3),  # + the MoE norm's output read by the router and the dispatch
    ("deepseek-v3-l4-b200-ep8", True, 5),  # + the shared experts' read of it, + MLA's two down-projections
    ("deepseek-v3-h800", True, 5),
])
def test_each_layer_kind_sums_its_gradients_once_per_extra_reader(name, moe, kernels):
    sc, terms, tokens = _class_ops(name, moe)
    adds = _adds(terms)
    assert not [op for op in terms.ops_fwd if op.name == GRAD_ACCUMULATE]
    assert sum(float(op.kernels) for op in adds) == kernels
    q = sc.training.bytes_of("activation")
    # by hand: 2 reads + 1 write of [t_n, h] at the activation dtype per add
    per_add = 3 * tokens * sc.model.d_model * q
    assert sum(float(np.asarray(op.bytes).reshape(-1)[0]) for op in adds) == pytest.approx(kernels * per_add,
                                                                                              rel=1e-12)
    # priced at the profile's HBM bandwidth and default memory efficiency (what the forward residual add reads:
    # no table of their own), one launch each
    hw = sc.hardware
    residual = next(op for op in terms.ops_fwd if op.name == "attn_residual")
    eff = float(np.asarray(op_efficiency(residual, hw)).reshape(-1)[0])
    assert all(np.allclose(op_efficiency(op, hw), eff) for op in adds)
    expected = kernels * (per_add / (hw.chip.hbm_bw_bytes_per_s * eff) + hw.efficiency.kernel_launch_s)
    got = sum(float(np.asarray(op_time_s(op, hw)).reshape(-1)[0]) for op in adds)
    assert got == pytest.approx(expected, rel=1e-12)


def test_the_moe_norms_sums_run_before_its_backward():
    _, terms, _ = _class_ops("deepseek-v3-l4-b200-ep8", True)
    names = [op.name for op in terms.ops_bwd]
    i = names.index("moe_norm")
    assert names[i - 1] == GRAD_ACCUMULATE and terms.ops_bwd[i - 1].kernels == 2.0  # router, dispatch, shared


@pytest.mark.parametrize("name", ["switch-c-2048-tpu-v3", "glam-64b-64e-tpu-v4"])
def test_an_xla_program_fuses_the_sums(name):
    _, terms, _ = _class_ops(name, True)
    assert not _adds(terms)


def test_a_memory_op_without_the_meta_has_no_sum():
    from moesim.ops.base import backward

    op = memory("attention", "x", "bfloat16", 100.0)
    assert [o.name for o in backward(op)] == ["x"]
