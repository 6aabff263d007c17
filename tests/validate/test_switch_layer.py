"""The distributed layer equals the single-process reference (gloo, CPU, float32 ~1e-5).

One spawn per world size runs every case of :func:`validate.selfcheck.default_cases`: top-1 and
top-2, with and without drops, ep x dp layouts (world 4: ep 4 x dp 1 and ep 2 x dp 2), one and
several experts per rank, the megatron capacity rule and a bfloat16 case (looser tolerance).
Compared per rank: outputs, aux loss, input gradients, router gradients, local expert gradients,
and the number of kept (token, expert) assignments.
"""

import pytest

from validate.selfcheck import failures, spawn_check


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2, 4])
def test_distributed_layer_matches_reference(world, tmp_path):
    results = spawn_check(world, str(tmp_path))
    assert len({r["rank"] for r in results}) == world
    problems = [m for r in results for m in failures(r)]
    assert not problems, "\n".join(problems)
    names = {r["name"] for r in results}
    assert any("top1" in n for n in names) and any("top2" in n for n in names)
    dropped = {r["name"]: r["assignments_total"] - r["kept_total"] for r in results}
    assert any(v > 0 for v in dropped.values()) and any(v == 0 for v in dropped.values())
    fp32 = [r for r in results if r["config"]["dtype"] == "float32"]
    assert fp32 and all(r["rel_tol"] <= 1e-5 for r in fp32)
    if world > 1:  # experts really live on other ranks: the expert grads came through all-to-all
        assert any(r["config"]["ep_size"] == world for r in results)
