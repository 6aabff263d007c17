"""Token → expert routing as it happens in one training step (modeling.md §5.3).

Notation: E experts, k experts per token, t tokens a device routes per MoE layer and micro-batch,
split into routing groups of g tokens (the last may be shorter); C capacity per expert per group
(None: dropless); p ∈ Δ^{E−1} expert popularity of a layer; ep devices per expert-parallel group,
experts laid contiguously (rank r holds experts r·E/ep … (r+1)·E/ep − 1).

1. Popularity per MoE layer: uniform p_i = 1/E; Zipf p_i ∝ i^{−s} under a random permutation per
   layer; or a measured per-expert histogram (JSON/CSV, per layer or one for all).
2. Assignments per group: exact top-k without replacement by Gumbel-top-k on log p (Plackett-Luce;
   Vieira 2014, Kool et al. 2019, arXiv 1903.06059), or the fast path Multinomial(g·k, p), exact for
   k = 1 and close when k·max p ≪ 1 (tests compare both on mean and variance).
   With `expected` loads every group gets exactly g·k·p (no sampling noise). Dropless, the multinomial
   is drawn over destination ranks (p summed over each rank's experts): the same law for the
   per-rank counts, which are all a dropless step uses, with ep categories instead of E. Or, dropless,
   moment-matched per-rank counts (moments.py: normal with the per-token mean and covariance estimated
   from a pool of exactly sampled tokens; approximate), which `auto` picks for node-limited routing too
   large to sample token by token.
3. Capacity clips each group's per-expert count at C; the excess is dropped (Switch §2.2).
4. Per device: tokens sent to other ranks, tokens received (all ranks), and drops.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moesim.des.moments import MOMENT_POOL_TOKENS, RankMoments, rank_moments, sample_rank_counts
from moesim.errors import SpecError
from moesim.paths import parse_json_text, read_text_file

ROUTING_FORMS = ("uniform", "zipf:S", "FILE.json", "FILE.csv")
SAMPLERS = ("auto", "gumbel", "multinomial", "moments")
GUMBEL_BUDGET = 4_000_000  # random numbers per (layer, micro-batch) above which `auto` uses multinomial
GUMBEL_CHUNK = 1_000_000  # random numbers drawn at once by the exact sampler (bounds its memory)
NODE_LIMITED_CHUNK = 4_000_000  # order statistics drawn at once by the uniform node-limited sampler


@dataclass(frozen=True)
class RoutingSpec:
    """Which popularity model; `histograms` rows are per MoE layer (cycled), already normalised."""

    kind: str  # uniform | zipf | histogram
    zipf_s: float = 0.0
    histograms: tuple[tuple[float, ...], ...] = ()
    text: str = "uniform"


def _bad(message: str, path: Path | str, field: str) -> SpecError:
    return SpecError(message, file=str(path), field=field)


def _rows_from_json(path: Path, field: str) -> list[list]:
    data = parse_json_text(read_text_file(path, field=field), file=str(path), field=field)
    if isinstance(data, dict):
        keys = [k for k in ("layers", "experts", "counts") if k in data]
        if len(keys) != 1:
            raise SpecError("a histogram object needs exactly one of the keys 'layers', 'experts', 'counts'",
                            file=str(path), field=field, value=sorted(data),
                            allowed=("layers", "experts", "counts"))
        data = data[keys[0]]
    if isinstance(data, list) and data and all(isinstance(r, list) for r in data):
        return data
    if isinstance(data, list):
        return [data]
    raise _bad("expected a list of per-expert counts, a list of such lists (one per MoE layer), "
               "or an object with 'layers' or 'experts'", path, field)


def _rows_from_csv(path: Path, field: str) -> list[list]:
    rows = [r for r in csv.reader(read_text_file(path, field=field).splitlines()) if any(c.strip() for c in r)]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]  # a header line
    if rows and all(len(r) == 1 for r in rows) and len(rows) > 1:
        return [[r[0] for r in rows]]  # one column: one histogram
    return rows


def _numeric(row) -> bool:
    try:
        [float(c) for c in row]
        return True
    except (TypeError, ValueError):
        return False


def load_histograms(path: str | Path, num_experts: int, *, field: str = "--routing") -> tuple[tuple[float, ...], ...]:
    """Per-expert popularity rows from a JSON or CSV file, each normalised to sum 1; raises SpecError naming
    `field` (the flag or key that gave the file)."""
    path = Path(path)
    if path.suffix.lower() not in (".json", ".csv"):
        raise SpecError(f"unknown histogram format '{path.suffix}'", file=str(path), field=field,
                        allowed=(".json", ".csv"))
    if not path.is_file():
        raise _bad("no such file", path, field)
    rows = _rows_from_json(path, field) if path.suffix.lower() == ".json" else _rows_from_csv(path, field)
    if not rows:
        raise _bad("the histogram file holds no counts", path, field)
    out = []
    for i, row in enumerate(rows):
        where = f"{field}[{i}]" if len(rows) > 1 else field
        if not _numeric(row) or any(isinstance(v, bool) for v in row):
            raise _bad(f"row {i + 1} holds a value that is not a number", path, where)
        values = np.array([float(v) for v in row])
        if len(values) != num_experts:
            raise SpecError(f"row {i + 1} has {len(values)} entries but the model has {num_experts} experts",
                            file=str(path), field=where, value=len(values), allowed=str(num_experts))
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise _bad(f"row {i + 1} has a negative or non-finite count", path, where)
        if values.max() <= 0:
            raise _bad(f"row {i + 1} sums to zero", path, where)
        values = values / values.max()  # scaled first so that counts near the float maximum do not overflow
        out.append(tuple(values / values.sum()))
    return tuple(out)


def parse_routing(text: str, num_experts: int, *, field: str = "--routing") -> RoutingSpec:
    """`uniform`, `zipf:S` (S > 0) or a histogram file path."""
    text = (text or "uniform").strip()
    if text == "uniform":
        return RoutingSpec("uniform", text=text)
    if text.startswith("zipf:"):
        try:
            s = float(text[5:])
        except ValueError:
            s = float("nan")
        if not math.isfinite(s) or s <= 0:
            raise SpecError(f"'{text}': the Zipf exponent must be a number > 0", field=field, value=text,
                            allowed=ROUTING_FORMS)
        return RoutingSpec("zipf", zipf_s=s, text=text)
    if text.lower().endswith((".json", ".csv")) or Path(text).exists():
        return RoutingSpec("histogram", histograms=load_histograms(text, num_experts, field=field), text=text)
    raise SpecError(f"unknown routing '{text}'", field=field, value=text, allowed=ROUTING_FORMS)


def popularity(spec: RoutingSpec, num_experts: int, moe_layers: int, rng: np.random.Generator) -> np.ndarray:
    """p per MoE layer, shape (moe_layers, E); Zipf draws one permutation per layer from `rng`."""
    if spec.kind == "uniform":
        return np.full((moe_layers, num_experts), 1.0 / num_experts)
    if spec.kind == "zipf":
        ranks = np.arange(1, num_experts + 1, dtype=float) ** -spec.zipf_s
        base = ranks / ranks.sum()
        return np.stack([base[rng.permutation(num_experts)] for _ in range(moe_layers)])
    rows = spec.histograms
    return np.array([rows[i % len(rows)] for i in range(moe_layers)])


def sample_gumbel_top_k(tokens: int, top_k: int, p: np.ndarray, rng: np.random.Generator,
                        groups: int = 1) -> np.ndarray:
    """Exact top-k without replacement for `groups` × `tokens` tokens: per-expert counts (groups, E).

    Gumbel-top-k: the k largest of log p_i + G_i, G_i ~ Gumbel(0, 1), are a Plackett-Luce sample
    without replacement (Kool, van Hoof & Welling 2019, arXiv 1903.06059, §3). Drawn as the same
    race in exponential form: G_i = −log X_i with X_i ~ Exp(1), so the winners are the k smallest
    X_i / p_i (float32 keys; an expert with p_i = 0 is never chosen)."""
    return _race_counts(tokens, top_k, p, rng, groups)


def _race_counts(tokens: int, top_k: int, p: np.ndarray, rng: np.random.Generator, groups: int,
                 narrow=None) -> np.ndarray:
    """Per-expert counts (groups, E) of the Gumbel race of sample_gumbel_top_k: the k smallest keys X_i/p_i
    win, after `narrow(keys)` (when given) has set the keys of experts a token may not use to inf."""
    num_experts = len(p)
    with np.errstate(divide="ignore"):
        inverse = (1.0 / np.asarray(p, dtype=float)).astype(np.float32)
    out = np.zeros((groups, num_experts), dtype=np.int64)
    step = max(1, GUMBEL_CHUNK // max(1, tokens * num_experts))
    for first in range(0, groups, step):
        n = min(step, groups - first)
        keys = rng.standard_exponential(size=(n, tokens, num_experts), dtype=np.float32) * inverse
        if narrow is not None:
            keys = narrow(keys)
        if top_k == 1:
            chosen = np.argmin(keys, axis=2)[..., None]
        else:
            chosen = np.argpartition(keys, top_k - 1, axis=2)[..., :top_k]
        flat = (np.arange(n)[:, None, None] * num_experts + chosen).reshape(-1)
        out[first:first + n] = np.bincount(flat, minlength=n * num_experts).reshape(n, num_experts)
    return out


def sample_multinomial(tokens: int, top_k: int, p: np.ndarray, rng: np.random.Generator,
                       groups: int = 1) -> np.ndarray:
    """Multinomial(tokens·k, p) per group: (groups, E); exact for k = 1 (modeling.md §5.3, fast path).

    Drawn as numpy's conditional-binomial multinomial when there are more draws than experts per group,
    else as tokens·k categorical draws counted per group (the same distribution, cheaper when E is large)."""
    num_experts = len(p)
    draws = tokens * top_k
    if draws >= num_experts:
        return rng.multinomial(draws, p, size=groups)
    if np.all(p == p[0]):
        picks = rng.integers(0, num_experts, size=(groups, draws))
    else:
        cdf = np.cumsum(p)
        picks = np.minimum(np.searchsorted(cdf, rng.random((groups, draws)) * cdf[-1], side="right"),
                           num_experts - 1)
    flat = (np.arange(groups)[:, None] * num_experts + picks).reshape(-1)
    return np.bincount(flat, minlength=groups * num_experts).reshape(groups, num_experts)


def sample_node_limited_top_k(tokens: int, top_k: int, p: np.ndarray, nodes: int, max_nodes: int,
                              rng: np.random.Generator, groups: int = 1) -> np.ndarray:
    """Node-limited top-k (each token's experts on at most `max_nodes` of `nodes` equal blocks of experts):
    per-expert counts (groups, E).

    DeepSeek-V3 §2.1.2: nodes are ranked by the sum of the highest K_r/M affinities of the experts they
    hold; the top-K_r experts are then chosen inside the M best nodes. Drawn with the Gumbel race of
    sample_gumbel_top_k (keys X_i/p_i, smaller wins): a node's score is the sum of its ⌈k/M⌉ smallest
    keys, the M best nodes are kept, and the k smallest keys among their experts win.
    """
    num_experts = len(p)
    if nodes < 1 or num_experts % nodes:
        raise ValueError(f"{num_experts} experts do not split into {nodes} equal node blocks")
    if max_nodes <= 0 or max_nodes >= nodes:
        return sample_gumbel_top_k(tokens, top_k, p, rng, groups)
    per_node = num_experts // nodes
    best_per_node = min(per_node, -(-top_k // max_nodes))
    p = np.asarray(p, dtype=float)
    if p[0] > 0 and np.all(p == p[0]) and top_k <= max_nodes * per_node:
        return _uniform_node_limited(tokens, top_k, nodes, per_node, max_nodes, best_per_node, rng, groups)

    def keep_best_nodes(keys: np.ndarray) -> np.ndarray:
        """Keys of the experts outside each token's M best nodes set to inf (node score: ⌈k/M⌉ smallest keys)."""
        n, t = keys.shape[:2]
        masked = keys.reshape(n, t, nodes, per_node)
        blocks = np.sort(masked, axis=3)[..., :best_per_node].sum(axis=3)
        losers = np.argpartition(blocks, max_nodes - 1, axis=2)[..., max_nodes:]  # (n, tokens, nodes − M)
        np.put_along_axis(masked, losers[..., None], np.inf, axis=2)
        return masked.reshape(n, t, num_experts)

    return _race_counts(tokens, top_k, p, rng, groups, keep_best_nodes)


def _uniform_node_limited(tokens: int, top_k: int, nodes: int, per_node: int, max_nodes: int, best_per_node: int,
                          rng: np.random.Generator, groups: int) -> np.ndarray:
    """sample_node_limited_top_k under uniform popularity, drawing ≤ nodes·⌈k/M⌉ + M·k keys per token, not E.

    Equal p makes every key X_i/p_i a common multiple of an Exp(1), and the rule only compares keys and sums
    of keys, so the keys can be Exp(1). Of a node's keys only the min(k, E/nodes) smallest can matter (a
    node gives a token at most k experts); they are drawn in order by Rényi's representation, the j-th
    smallest of n Exp(1) being the sum of E_i/(n − i), i < j (Rényi 1953; David & Nagaraja, Order
    Statistics, §2.5); spacings are independent, so the first ⌈k/M⌉ (node scores) are drawn for every node and
    the rest for the M kept nodes only. Which of a node's experts hold them is, by symmetry, a uniform subset of the node,
    independent across nodes and of the values: drawn as one uniform expert per winning key, redrawn for
    the tokens where a node repeats one (rejection keeps the accepted draws uniform over distinct ones)."""
    depth = min(top_k, per_node)
    rates = (per_node - np.arange(depth)).astype(np.float32)
    out = np.zeros((groups, nodes * per_node), dtype=np.int64)
    step = max(1, NODE_LIMITED_CHUNK // max(1, tokens * nodes * depth))
    for first in range(0, groups, step):
        n = min(step, groups - first)
        t = n * tokens
        head = np.cumsum(rng.standard_exponential(size=(t, nodes, best_per_node), dtype=np.float32)
                         / rates[:best_per_node], axis=2)
        scores = head.sum(axis=2)  # ascending, as a sort gives them
        kept = np.argpartition(scores, max_nodes - 1, axis=1)[:, :max_nodes]  # (t, M)
        order = np.take_along_axis(head, kept[..., None], axis=1)
        if depth > best_per_node:  # the later spacings are independent of the first: drawn for kept nodes only
            more = rng.standard_exponential(size=(t, max_nodes, depth - best_per_node), dtype=np.float32)
            order = np.concatenate([order, order[..., -1:] + np.cumsum(more / rates[best_per_node:], axis=2)], axis=2)
        candidates = order.reshape(t, max_nodes * depth)
        chosen = np.argpartition(candidates, top_k - 1, axis=1)[:, :top_k]  # (t, k)
        base = np.take_along_axis(kept, chosen // depth, axis=1) * per_node  # first expert of each winner's node
        experts = base + rng.integers(0, per_node, size=(t, top_k))
        redo = np.flatnonzero(_repeats(experts))
        while len(redo):
            experts[redo] = base[redo] + rng.integers(0, per_node, size=(len(redo), top_k))
            redo = redo[_repeats(experts[redo])]
        flat = (np.repeat(np.arange(n), tokens)[:, None] * (nodes * per_node) + experts).reshape(-1)
        out[first:first + n] = np.bincount(flat, minlength=n * nodes * per_node).reshape(n, nodes * per_node)
    return out


def _repeats(rows: np.ndarray) -> np.ndarray:
    """Per row: whether any value occurs twice."""
    ordered = np.sort(rows, axis=1)
    return np.any(ordered[:, 1:] == ordered[:, :-1], axis=1)


@dataclass(frozen=True)
class LayerLoads:
    """One MoE layer and micro-batch over a set of devices (arrays over devices, in tokens)."""

    sent_remote: np.ndarray  # tokens a device sends to other ranks of its EP group
    received: np.ndarray  # tokens a device's experts process (its own included)
    received_remote: np.ndarray  # of which from other ranks
    dropped: float
    assigned: float


def sampler_method(sampler: str, top_k: int, draws: int) -> str:
    """The sampler `auto` picks: exact Gumbel-top-k unless k = 1 (multinomial is exact) or too many draws."""
    if sampler not in ("auto", "moments"):
        return sampler
    return "multinomial" if top_k == 1 or draws > GUMBEL_BUDGET else "gumbel"


def uses_moments(sampler: str, *, dropless: bool, expected: bool, limited: bool, draws: int) -> bool:
    """Whether route_layer draws moment-matched per-rank counts (moments.py): asked for, or `auto` on dropless
    node-limited routing whose exact per-token race would draw more than GUMBEL_BUDGET keys per call (that rule
    has no cheaper exact sampler). Only dropless sampled loads can use it: capacity clips per-expert counts."""
    if not dropless or expected:
        return False
    return sampler == "moments" or (sampler == "auto" and limited and draws > GUMBEL_BUDGET)


def layer_moments(p: np.ndarray, ep: int, top_k: int, rng: np.random.Generator,
                  node_limit: tuple[int, int] | None = None, pool_tokens: int = MOMENT_POOL_TOKENS) -> RankMoments:
    """A layer's per-token rank-count moments (moments.py) from `pool_tokens` tokens of the exact sampler."""
    p = np.asarray(p, dtype=float)
    if node_limit is not None and 0 < node_limit[1] < node_limit[0]:
        per_expert = sample_node_limited_top_k(1, top_k, p, node_limit[0], node_limit[1], rng, groups=pool_tokens)
    else:
        per_expert = sample_gumbel_top_k(1, top_k, p, rng, groups=pool_tokens)
    return rank_moments(per_expert, ep, top_k, uniform=bool(p[0] > 0 and np.all(p == p[0])))


def route_layer(p: np.ndarray, ep_groups: np.ndarray, tokens: int, group_tokens: int, top_k: int,
                capacity: int | None, rng: np.random.Generator, *, expected: bool = False,
                sampler: str = "auto", node_limit: tuple[int, int] | None = None,
                moments: RankMoments | None = None) -> LayerLoads:
    """Route every device's `tokens` for one MoE layer; `ep_groups` (G, ep) holds device ids by EP rank.

    `node_limit` = (nodes of the EP group, max nodes per token) samples node-limited routing
    (sample_node_limited_top_k) instead of the plain top-k. Where uses_moments holds, per-rank counts are
    drawn from the layer's `moments` (estimated here from `rng` when not given): see moments.py.

    Returns arrays indexed like ep_groups.reshape(-1) (devices in group-major, rank-minor order).
    """
    n_groups, ep = ep_groups.shape
    num_experts = len(p)
    devices = n_groups * ep
    g = max(1, min(group_tokens or tokens, tokens))
    sizes = [g] * (tokens // g) + ([tokens % g] if tokens % g else [])
    width = num_experts
    limited = node_limit is not None and 0 < node_limit[1] < node_limit[0]
    if uses_moments(sampler, dropless=capacity is None, expected=expected, limited=limited,
                    draws=devices * tokens * num_experts):
        if moments is None:
            moments = layer_moments(p, ep, top_k, rng, node_limit)
        counts = sample_rank_counts(tokens, moments, rng, devices)
        return loads_from_counts(counts, n_groups, ep, 0.0, devices * tokens * top_k)
    if capacity is None and not expected and not limited and all(
            sampler_method(sampler, top_k, devices * sizes.count(size) * size * num_experts) == "multinomial"
            for size in set(sizes)):
        # Dropless: only the tokens per destination rank matter, and a multinomial's counts summed over
        # each rank's experts are Multinomial(n, p summed per rank) - the same law, ep categories, not E.
        p, width = np.asarray(p, dtype=float).reshape(ep, num_experts // ep).sum(axis=1), ep
    counts = np.zeros((devices, width))
    dropped = 0.0
    for size in sorted(set(sizes)):
        reps = sizes.count(size)
        if expected:
            c = np.broadcast_to(size * top_k * p, (devices * reps, width))
        else:
            method = sampler_method(sampler, top_k, devices * reps * size * num_experts)
            if limited:
                c = sample_node_limited_top_k(size, top_k, p, node_limit[0], node_limit[1], rng,
                                              groups=devices * reps).astype(float)
            else:
                draw = sample_gumbel_top_k if method == "gumbel" else sample_multinomial
                c = draw(size, top_k, p, rng, groups=devices * reps).astype(float)
        if capacity is not None:
            kept = np.minimum(c, capacity)
            dropped += float(np.sum(c - kept))
            c = kept
        counts += c.reshape(devices, reps, width).sum(axis=1)
    return loads_from_counts(counts, n_groups, ep, dropped, devices * tokens * top_k)


def loads_from_counts(counts: np.ndarray, n_groups: int, ep: int, dropped: float, assigned: float) -> LayerLoads:
    """LayerLoads from per-device counts (devices, width), width a multiple of ep (per expert or per rank)."""
    width = counts.shape[1]
    per_rank = counts.reshape(n_groups, ep, ep, width // ep).sum(axis=3)  # (G, src, dst)
    local = np.einsum("gii->gi", per_rank)
    received = per_rank.sum(axis=1)
    sent = per_rank.sum(axis=2)
    return LayerLoads(sent_remote=(sent - local).reshape(-1), received=received.reshape(-1),
                      received_remote=(received - local).reshape(-1), dropped=dropped,
                      assigned=float(assigned))


__all__ = ["GUMBEL_BUDGET", "LayerLoads", "layer_moments", "loads_from_counts", "sampler_method", "uses_moments",
           "ROUTING_FORMS", "RoutingSpec", "SAMPLERS", "load_histograms",
           "parse_routing", "popularity", "route_layer", "sample_gumbel_top_k", "sample_multinomial",
           "sample_node_limited_top_k"]
