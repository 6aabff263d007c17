"""Routing: popularity models, histogram files and their errors, samplers, capacity drops."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moesim.capacity import expected_drop_fraction
from moesim.des.routing import (
    RoutingSpec, load_histograms, parse_routing, popularity, route_layer, sample_gumbel_top_k, sample_multinomial,
)
from moesim.errors import SpecError


def test_parse_routing_forms():
    assert parse_routing("uniform", 8) == RoutingSpec("uniform", text="uniform")
    spec = parse_routing("zipf:1.2", 8)
    assert (spec.kind, spec.zipf_s) == ("zipf", 1.2)
    for bad in ("zipf:0", "zipf:-1", "zipf:x", "gaussian", ""):
        if bad == "":
            continue
        with pytest.raises(SpecError) as err:
            parse_routing(bad, 8)
        assert "field '--routing'" in str(err.value)
        assert "allowed: uniform, zipf:S, FILE.json, FILE.csv" in str(err.value)


def test_histogram_json_and_csv(tmp_path):
    per_layer = tmp_path / "layers.json"
    per_layer.write_text(json.dumps({"layers": [[1, 1, 2, 0], [4, 0, 0, 0]]}))
    assert load_histograms(per_layer, 4) == ((0.25, 0.25, 0.5, 0.0), (1.0, 0.0, 0.0, 0.0))
    flat = tmp_path / "flat.json"
    flat.write_text("[1, 3]")
    assert load_histograms(flat, 2) == ((0.25, 0.75),)
    rows = tmp_path / "rows.csv"
    rows.write_text("e0,e1,e2\n1,1,2\n0,5,5\n")
    assert load_histograms(rows, 3) == ((0.25, 0.25, 0.5), (0.0, 0.5, 0.5))
    column = tmp_path / "column.csv"
    column.write_text("count\n3\n1\n")
    assert load_histograms(column, 2) == ((0.75, 0.25),)
    spec = parse_routing(str(per_layer), 4)
    p = popularity(spec, 4, 3, np.random.default_rng(0))
    assert p.tolist() == [[0.25, 0.25, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.5, 0.0]]  # cycled


@pytest.mark.parametrize("name, text, message", [
    ("short.json", "[1, 2, 3]", "row 1 has 3 entries but the model has 4 experts"),
    ("neg.csv", "1,2,-1,0\n", "row 1 has a negative or non-finite count"),
    ("zero.json", "[0, 0, 0, 0]", "row 1 sums to zero"),
    ("word.csv", "1,2,3,4\n1,x,3,4\n", "row 2 holds a value that is not a number"),
    ("broken.json", "[1, 2,", "not valid JSON"),
    ("keys.json", '{"a": [1, 2, 3, 4]}', "exactly one of the keys 'layers', 'experts', 'counts'"),
    ("empty.csv", "", "the histogram file holds no counts"),
])
def test_bad_histogram_files_name_file_and_problem(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        parse_routing(str(path), 4)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_and_unknown_histogram_files(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        parse_routing(str(tmp_path / "none.json"), 4)
    with pytest.raises(SpecError, match=r"unknown histogram format '\.txt' \(allowed: \.json, \.csv\)"):
        load_histograms(tmp_path / "counts.txt", 4)


def test_zipf_popularity_is_permuted_per_layer_and_seeded():
    p = popularity(parse_routing("zipf:1.0", 8), 8, 3, np.random.default_rng(7))
    ranks = np.arange(1, 9) ** -1.0
    for row in p:
        assert row.sum() == pytest.approx(1.0)
        assert sorted(row) == pytest.approx(sorted(ranks / ranks.sum()))
    assert len({tuple(np.argsort(r)) for r in p}) > 1
    assert np.array_equal(p, popularity(parse_routing("zipf:1.0", 8), 8, 3, np.random.default_rng(7)))


@pytest.mark.parametrize("p", [np.full(64, 1 / 64), (lambda r: r / r.sum())(np.arange(1, 65) ** -0.3)])
def test_gumbel_top_k_and_multinomial_agree_on_mean_and_variance(p):
    # E = 64, k = 2 (k·max p ≈ 0.03 – 0.06): the multinomial fast path differs from exact sampling
    # without replacement only by the factor (1 − k·p)/(1 − p) on the variance.
    tokens, k, groups = 256, 2, 4000
    exact = sample_gumbel_top_k(tokens, k, p, np.random.default_rng(1), groups=groups)
    fast = sample_multinomial(tokens, k, p, np.random.default_rng(2), groups=groups)
    assert np.all(exact.sum(axis=1) == tokens * k) and np.all(fast.sum(axis=1) == tokens * k)
    assert np.all(exact.max(axis=1) <= tokens)  # one token never picks an expert twice
    mean = tokens * k * p
    se = np.sqrt(mean / groups)
    assert np.all(np.abs(exact.mean(axis=0) - mean) < 5 * se + 0.05 * mean)
    assert np.all(np.abs(fast.mean(axis=0) - mean) < 5 * se)
    var_fast = tokens * k * p * (1 - p)
    assert fast.var(axis=0).sum() == pytest.approx(var_fast.sum(), rel=0.03)
    assert exact.var(axis=0).sum() == pytest.approx(fast.var(axis=0).sum(), rel=0.08)


def test_gumbel_top_1_matches_the_categorical_distribution():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    counts = sample_gumbel_top_k(1000, 1, p, np.random.default_rng(3), groups=50).sum(axis=0)
    assert counts / counts.sum() == pytest.approx(p, abs=0.01)


def test_route_layer_conserves_tokens_and_counts_drops():
    p = np.full(16, 1 / 16)
    groups = np.arange(8).reshape(2, 4)  # two EP groups of 4 devices, 4 experts each
    r = route_layer(p, groups, tokens=512, group_tokens=0, top_k=2, capacity=None, rng=np.random.default_rng(0))
    assert r.dropped == 0 and r.assigned == 8 * 512 * 2
    assert r.received.sum() == pytest.approx(r.assigned)
    # every token-slot a device keeps locally is neither sent nor received remotely
    assert (r.received - r.received_remote).sum() == pytest.approx(r.assigned - r.sent_remote.sum())
    capped = route_layer(p, groups, tokens=512, group_tokens=128, top_k=2, capacity=16, rng=np.random.default_rng(0))
    assert capped.dropped > 0
    assert capped.received.sum() == pytest.approx(capped.assigned - capped.dropped)
    # per device at most: 4 sources × 4 routing groups each × capacity 16 × 4 local experts
    assert capped.received.max() <= 4 * 4 * 16 * 4
    expected = route_layer(p, groups, tokens=512, group_tokens=0, top_k=2, capacity=None,
                           rng=np.random.default_rng(0), expected=True)
    assert np.allclose(expected.received, 1024) and np.allclose(expected.sent_remote, 1024 * 3 / 4)


@pytest.mark.parametrize("tokens, experts, capacity_factor", [(512, 64, 1.0), (512, 64, 1.25), (256, 128, 1.0)])
def test_sampled_drop_fraction_matches_the_binomial_formula(tokens, experts, capacity_factor):
    p = np.full(experts, 1 / experts)
    capacity = int(tokens * capacity_factor / experts)
    groups = np.arange(64).reshape(8, 8)
    rng = np.random.default_rng(11)
    dropped = assigned = 0.0
    for _ in range(20):
        r = route_layer(p, groups, tokens=tokens, group_tokens=0, top_k=1, capacity=capacity, rng=rng)
        dropped, assigned = dropped + r.dropped, assigned + r.assigned
    expected = expected_drop_fraction(tokens, experts, 1, capacity)
    # Standard error of the sampled fraction over 20 × 64 independent groups of `tokens` draws.
    per_group = route_layer(p, np.arange(2000).reshape(250, 8), tokens=tokens, group_tokens=0, top_k=1,
                            capacity=capacity, rng=np.random.default_rng(5))
    assert dropped / assigned == pytest.approx(expected, abs=4 * 0.5 * expected / np.sqrt(20 * 64) + 1e-4)
    assert per_group.dropped / per_group.assigned == pytest.approx(expected, rel=0.1)


def test_same_seed_same_routing():
    p = np.full(16, 1 / 16)
    groups = np.arange(8).reshape(2, 4)
    a = route_layer(p, groups, 300, 0, 2, 40, np.random.default_rng(9))
    b = route_layer(p, groups, 300, 0, 2, 40, np.random.default_rng(9))
    assert np.array_equal(a.received, b.received) and a.dropped == b.dropped


def test_dropless_multinomial_per_rank_has_the_per_expert_law():
    """Dropless, route_layer draws per destination rank (p summed per rank); the loads it returns have
    the mean and variance of per-expert multinomial counts summed per rank (same law)."""
    rng = np.random.default_rng(4)
    p = np.random.default_rng(1).dirichlet(np.ones(16))
    groups = np.arange(4000).reshape(1000, 4)  # 4 ranks of 4 experts
    r = route_layer(p, groups, tokens=256, group_tokens=0, top_k=1, capacity=None, rng=rng, sampler="multinomial")
    per_expert = sample_multinomial(256, 1, p, np.random.default_rng(5), groups=4000)
    rank_counts = per_expert.reshape(4000, 4, 4).sum(axis=2)  # (device, destination rank)
    p_rank = p.reshape(4, 4).sum(axis=1)
    received = r.received.reshape(1000, 4)  # per destination rank, summed over the 4 sources
    assert received.mean(axis=0) == pytest.approx(4 * 256 * p_rank, rel=0.02)
    assert received.var(axis=0) == pytest.approx(4 * 256 * p_rank * (1 - p_rank), rel=0.15)
    reference = rank_counts.reshape(1000, 4, 4).sum(axis=1)
    assert reference.var(axis=0) == pytest.approx(received.var(axis=0), rel=0.2)


def _node_limited_reference(tokens: int, top_k: int, nodes: int, max_nodes: int, num_experts: int,
                            rng: np.random.Generator) -> np.ndarray:
    """DeepSeek-V3 §2.1.2 node-limited top-k under uniform popularity, token by token on all E keys:
    (tokens, E) 0/1 choices. Keys iid Exp(1), smaller wins; a node scores the sum of its ⌈k/M⌉ smallest."""
    per_node = num_experts // nodes
    best = min(per_node, -(-top_k // max_nodes))
    keys = rng.standard_exponential((tokens, nodes, per_node))
    scores = np.sort(keys, axis=2)[..., :best].sum(axis=2)
    losers = np.argsort(scores, axis=1)[:, max_nodes:]
    np.put_along_axis(keys, losers[..., None], np.inf, axis=1)
    chosen = np.argsort(keys.reshape(tokens, num_experts), axis=1)[:, :top_k]
    out = np.zeros((tokens, num_experts), dtype=np.int64)
    np.put_along_axis(out, chosen, 1, axis=1)
    return out


@pytest.mark.parametrize("top_k, nodes, max_nodes, num_experts", [(4, 4, 2, 32), (6, 4, 2, 16), (3, 4, 1, 16),
                                                                  (8, 8, 4, 64)])
def test_uniform_node_limited_sampler_has_the_token_by_token_law(top_k, nodes, max_nodes, num_experts):
    """The uniform fast path (order statistics per node + uniform experts inside a node) against the rule
    applied to all E keys per token: two-sample chi-square on each token's per-node counts (which nodes,
    how many experts each) and on which pairs of a node's experts a token takes together (p > 0.001)."""
    from scipy.stats import chi2_contingency

    from moesim.des.routing import sample_node_limited_top_k

    n = 20_000
    per_node = num_experts // nodes
    fast = sample_node_limited_top_k(1, top_k, np.full(num_experts, 1 / num_experts), nodes, max_nodes,
                                     np.random.default_rng(1), groups=n)
    ref = _node_limited_reference(n, top_k, nodes, max_nodes, num_experts, np.random.default_rng(2))
    for counts in (fast, ref):
        per_node_counts = counts.reshape(n, nodes, per_node).sum(axis=2)
        assert counts.sum(axis=1).tolist() == [top_k] * n and counts.max() == 1
        assert ((per_node_counts > 0).sum(axis=1) <= max_nodes).all()

    def table(counts):
        patterns = counts.reshape(n, nodes, per_node).sum(axis=2) @ (top_k + 1) ** np.arange(nodes)
        pair = counts[:, 0] * 2 + counts[:, 1]  # experts 0 and 1 share node 0
        return np.unique(patterns, return_counts=True), np.bincount(pair, minlength=4)

    (fast_keys, fast_n), fast_pair = table(fast)
    (ref_keys, ref_n), ref_pair = table(ref)
    keys = np.union1d(fast_keys, ref_keys)
    grid = np.zeros((2, len(keys)))
    grid[0, np.searchsorted(keys, fast_keys)] = fast_n
    grid[1, np.searchsorted(keys, ref_keys)] = ref_n
    grid = grid[:, grid.sum(axis=0) >= 10]  # chi-square needs populated cells; rare patterns left out
    assert grid.shape[1] >= 2
    assert chi2_contingency(grid).pvalue > 1e-3
    assert chi2_contingency(np.array([fast_pair, ref_pair])).pvalue > 1e-3
    expert_load = fast.sum(axis=0)  # uniform over experts
    assert abs(expert_load / expert_load.mean() - 1).max() < 0.1


def test_uniform_node_limited_sampler_is_seeded():
    from moesim.des.routing import sample_node_limited_top_k

    p = np.full(64, 1 / 64)
    a = sample_node_limited_top_k(100, 8, p, 8, 4, np.random.default_rng(3), groups=5)
    b = sample_node_limited_top_k(100, 8, p, 8, 4, np.random.default_rng(3), groups=5)
    c = sample_node_limited_top_k(100, 8, p, 8, 4, np.random.default_rng(4), groups=5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.sum(axis=1).tolist() == [800] * 5
