"""NCCL's protocols as the model prices them: bandwidth factor, per-step latency factor, base latency.

NCCL times every (algorithm, protocol) pair as latency + bytes / bandwidth and runs the fastest
(NVIDIA/nccl src/graph/tuning.cc, `ncclTopoGetAlgoTime`); moesim does the same with these factors.
A profile's `latency_us` is read as the Simple protocol's latency per step and its `bw_efficiency`
as Simple's achieved fraction of line rate (H100: ~370 of 450 GB/s, NVIDIA/nccl-tests#212), so the
factors below are NCCL's ratios relative to Simple.

Source for every figure: NVIDIA/nccl src/graph/tuning.cc @01afd20a —
  baseLat ring {LL 3.6, LL128 10.0, Simple 8.4} us, tree {4.4, 4.4, 0} us;
  hwLat ring NVLink {.47, 1.9, 3.4} us, NET {2.7, 4.0, 9.6} us per step;
  hwLat tree NVLink {.52, 1.2, 28} us, NET {5.0, 8.5, 50} us per step (Simple: a 256 kB chunk's latency);
  ring LL busBw × 1/4 (all-reduce or several nodes) else × 1/3; LL128 × 0.92 (120 of 128 bytes).
Non-NCCL systems (TPU ICI, gloo on CPU) have one protocol with factor 1 and no base latency.
"""

from __future__ import annotations

from dataclasses import dataclass

US = 1e-6
_SIMPLE_NVLINK_STEP_US, _SIMPLE_NET_STEP_US = 3.4, 9.6


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
    Protocol("LL", 1 / 3, 1 / 4, 0.47 / _NV, 2.7 / _NET, 0.52 / _NV, 5.0 / _NET, 3.6 * US, 4.4 * US),
    Protocol("LL128", 0.92, 0.92, 1.9 / _NV, 4.0 / _NET, 1.2 / _NV, 8.5 / _NET, 10.0 * US, 4.4 * US),
    Protocol("Simple", 1.0, 1.0, 1.0, 1.0, 28 / _NV, 50 / _NET, 8.4 * US, 0.0),
)
PLAIN = Protocol("", 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0)

# Send/recv (all-to-all, pipeline hops) does not go through the tuner: LL up to this many bytes per peer,
# Simple above (NVIDIA/nccl src/enqueue.cc: NCCL_PARAM(P2pLLThreshold, "P2P_LL_THRESHOLD", 16384)).
P2P_LL_THRESHOLD_BYTES = 16384


def p2p_protocol(peer_bytes: float) -> str:
    """The protocol NCCL's send/recv uses for messages of `peer_bytes`."""
    return "LL" if peer_bytes <= P2P_LL_THRESHOLD_BYTES else "Simple"
