"""What a TE FP8 column-parallel layer saves for its backward under sequence parallelism (session 25, fp8mem).

TE v2.14 (f031cf87) module/layernorm_linear.py: l.201-204 the norm-output quantizer rowwise only where the recipe
gathers rowwise only (Float8Quantizer / Float8CurrentScalingQuantizer: tensor/float8_tensor.py l.220-224, l.462-466),
rowwise + columnwise under MXFP8; l.416-426 before saving, MXFP8 / blockwise drop the rowwise copy (columnwise only);
l.462-472 `ctx.save_for_backward` holds inputmat (the norm's BF16 input) and ln_out, the local sequence shard (the
gathered ln_out_total is not saved; the wgrad re-gathers the shard, l.669-688). module/linear.py l.182-199 and
l.385-403 likewise for a plain Linear (the shared experts' fc1). So each saved GEMM input is one FP8 copy of the shard,
1 + s bytes an element (s: 0 per tensor, 1/32 MXFP8), tokens · h / t of them: moesim's q_gemm_input, split by t under
SP (memory._split)."""

from __future__ import annotations

import numpy as np
import pytest

from moesim import memory as mem
from moesim.estimate.selective import stored_inputs
from moesim.specs.load import load_scenario
from moesim.specs.training import TrainingSpec

RECIPES = [("te-delayed-scaling", 1.0), ("te-current-scaling", 1.0), ("mxfp8-blackwell", 1.0 + 1 / 32)]


@pytest.fixture(scope="module")
def mixtral():
    return load_scenario("mixtral-8x7b-h100")


@pytest.mark.parametrize("recipe, q", RECIPES)
def test_saved_gemm_input_is_one_fp8_copy(mixtral, recipe, q):
    """The qkv / fc1 / shared fc1 input kept for wgrad: one FP8 copy with its scales (not BF16, not two copies)."""
    training = TrainingSpec.with_recipe(global_batch_sequences=8, seq_len=4096, micro_batches=1,
                                        precision_recipe=recipe, sequence_parallel=True)
    kept = stored_inputs(mixtral.model, training, np.array([0]), training.element_bytes("activation_storage"))
    assert float(np.ravel(kept.q_gemm_input)[0]) == pytest.approx(q)
    assert float(np.ravel(kept.q_router_input)[0]) == 2.0  # the router's own BF16 input (torch Linear)


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_saved_input_is_the_shard_under_sp(tp):
    """Under SP the saved input is tokens·h/t elements (the local shard), without SP the whole tokens·h."""
    b, n, h, a, q = 1, 4096, 4096, 32, 1.0 + 1 / 32
    for sp, div in ((True, tp), (False, 1)):
        att = [mem.attention_activation_bytes(b, n, n, h, a, tp, sp, 1, 2.0, q_input=qi, mask=0.0, kernel="flash")
               for qi in (q, 0.0)]
        assert att[0] - att[1] == pytest.approx(q * n * b * h / div)
        mlp = [mem.mlp_activation_bytes(b, n, h, 4 * h, tp, sp, "swiglu", 2.0, q_input=qi, mask=0.0)
               for qi in (q, 0.0)]
        assert mlp[0] - mlp[1] == pytest.approx(q * n * b * h / div)
