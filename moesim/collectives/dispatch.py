"""The MoE expert all-to-all as libraries run it: NCCL pairwise, hierarchical (2DH), DeepEP normal and
low-latency kernels, with node-limited routing.

Notation (uniform routing; ../shared/reference/wave2.md §3):
  E        routed experts, spread evenly over the EP group;  k  experts per token (top-k)
  N        nodes of the EP group;  G  GPUs per node (the NVLink domain);  M  max nodes per token (0 = N)
  S        bytes one GPU sends in the plain all-to-all: its tokens × k × bytes per token (nccl-tests S)
  D        distinct nodes a token reaches (its own node included):
             D = N' · (1 − C(E' − E/N, k) / C(E', k)),  N' = min(M, N), E' = N'·E/N
  R        distinct remote nodes = D · (N − 1)/N (a token's own node is one of the N' chosen with chance N'/N)
  Γ        distinct GPUs a token reaches = N'·G · (1 − C(E' − E/(N·G), k) / C(E', k))
  F        NVLink forwards per token = Γ·(G − 1)/G (every target GPU but the one the token lands on)
  W_nvl, W_net  per-GPU usable NVLink and NIC bandwidth (profile: link × bw efficiency); α_nvl, α_net hops
Costs (one direction; combine is the same path reversed):
  deepep (normal kernels): each (token, node) pair crosses the network once, to the GPU with the same
      local index, which forwards it over NVLink; the two overlap:
      T = max(S·R/k / W_net, S·F/k / W_nvl) + α_net + α_nvl   (one node: S·F/k / W_nvl + α_nvl)
  deepep_ll (low-latency kernels): one RDMA message per (token, selected expert), no dedup:
      T = max(S·(N−1)/N / W_net, S/N / W_nvl) + 2·α_net   (the flag each receiver polls: a second hop)
  pairwise / hierarchical / nccl: the collective model's all-to-all (NCCL pairwise, 2DH, or the faster).
DeepEP reports *logical* bandwidth: bytes × D/k (normal, own node included) or bytes (low-latency, every
selection) over the time (tests/test_internode.py, test_low_latency.py of deepseek-ai/DeepEP).
Sources: DeepSeek-V3 report (arXiv 2412.19437v2) §2.1.2 (node-limited routing), §3.2.2 (dispatch over
IB once per node, NVLink forwarding); deepseek-ai/DeepEP docs/legacy.md (kernels and published tables).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from moesim.collectives.base import CollectiveCost, Group, bus_bw_factor
from moesim.errors import SpecError

BACKENDS = ("nccl", "pairwise", "hierarchical", "deepep", "deepep_ll")


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
    """D, R, Γ of the module docstring for an EP group of `ranks` GPUs, `gpus_per_node` per node."""
    g = min(gpus_per_node, ranks)
    nodes = max(1, math.ceil(ranks / g))
    if num_experts % ranks:
        raise SpecError(f"{num_experts} experts do not spread evenly over {ranks} ranks", field="moe.num_experts",
                        value=num_experts)
    chosen = nodes if max_nodes <= 0 else min(max_nodes, nodes)
    per_node, per_gpu = num_experts // nodes, num_experts // ranks
    pool = chosen * per_node
    k = min(top_k, pool)
    distinct_nodes = chosen * (1 - miss_probability(pool, per_node, k))
    distinct_gpus = chosen * g * (1 - miss_probability(pool, per_gpu, k))
    return RoutingShape(top_k, nodes, g, distinct_nodes, distinct_nodes * (nodes - 1) / nodes, distinct_gpus)


@dataclass(frozen=True, eq=False)
class DispatchModel:
    """A CollectiveModel that prices every all_to_all as the scenario's expert dispatch/combine backend and
    passes every other collective to `base` (the topology-aware model)."""

    base: object
    backend: str = "nccl"
    num_experts: int = 1
    top_k: int = 1
    max_nodes: int = 0
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SpecError(f"unknown dispatch backend '{self.backend}'", field="training.dispatch_backend",
                            value=self.backend, allowed=BACKENDS)

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
        time_s, bound = deepep_time_s(self.backend, size_bytes, self.shape(group.size), *self._links(size_bytes, group))
        levels = self.hardware.interconnect
        name = levels[0].name if bound == "nvlink" or len(levels) == 1 else levels[1].name
        return CollectiveCost(op, size_bytes, group.size, time_s, self.backend, name)

    def wire_factor(self, op: str, n: int) -> float:
        """Bytes a GPU sends per byte of S: DeepEP normal kernels (R + F)/k (each (token, remote node) pair
        once over the network, each NVLink forward once), low-latency (n−1)/n (every selection, as the
        plain all-to-all); other collectives and backends: the busbw factor."""
        base = getattr(self.base, "wire_factor", None)
        plain = base(op, n) if base is not None else bus_bw_factor(op, n)
        if op != "all_to_all" or self.backend != "deepep" or n <= 1:
            return plain
        shape = self.shape(n)
        return (shape.remote_nodes + shape.nvlink_forwards) / shape.top_k

    def shape(self, ranks: int) -> RoutingShape:
        key = ("shape", ranks)
        if key not in self._cache:
            g = self.hardware.interconnect[0].domain_devices
            self._cache[key] = routing_shape(self.num_experts, self.top_k, ranks, g, self.max_nodes)
        return self._cache[key]

    def _links(self, size_bytes: float, group: Group):
        """(W_nvl, α_nvl, W_net, α_net) of the NVLink level and the next one out, at this message size."""
        levels = self.hardware.interconnect
        nvl = levels[0]
        net = levels[1] if len(levels) > 1 else levels[0]
        message = size_bytes / max(group.size, 1)
        return (nvl.link_bw_bytes_per_s * nvl.bw_efficiency.at(message), nvl.latency_s,
                net.link_bw_bytes_per_s * net.bw_efficiency.at(message), net.latency_s)


def deepep_time_s(backend: str, size_bytes: float, shape: RoutingShape, w_nvl: float, a_nvl: float,
                  w_net: float, a_net: float) -> tuple[float, str]:
    """(seconds, bounding link) of one DeepEP dispatch (or combine) moving S = `size_bytes` per GPU."""
    if backend == "deepep_ll":
        n = shape.nodes
        net = size_bytes * (n - 1) / n / w_net
        nvl = size_bytes / n / w_nvl
        return max(net, nvl) + 2 * a_net, ("network" if net >= nvl else "nvlink")
    # S = tokens × k × bytes per token, so per-token counts (F, R) scale S / k
    nvl = size_bytes * shape.nvlink_forwards / shape.top_k / w_nvl
    if shape.nodes == 1:
        return nvl + a_nvl, "nvlink"
    net = size_bytes * shape.remote_nodes / shape.top_k / w_net
    return max(net, nvl) + a_net + a_nvl, ("network" if net >= nvl else "nvlink")


def deepep_logical_bw(backend: str, size_bytes: float, time_s: float, shape: RoutingShape) -> float:
    """The bandwidth DeepEP's tests print: bytes × D/k over the time (normal; one node: every received
    token, own GPU's included, = bytes × Γ/k), bytes over the time (low-latency)."""
    if backend == "deepep_ll":
        return size_bytes / time_s
    reached = shape.distinct_nodes if shape.nodes > 1 else shape.distinct_gpus
    return size_bytes * reached / shape.top_k / time_s
