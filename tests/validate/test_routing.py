"""Single-process checks of routing: capacity dropping, aux loss, fp32 router, reference agreement."""

import pytest
import torch

from validate import data
from validate.config import LayerConfig
from validate.reference import full_weights, reference_group
from validate.routing import gate_logits, load_balancing_loss, route, router_logits, router_probs


def test_position_dropping_keeps_first_tokens_per_expert():
    # 6 tokens, 2 experts; router sends tokens 0,1,2,4 to expert 0 and 3,5 to expert 1
    x = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    w = torch.eye(2) * 5
    r = route(x, w, top_k=1, capacity=2, normalize_gates=False, aux_loss_coef=0.01)
    kept = sorted(zip(r.expert_index.tolist(), r.token_index.tolist()))
    assert kept == [(0, 0), (0, 1), (1, 3), (1, 5)]     # tokens 2 and 4 overflow expert 0
    assert r.num_kept == 4 and r.num_assignments == 6
    assert r.expert_counts.tolist() == [2, 2]
    assert r.expert_index.tolist() == sorted(r.expert_index.tolist())  # grouped by expert


def test_top2_second_choices_queue_behind_all_first_choices():
    # every token prefers expert 0 then expert 1; capacity 3
    x = torch.tensor([[2.0, 1.0, 0.0]] * 4)
    r = route(x, torch.eye(3), top_k=2, capacity=3, normalize_gates=False, aux_loss_coef=0.0)
    pairs = sorted(zip(r.expert_index.tolist(), r.token_index.tolist()))
    assert pairs == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_aux_loss_is_alpha_at_uniform_routing():
    probs = torch.full((8, 4), 0.25)
    expert = torch.arange(8).remainder(4).unsqueeze(1)
    assert load_balancing_loss(probs, expert, 0.01).item() == pytest.approx(0.01)  # alpha*E*E*(1/E)^2


def test_router_runs_in_float32_for_bfloat16_inputs():
    x = torch.randn(5, 8).to(torch.bfloat16)
    assert router_probs(x, torch.randn(3, 8)).dtype == torch.float32


@pytest.mark.parametrize("top_k, cf", [(1, 0.5), (1, 4.0), (2, 0.6), (2, 4.0)])
def test_route_kept_set_matches_dense_reference(top_k, cf):
    cfg = LayerConfig(name="r", tokens_per_rank=40, d_model=8, d_ff=8, experts_per_rank=4,
                      world_size=1, top_k=top_k, capacity_factor=cf)
    wr, wi, wo = full_weights(cfg)
    x = data.tokens(cfg, 0)
    r = route(x, wr, top_k, cfg.capacity, False, 0.01)
    _, aux, kept = reference_group(x, wr, wi, wo, cfg)
    assert r.num_kept == kept
    assert torch.equal(r.aux_loss, aux)
    assert (kept < 40 * top_k) == (cf < 1.0)


def test_route_is_the_router_matmul_then_the_gating():
    """The two timed router parts (router_matmul, router_gating) compose to route()."""
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(32, 8, generator=g).to(torch.bfloat16), torch.randn(4, 8, generator=g)
    logits = router_logits(x, w)
    assert logits.dtype == torch.float32 and logits.shape == (32, 4)
    assert torch.equal(logits, x.float() @ w.t())
    whole, parts = route(x, w, 2, 10, True, 0.01), gate_logits(logits, 2, 10, True, 0.01)
    for field in ("token_index", "expert_index", "gate", "expert_counts", "aux_loss", "probs"):
        assert torch.equal(getattr(whole, field), getattr(parts, field)), field
    assert whole.num_kept == parts.num_kept
