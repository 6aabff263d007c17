"""One step's routing through the MoE layers (simulate()'s sampler, run.py): loads per stage, drops, the reason.

`_Router` samples every MoE layer's routing for a step, layer by layer, on the EP groups of the stage that runs it
(routing.py's samplers; at cluster scale moments.py's moment-matched per-rank counts), and keeps the loads when they
set the work. `sampler_reason` says which sampler ran and why (SimResult.mode_reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from moesim.des.costs import Costs
from moesim.des.moments import MOMENT_POOL_TOKENS, sample_rank_counts
from moesim.des.routing import (GUMBEL_BUDGET, layer_moments, loads_from_counts, parse_routing, popularity,
                                route_layer, sampler_method, uses_moments)
from moesim.des.variation import Loads

if TYPE_CHECKING:
    from moesim.des.run import SimOptions


def _stage_of(costs: Costs) -> np.ndarray:
    pp, stride = costs.layout.pp, costs.strides["pp"]
    return (np.arange(costs.scenario.devices) // stride) % pp


def _ep_groups(costs: Costs, stage_of: np.ndarray, stage: int) -> np.ndarray:
    ep, stride = costs.sizes["ep"], costs.strides["ep"]
    devs = np.flatnonzero(stage_of == stage)
    bases = devs[(devs // stride) % ep == 0]
    return bases[:, None] + np.arange(ep)[None, :] * stride


class _Router:
    """Samples every MoE layer's routing for a step, layer by layer; keeps loads when they set the work.

    Kept loads are stage-local: the arrays of MoE layer n hold only the devices of the stage that
    runs it (by position in that stage's device list), so memory grows with the stage, not the
    cluster (a 2048-device run keeps 1/pp of what one array per device would)."""

    def __init__(self, costs: Costs, options: SimOptions, rng: np.random.Generator, keep: bool) -> None:
        self.costs, self.options, self.rng, self.keep = costs, options, rng, keep
        moe = costs.scenario.model.moe
        wl = costs.workload
        self.layers = [i for i, c in enumerate(wl.layer_class_index) if wl.classes[c].is_moe] if moe else []
        self.spec = parse_routing(options.routing, moe.num_experts) if moe else None
        self.p = popularity(self.spec, moe.num_experts, len(self.layers), rng) if moe else None
        stage_of = _stage_of(costs)
        self.stage_devices = [np.flatnonzero(stage_of == s) for s in range(costs.layout.pp)]
        self.groups = [_ep_groups(costs, stage_of, s) for s in range(costs.layout.pp)] if moe else []
        self.uniform = self.spec is None or self.spec.kind == "uniform"
        self.stage_of_layer = {layer: costs.device_of(st.index) for st in costs.stages for layer in st.layers}
        self.piece_of_layer = {layer: st.index for st in costs.stages for layer in st.layers}  # DualPipe: by mb
        self.node_limit = _node_limit(costs) if moe else None
        self.moments: dict[int, object] = {}  # MoE layer -> RankMoments, estimated once (moments.py)

    def _draw_facts(self, layer: int) -> dict:
        c, o = self.costs, self.options
        lc = c.classes[c.workload.layer_class_index[layer]]
        groups = self.groups[self.stage_of_layer[layer]]
        return {"dropless": c.dropless, "expected": o.expected_loads, "limited": self.node_limit is not None,
                "draws": groups.size * lc.tokens * c.scenario.model.moe.num_experts}

    def reason(self) -> str:
        """Which routing sampler runs and why (the first MoE layer's case), for mode_reason; '' without MoE."""
        if not self.layers:
            return ""
        return sampler_reason(self.options.sampler, top_k=self.costs.scenario.model.moe.top_k,
                              **self._draw_facts(self.layers[0]))

    def step(self, progress: Callable[[float], None] | None = None) -> tuple[list | None, float, float]:
        """(per stage: loads by (moe, mb), or None; dropped assignments; all assignments)."""
        if not self.layers:
            return None, 0.0, 0.0
        c, moe, o = self.costs, self.costs.scenario.model.moe, self.options
        loads: list[Loads] = [{} for _ in self.stage_devices]
        dropped = assigned = 0.0
        for n, layer in enumerate(self.layers):
            lc = c.classes[c.workload.layer_class_index[layer]]
            stage = self.stage_of_layer[layer]
            groups = self.groups[stage]
            if n not in self.moments and uses_moments(o.sampler, **self._draw_facts(layer)):
                self.moments[n] = layer_moments(self.p[n], groups.shape[1], moe.top_k, self.rng, self.node_limit)
            moments = self.moments.get(n)
            size = groups.size
            # moment-matched counts: every micro-batch of the layer drawn at once (one vectorised draw)
            drawn = None if moments is None else sample_rank_counts(lc.tokens, moments, self.rng,
                                                                    size * c.micro_batches)
            if drawn is not None:  # every micro-batch's loads at once, scattered per stage (no per-mb loop)
                dropped, assigned = self._moment_loads(n, layer, drawn, loads, dropped, assigned)
                if progress is not None:
                    progress((n + 1) / len(self.layers))
                continue
            position = np.searchsorted(self.stage_devices[stage], groups.reshape(-1))
            for mb in range(c.micro_batches):
                # the device that runs the layer for this micro-batch (DualPipe's second half runs the other way);
                # its EP groups have the same shape, so the draws are those of the first half's stage
                stage_mb = c.device_of(self.piece_of_layer[layer], mb)
                if stage_mb != stage:
                    stage, groups = stage_mb, self.groups[stage_mb]
                    position = np.searchsorted(self.stage_devices[stage], groups.reshape(-1))
                r = route_layer(self.p[n], groups, lc.tokens, moe.group_size_tokens, moe.top_k,
                                None if c.dropless else lc.capacity, self.rng, expected=o.expected_loads,
                                sampler=o.sampler, node_limit=self.node_limit)
                dropped += r.dropped
                assigned += r.assigned
                if self.keep:
                    local = [np.zeros(len(self.stage_devices[stage])) for _ in range(3)]
                    for arr, value in zip(local, (r.sent_remote, r.received, r.received_remote)):
                        arr[position] = value
                    loads[stage][(n, mb)] = tuple(local)
            if progress is not None:
                progress((n + 1) / len(self.layers))
        return (loads if self.keep else None), dropped, assigned

    def _moment_loads(self, n: int, layer: int, drawn: np.ndarray, loads: list, dropped: float,
                      assigned: float) -> tuple[float, float]:
        """Loads of MoE layer n from its moment-matched counts `drawn` (micro-batches × devices, ep), all
        micro-batches in one loads_from_counts; the same values, in the same (n, mb) entries, as one call per
        micro-batch (counts are whole numbers, so every sum is exact whatever its grouping)."""
        c, top_k = self.costs, self.costs.scenario.model.moe.top_k
        lc = c.classes[c.workload.layer_class_index[layer]]
        ep = self.groups[self.stage_of_layer[layer]].shape[1]
        size, mbs = self.groups[self.stage_of_layer[layer]].size, c.micro_batches
        r = loads_from_counts(drawn, len(drawn) // ep, ep, 0.0, size * lc.tokens * top_k)
        for _ in range(mbs):  # one add per micro-batch, as the per-micro-batch path sums (same float result)
            dropped += r.dropped
            assigned += r.assigned
        if not self.keep:
            return dropped, assigned
        stage_of_mb = [c.device_of(self.piece_of_layer[layer], mb) for mb in range(mbs)]
        for stage in sorted(set(stage_of_mb)):
            mb_list = [mb for mb in range(mbs) if stage_of_mb[mb] == stage]
            groups = self.groups[stage]
            position = np.searchsorted(self.stage_devices[stage], groups.reshape(-1))
            rows = np.array(mb_list)[:, None] * size + np.arange(size)[None, :]
            local = [np.zeros((len(mb_list), len(self.stage_devices[stage]))) for _ in range(3)]
            for arr, value in zip(local, (r.sent_remote, r.received, r.received_remote)):
                arr[:, position] = value[rows]
            for i, mb in enumerate(mb_list):
                loads[stage][(n, mb)] = tuple(arr[i] for arr in local)
        return dropped, assigned


def _node_limit(costs: Costs) -> tuple[int, int] | None:
    """(nodes the EP group spans, moe.max_nodes_per_token) when node-limited routing bounds it, else None."""
    moe = costs.scenario.model.moe
    ep = costs.layout.ep
    per_node = costs.scenario.hardware.interconnect[0].domain_devices
    nodes = -(-ep // per_node)
    if moe.max_nodes_per_token <= 0 or moe.max_nodes_per_token >= nodes or moe.num_experts % nodes:
        return None
    return nodes, moe.max_nodes_per_token


def sampler_reason(sampler: str, *, dropless: bool, expected: bool, limited: bool, draws: int, top_k: int) -> str:
    """One line: which routing sampler runs and why (SimResult.mode_reason)."""
    if expected:
        return "routing: expected loads (no sampling)"
    if uses_moments(sampler, dropless=dropless, expected=expected, limited=limited, draws=draws):
        why = "as asked (sampler moments)" if sampler == "moments" else (
            f"auto: node-limited top-k, {draws:,} keys per layer and micro-batch for the exact per-token race "
            f"> {GUMBEL_BUDGET:,}")
        return (f"routing: moment-matched per-rank counts ({why}; mean and covariance from {MOMENT_POOL_TOKENS:,} "
                "exactly sampled tokens per layer, normal approximation: approximate)")
    if sampler == "moments":
        return "routing: moments applies to dropless loads only; capacity clips per expert, so auto's sampler ran"
    if limited:
        return "routing: node-limited top-k, every token sampled (exact)"
    method = sampler_method(sampler, top_k, draws)
    exact = "exact" if method == "gumbel" or top_k == 1 else "with replacement: approximate for k > 1"
    return f"routing: {method} ({'as asked' if sampler != 'auto' else 'auto'}; {exact})"
