"""The MoE expert all-to-all as libraries run it: NCCL pairwise, hierarchical (2DH), DeepEP normal and
low-latency kernels, with node-limited routing.

Notation (uniform routing; ../shared/reference/wave2.md §3):
  E        routed experts, spread evenly over the EP group;  k  experts per token (top-k)
  N        nodes of the EP group;  G  GPUs per node (the NVLink domain);  M  max nodes per token (0 = N)
  S        bytes one GPU sends in the plain all-to-all: its tokens × k × bytes per token (nccl-tests S)
  D        distinct nodes a token reaches (its own node included). No limit (M ≥ N):
             D = N · (1 − C(E − E/N, k) / C(E, k))
           node-limited (M < N, DeepSeek-V3 §2.1.2: the M nodes are the ones whose best experts score
           highest, so each of them holds at least its best expert): D = M, one expert per chosen node and
           the other k − M uniform over the chosen nodes' remaining experts
  R        distinct remote nodes = D · (N − 1)/N (a token's own node is one of the chosen with chance M/N)
  Γ        distinct GPUs a token reaches (own GPU included) = G·N·(1 − C(E − E/(N·G), k) / C(E, k)), or
           node-limited M + (M·G − M)·(1 − C(E' − M − E/(N·G), k − M) / C(E' − M, k − M)),  E' = M·E/N
  F        NVLink forwards per token = Γ·(G − 1)/G (every target GPU but the one the token lands on)
  W_nvl    per-GPU usable NVLink bandwidth (profile: link × bw efficiency); α_nvl, α_net the levels' hops (one
           point-to-point message each: the profile's p2p_latency_us where set, else latency_us)
  W_net    per-GPU NIC bandwidth: link × min(profile efficiency, the fraction DeepEP's own network-bound
           kernels reach: 0.885 of a CX7, deepep.toml [rdma])
  W_fwd    the internode forwarding stage's own rate (deepep.toml [forward]: a kernel rate, measured)
  f        record / token: bytes a kernel moves per copy of a token over the token's bytes (hidden × element
           bytes, FP8 scales included), deepep.toml [records]; 1 for a model without a direction
Costs (one direction; combine is the same path reversed):
  deepep (normal kernels): the NVLink stage copies the token once per target GPU, its own GPU included
      (intranode.cu: the sender warps are split evenly over the destination ranks, own rank among them;
      internode.cu: the forwarder warps copy into every target GPU's NVLink buffer, own GPU among them),
      so it moves S·Γ/k; each (token, node) pair crosses the network once, S·R/k, to the GPU with the
      same local index; the two overlap, each copy a record of f times the token's bytes:
      T = max(S·R/k·f / W_net, S·Γ/k·f / min(W_nvl, W_fwd)) + α_net + α_nvl
      (one node: S·Γ/k·f / W_nvl + α_nvl)
  deepep_ll (low-latency kernels): one RDMA message per (token, selected expert), no dedup:
      T = max(S·(N−1)/N·f / W_net, S/N·f / W_nvl) + 2·α_net   (the flag each receiver polls: a second hop)
  hybridep (NVIDIA's HybridEP, session 21): DeepEP's normal-kernel path (hybridep.toml: NVLink inside the domain,
      RDMA across), the tokens alone (f = 1: the bytes its benchmark counts), its NVLink stage at the published
      per-rank rate W_hep where hybridep.toml has the hardware (else DeepEP's figures):
      T = S·Γ/k / min(W_nvl, W_hep) + α_nvl on one domain; across domains DeepEP's T with W_fwd = W_hep
  pairwise / hierarchical / nccl: the collective model's all-to-all (NCCL pairwise, 2DH, or the faster).
DeepEP reports *logical* bandwidth: bytes × D/k (normal, own node included) or bytes (low-latency, every
selection) over the time (tests/test_internode.py, test_low_latency.py of deepseek-ai/DeepEP). Its
"~160 GB/s NVLink maximum" (docs/legacy.md) is counted the same way (every received token), which is
why the NVLink stage is priced on Γ, not F, at W_nvl. The records (f) are time, not reported bytes: an
FP8 dispatch token of hidden 7168 moves 7472 bytes of 7392 across nodes (source meta 8 B, top-k indices and
weights 8·k B, 16-byte aligned: internode.cu get_num_bytes_per_token), 7492 on one node (intranode.cu: int64
indices, no padding). The two directions' records differ, so the estimate's and the simulator's dispatch and
combine all-to-alls are priced by `directed` models (for_call, by the operator list's names).
Sources: DeepSeek-V3 report (arXiv 2412.19437v2) §2.1.2 (node-limited routing), §3.2.2 (dispatch over
IB once per node, NVLink forwarding); deepseek-ai/DeepEP @dd758ca docs/legacy.md (kernels and published
tables), csrc/kernels/legacy/intranode.cu, internode.cu, README.md (V2 rows: W_net); DeepEP issue #493 (W_fwd).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from moesim.collectives.base import CollectiveCost, Group, bus_bw_factor, p2p_latency_s
# Session 25 (tidy25): the data files' readers in deepep_data.py; every name still importable from here
# (tests/test_module_split.py MOVED)
from moesim.collectives.deepep_data import (  # noqa: F401
    CONSTANTS as _CONSTANTS, HYBRIDEP as _HYBRIDEP, KEYS as _KEYS, RECORD_KERNELS, RECORD_KEYS as _RECORD_KEYS,
    constants as _constants, forward_rate_bytes_per_s, hybridep_kernel_sms, hybridep_published_ranks,
    hybridep_rate_bytes_per_s, hybridep_rates as _hybridep_rates, normal_kernel_sms, rdma_fraction, record_bytes)
from moesim.errors import SpecError

BACKENDS = ("nccl", "pairwise", "hierarchical", "deepep", "deepep_ll", "hybridep")
KERNEL_BACKENDS = ("deepep", "deepep_ll", "hybridep")  # priced on DeepEP's path (not the collective model's)
# The expert all-to-alls of the operator list (estimate/terms.py CommCall names) and the direction each runs.
DIRECTIONS = {"ep_all_to_all_dispatch": "dispatch", "ep_all_to_all_combine": "combine"}


def for_call(model, name: str):
    """The model that prices the collective called `name` in the operator list: the dispatch or combine
    direction of a DispatchModel (their per-token records differ), else `model` itself."""
    direction = DIRECTIONS.get(name)
    directed = getattr(model, "directed", None) if direction is not None else None
    return directed(direction) if directed is not None else model

def miss_probability(pool: int, hit: int, k: int) -> float:
    """C(pool − hit, k) / C(pool, k): chance that k distinct picks from `pool` avoid `hit` given items."""
    if hit <= 0:
        return 1.0
    if k > pool - hit:
        return 0.0
    p = 1.0
    for i in range(k):
        p *= (pool - hit - i) / (pool - i)
    return p


@dataclass(frozen=True)
class RoutingShape:
    """Per token, uniform routing: distinct nodes D, remote nodes R, distinct GPUs Γ, NVLink forwards F."""

    top_k: int
    nodes: int
    gpus_per_node: int
    distinct_nodes: float
    remote_nodes: float
    distinct_gpus: float

    @property
    def nvlink_forwards(self) -> float:
        return self.distinct_gpus * (self.gpus_per_node - 1) / self.gpus_per_node


def routing_shape(num_experts: int, top_k: int, ranks: int, gpus_per_node: int, max_nodes: int = 0) -> RoutingShape:
    """D, R, Γ of the module docstring for an EP group of `ranks` GPUs, `gpus_per_node` per node.

    Node-limited (max_nodes < nodes) is an approximation of DeepSeek-V3's rule: it takes every chosen node
    as receiving at least one expert; des/routing.sample_node_limited_top_k, which applies the rule itself,
    gives D = 3.95 and Γ = 7.49 for 256 experts, 8 nodes, M = 4, top-8 against 4 and 7.48 here."""
    g = min(gpus_per_node, ranks)
    nodes = max(1, math.ceil(ranks / g))
    if num_experts % ranks:
        raise SpecError(f"{num_experts} experts do not spread evenly over {ranks} ranks", field="moe.num_experts",
                        value=num_experts)
    chosen = nodes if max_nodes <= 0 else min(max_nodes, nodes)
    per_node, per_gpu = num_experts // nodes, num_experts // ranks
    pool = chosen * per_node
    k = min(top_k, pool)
    if chosen < nodes:  # node-limited: one expert on each chosen node (its best), the rest uniform in the pool
        forced = min(chosen, k)
        distinct_nodes = float(forced)
        distinct_gpus = forced + (chosen * g - forced) * (1 - miss_probability(pool - forced, per_gpu, k - forced))
    else:
        distinct_nodes = chosen * (1 - miss_probability(pool, per_node, k))
        distinct_gpus = chosen * g * (1 - miss_probability(pool, per_gpu, k))
    return RoutingShape(top_k, nodes, g, distinct_nodes, distinct_nodes * (nodes - 1) / nodes, distinct_gpus)


@dataclass(frozen=True, eq=False)
class DispatchModel:
    """A CollectiveModel that prices every all_to_all as the scenario's expert dispatch/combine backend and
    passes every other collective to `base` (the topology-aware model).

    `token_bytes` (dispatch, combine): bytes of one token, hidden × element bytes with FP8 scales; with a
    `direction` ("dispatch" or "combine": `directed`) the DeepEP backends price the records their kernels
    move (deepep.toml [records]: the token plus its metadata, aligned) as time, the token bytes staying the
    reported size. Without a direction, or with token_bytes 0, the records are the tokens alone."""

    base: object
    backend: str = "nccl"
    num_experts: int = 1
    top_k: int = 1
    max_nodes: int = 0
    token_bytes: tuple[float, float] = (0.0, 0.0)
    direction: str = ""
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SpecError(f"unknown dispatch backend '{self.backend}'", field="training.dispatch_backend",
                            value=self.backend, allowed=BACKENDS)
        if self.direction not in ("", "dispatch", "combine"):
            raise SpecError(f"unknown all-to-all direction '{self.direction}'", field="direction",
                            value=self.direction, allowed=("dispatch", "combine"))

    def directed(self, direction: str) -> "DispatchModel":
        """This model pricing the expert all-to-all of one direction (kept: its cache is reused)."""
        key = ("directed", direction)
        if key not in self._cache:
            self._cache[key] = self if direction == self.direction else \
                dataclasses.replace(self, direction=direction)
        return self._cache[key]

    def record_factor(self, nodes: int) -> float:
        """Bytes the kernels move per token byte: record / token of this direction's kernel (intranode on one
        node, internode across nodes, low-latency), 1.0 without a direction or for the NCCL backends."""
        if not self.direction or not self.backend.startswith("deepep"):
            return 1.0
        key = ("record", nodes == 1)
        if key not in self._cache:
            token = self.token_bytes[0 if self.direction == "dispatch" else 1]
            kind = "low_latency" if self.backend == "deepep_ll" else "intranode" if nodes == 1 else "internode"
            self._cache[key] = record_bytes(f"{kind}_{self.direction}", token, self.top_k) / token if token > 0 \
                else 1.0
        return self._cache[key]

    @property
    def hardware(self):
        return self.base.hardware

    def candidates(self, op, size_bytes, group):
        return self.base.candidates(op, size_bytes, group)

    def cost(self, op: str, size_bytes: float, group: Group) -> CollectiveCost:
        if op != "all_to_all" or self.backend == "nccl" or group.size == 1:
            return self.base.cost(op, size_bytes, group)
        if self.backend in ("pairwise", "hierarchical"):
            found = [c for c in self.base.candidates(op, size_bytes, group) if c.algorithm == self.backend]
            if not found:  # one node: there is no second level; NCCL's pairwise is what runs
                return self.base.cost(op, size_bytes, group)
            best = min(found, key=lambda c: c.time_s)
            return CollectiveCost(op, size_bytes, group.size, best.time_s, best.label, best.bottleneck)
        shape = self.shape(group.size)
        moved = size_bytes * self.record_factor(shape.nodes)  # the records the kernels move, priced as time
        w_nvl, a_nvl, w_net, a_net = self._links(moved, group)
        w_nvl, w_forward = self._nvlink_rates(w_nvl, group.size)
        time_s, bound = deepep_time_s(self._kernel, moved, shape, w_nvl, a_nvl, w_net, a_net, w_forward=w_forward)
        levels = self.hardware.interconnect
        name = levels[0].name if bound == "nvlink" or len(levels) == 1 else levels[1].name
        return CollectiveCost(op, size_bytes, group.size, time_s, self.backend, name)

    def stage_times_s(self, size_bytes: float, group: Group) -> tuple[float, float]:
        """(NVLink, network) seconds of this DeepEP all-to-all's two stages, each alone and without latency: the
        two terms `cost` takes the larger of (deepep_stage_s), for the simulator's flows of each stage."""
        shape = self.shape(group.size)
        moved = size_bytes * self.record_factor(shape.nodes)
        w_nvl, _, w_net, _ = self._links(moved, group)
        w_nvl, w_forward = self._nvlink_rates(w_nvl, group.size)
        return deepep_stage_s(self._kernel, moved, shape, w_nvl, w_net, w_forward=w_forward)

    @property
    def _kernel(self) -> str:
        """The DeepEP kernels whose path prices this backend: HybridEP's is the normal kernels' (module docstring)."""
        return "deepep" if self.backend == "hybridep" else self.backend

    def _nvlink_rates(self, w_nvl: float, ranks: int) -> tuple[float, float]:
        """(W_nvl, W_fwd) of the NVLink stage: DeepEP's link and measured forwarder; HybridEP's published rate
        (W_hep) bounds both (module docstring)."""
        if self.backend != "hybridep":
            return w_nvl, forward_rate_bytes_per_s()
        w_hep = hybridep_rate_bytes_per_s(self.hardware.name, ranks, self.direction)
        return min(w_nvl, w_hep), w_hep

    def wire_factor(self, op: str, n: int) -> float:
        """Bytes a GPU sends per byte of S: DeepEP normal kernels (R + F)/k (each (token, remote node) pair
        once over the network, each NVLink forward once), low-latency (n−1)/n (every selection, as the
        plain all-to-all), each × the record factor (record_factor); other collectives and backends: the
        busbw factor."""
        if op != "all_to_all" or self.backend not in KERNEL_BACKENDS or n <= 1:
            base = getattr(self.base, "wire_factor", None)
            return base(op, n) if base is not None else bus_bw_factor(op, n)
        return sum(self.stage_factors(n))

    def stage_factors(self, n: int) -> tuple[float, float]:
        """(NVLink, network) bytes a GPU sends per byte of S in a DeepEP all-to-all over n GPUs, records
        included: normal kernels F/k·f and R/k·f (one node: F/k·f and 0), low-latency (G−1)/n·f and
        (n−G)/n·f (every selection to the GPU that holds it), f = record_factor."""
        shape = self.shape(n)
        f = self.record_factor(shape.nodes)
        if self.backend == "deepep_ll":
            local = shape.gpus_per_node if shape.nodes > 1 else n
            return (local - 1) / n * f, (n - local) / n * f
        return shape.nvlink_forwards / shape.top_k * f, shape.remote_nodes / shape.top_k * f

    def shape(self, ranks: int) -> RoutingShape:
        key = ("shape", ranks)
        if key not in self._cache:
            g = self.hardware.interconnect[0].domain_devices
            self._cache[key] = routing_shape(self.num_experts, self.top_k, ranks, g, self.max_nodes)
        return self._cache[key]

    def _links(self, size_bytes: float, group: Group):
        """(W_nvl, α_nvl, W_net, α_net) of the NVLink level and the next one out, at this message size; the
        network's fraction of its link is at most the one DeepEP's own traffic reaches (rdma_fraction). α: each
        level's point-to-point message latency (base.p2p_latency_s: p2p_latency_us where the profile sets one)."""
        levels = self.hardware.interconnect
        nvl = levels[0]
        net = levels[1] if len(levels) > 1 else levels[0]
        message = size_bytes / max(group.size, 1)
        net_fraction = net.bw_efficiency.at(message) if len(levels) == 1 else \
            min(net.bw_efficiency.at(message), rdma_fraction())
        return (nvl.link_bw_bytes_per_s * nvl.bw_efficiency.at(message), p2p_latency_s(nvl),
                net.link_bw_bytes_per_s * net_fraction, p2p_latency_s(net))


def deepep_stage_s(backend: str, size_bytes: float, shape: RoutingShape, w_nvl: float, w_net: float,
                   w_forward: float = math.inf) -> tuple[float, float]:
    """(NVLink, network) seconds of the two stages of one DeepEP dispatch (or combine) moving S = `size_bytes`
    per GPU, latencies left out (module docstring: the terms T takes the larger of); one node: (NVLink, 0)."""
    if backend == "deepep_ll":
        n = shape.nodes
        return size_bytes / n / w_nvl, size_bytes * (n - 1) / n / w_net
    # S = tokens × k × bytes per token, so per-token counts (Γ, R) scale S / k; the NVLink stage copies the
    # token to every target GPU, its own included (module docstring)
    copies = size_bytes * shape.distinct_gpus / shape.top_k
    if shape.nodes == 1:
        return copies / w_nvl, 0.0
    return copies / min(w_nvl, w_forward), size_bytes * shape.remote_nodes / shape.top_k / w_net


def deepep_time_s(backend: str, size_bytes: float, shape: RoutingShape, w_nvl: float, a_nvl: float,
                  w_net: float, a_net: float, w_forward: float = math.inf) -> tuple[float, str]:
    """(seconds, bounding link) of one DeepEP dispatch (or combine) moving S = `size_bytes` per GPU;
    `w_forward` bounds the internode NVLink forwarding stage (W_fwd of the module docstring)."""
    nvl, net = deepep_stage_s(backend, size_bytes, shape, w_nvl, w_net, w_forward)
    if backend == "deepep_ll":
        return max(net, nvl) + 2 * a_net, ("network" if net >= nvl else "nvlink")
    if shape.nodes == 1:
        return nvl + a_nvl, "nvlink"
    return max(net, nvl) + a_net + a_nvl, ("network" if net >= nvl else "nvlink")


def deepep_logical_bw(backend: str, size_bytes: float, time_s: float, shape: RoutingShape) -> float:
    """The bandwidth DeepEP's tests print: bytes × D/k over the time (normal; one node: every received
    token, own GPU's included, = bytes × Γ/k), bytes over the time (low-latency)."""
    if backend == "deepep_ll":
        return size_bytes / time_s
    reached = shape.distinct_nodes if shape.nodes > 1 else shape.distinct_gpus
    return size_bytes * reached / shape.top_k / time_s
