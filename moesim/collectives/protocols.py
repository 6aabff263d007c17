"""NCCL's protocols as the model prices its send/recv-based collectives (all-to-all, broadcast, send/recv):
bandwidth factor, per-step latency factor, base latency. All-reduce, all-gather and reduce-scatter go
through NCCL's tuner model in nccl.py, from the same NCCL version's constants (nccl_tuning.toml).

NCCL times every (algorithm, protocol) pair as latency + bytes / bandwidth and runs the fastest
(NVIDIA/nccl src/graph/tuning.cc, `ncclTopoGetAlgoTime`); moesim does the same with these factors.
A profile's `latency_us` is read as the Simple protocol's ring hop (NVLink 3.4 us, network 14 us in NCCL
2.30.7) and its `bw_efficiency` as Simple's achieved fraction of line rate (H100: ~370 of 450 GB/s,
NVIDIA/nccl-tests#212), so the factors below are NCCL's ratios relative to Simple.

Source for every figure: NVIDIA/nccl src/graph/tuning.cc @5067397c (2.30.7; ../shared/reference/wave2.md
§1.2-1.5) —
  baseLat ring {LL 6.6, LL128 14.0, Simple 8.4} us, tree {6.8, 14.0, 8.4} us;
  hwLat ring NVLink {.6, 1.9, 3.4} us, NET {2.7, 4.0, 14.0} us per step;
  hwLat tree NVLink {.6, 1.25, 4.0} us, NET {5.0, 8.5, 14.0} us per step;
  ring LL busBw × 0.5 (capped by llMaxBw, see nccl.py); LL128 × 0.92 (120 of 128 bytes).
Non-NCCL systems (TPU ICI, gloo on CPU) have one protocol with factor 1 and no base latency.
"""

from __future__ import annotations

from dataclasses import dataclass

US = 1e-6
_SIMPLE_NVLINK_STEP_US, _SIMPLE_NET_STEP_US = 3.4, 14.0


@dataclass(frozen=True)
class Protocol:
    """Bandwidth and latency scaling of one protocol, relative to the profile's Simple figures."""

    name: str
    bw_factor_single: float  # one node, not an all-reduce
    bw_factor_multi: float  # all-reduce, or more than one node
    step_factor_switch: float  # per-step latency × this on an NVLink/switch tier (ring-like algorithms)
    step_factor_fabric: float  # ... on a NIC fabric tier
    tree_factor_switch: float  # the same for NCCL's tree
    tree_factor_fabric: float
    base_latency_ring_s: float
    base_latency_tree_s: float

    def bw_factor(self, all_reduce: bool, multi_node: bool) -> float:
        return self.bw_factor_multi if (all_reduce or multi_node) else self.bw_factor_single

    def step_factor(self, tier_kind: str, algorithm: str = "ring") -> float:
        inner = tier_kind in ("switch", "torus")
        if algorithm == "tree":
            return self.tree_factor_switch if inner else self.tree_factor_fabric
        return self.step_factor_switch if inner else self.step_factor_fabric

    def base_latency_s(self, algorithm: str) -> float:
        return self.base_latency_tree_s if algorithm == "tree" else self.base_latency_ring_s


_NV, _NET = _SIMPLE_NVLINK_STEP_US, _SIMPLE_NET_STEP_US
NCCL_PROTOCOLS = (
    Protocol("LL", 0.5, 0.5, 0.6 / _NV, 2.7 / _NET, 0.6 / _NV, 5.0 / _NET, 6.6 * US, 6.8 * US),
    Protocol("LL128", 0.92, 0.92, 1.9 / _NV, 4.0 / _NET, 1.25 / _NV, 8.5 / _NET, 14.0 * US, 14.0 * US),
    Protocol("Simple", 1.0, 1.0, 1.0, 1.0, 4.0 / _NV, 14.0 / _NET, 8.4 * US, 8.4 * US),
)
PLAIN = Protocol("", 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0)

# Send/recv inside one NVLink domain is also bounded by NCCL's p2p channel count (nccl.p2p_channels).
# Send/recv (all-to-all, pipeline hops) does not go through the tuner: LL up to this many bytes per peer,
# Simple above (NVIDIA/nccl src/enqueue.cc: NCCL_PARAM(P2pLLThreshold, "P2P_LL_THRESHOLD", 16384)); a send/recv
# between nodes runs Simple at every size (no LL buffer on its network connection: nccl_multinode.p2p_net_runs_ll).
P2P_LL_THRESHOLD_BYTES = 16384


def p2p_protocol(peer_bytes: float) -> str:
    """The protocol NCCL's send/recv uses for messages of `peer_bytes`."""
    return "LL" if peer_bytes <= P2P_LL_THRESHOLD_BYTES else "Simple"
