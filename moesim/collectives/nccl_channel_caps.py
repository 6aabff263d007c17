"""NCCL's per-channel bandwidth caps of ring LL128 and the tree (issue 11, session 11 ramp round; priced by
default, per_channel_caps=False leaves them out): its tuner caps those candidates' bus bandwidth at the graph's
channels x a per-channel figure. Constants: nccl_tuning.toml [per_channel_caps]; docs/collectives-history.md
"Session 11 (ramp)"."""

from __future__ import annotations

from moesim.collectives.nccl_tuning import tuning

GB = 1e9
DEFAULT = True  # TopologyModel(per_channel_caps=...) unset: NCCL's caps priced (session 11 ramp round: rule met)
CHOICES = {"on": True, "off": False}  # `moesim collective --per-channel-caps`


def per_channel_cap_bytes_per_s(algorithm: str, protocol: str, arch: str, nodes: int, channels: int) -> float:
    """Bus bandwidth cap (bytes/s, 0 = none) NCCL's tuner puts on a ring / tree candidate:
      ring LL128:  nChannels x perChMaxRingLL128Bw
      tree:        nChannels x perChMaxTreeBw (all-reduce, every protocol), LL128 also <= nChannels x
                   perChMaxTreeLL128Bw after its x 120/128 (so the cap is min(tree x 120/128, tree LL128))
    with nChannels the graph's channels (`channels` / graph_channels_divisor) and the row of `arch` at `nodes`
    (1, 2, 4+). Source: NVIDIA/nccl v2.29.2-1 src/graph/tuning.cc ncclTopoTuneModel (l. 303-308),
    src/graph/connect.cc ncclTopoPostset (l. 452). Tree LL's /3.8 is the candidate's factor: its cap is the tree's
    x 1/3.8 (taken as the factor applies, nccl_tuning.toml [protocol_bw_factor])."""
    t = tuning()["per_channel_caps"]
    table = {"ring_ll128": t["ring_ll128_gb_per_s"], "tree_ll128": t["tree_ll128_gb_per_s"], "tree": t["tree_gb_per_s"]}
    if arch not in table["tree"]:
        return 0.0
    col = 0 if nodes <= 1 else 1 if nodes == 2 else 2
    graph = channels / t["graph_channels_divisor"]
    if algorithm == "ring":
        return graph * table["ring_ll128"][arch][col] * GB if protocol == "LL128" else 0.0
    if algorithm != "tree":
        return 0.0
    tree = graph * table["tree"][arch][col] * GB
    if protocol == "LL128":  # a release without perChMaxTreeLL128Bws (v2.18.1-1: its row [0, 0, 0]) caps at the tree's
        return min((c for c in (tree * 120 / 128, graph * table["tree_ll128"][arch][col] * GB) if c > 0), default=0.0)
    factor = tuning()["protocol_bw_factor"]["tree"][0]
    return tree * factor if protocol == "LL" else tree
