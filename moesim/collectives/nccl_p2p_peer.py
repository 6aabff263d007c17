"""The p2p channels NCCL gives a peer on another node, by the rule of the NCCL release (issue 11, session 14 a2ab200;
docs/collectives-history.md "Session 14 (a2ab200)").

NVIDIA/nccl src/graph/paths.cc, `ncclTopoGetNchannels` (remote branch) and `ncclTopoComputeP2pChannels`, read at every
tag v2.18.1-1 .. v2.30.7-1 (the tags of nccl_tuning.toml [versions]); three rules, by the release that runs them:
- "2.18" (v2.18.1-1 .. v2.19.4-1): NCCL_NCHANNELS_PER_NET_PEER's default, `NCCL_PARAM(NChannelsPerNetPeer, ..., 2)`;
- "2.20" (v2.20.3-1 .. v2.28.9-1): c = 2, halved while c x nRanks > 4 x p2pnChannels ("Avoid overloading channels with
  8+ operations as we loose the sync warp"), then max(NICs by bandwidth, c);
- "2.29" (v2.29.2-1 .. v2.30.7-1): max(NICs, ceil(NIC GB/s / NCCL_P2P_PER_CHANNEL_NET_BW)), and in
  ncclTopoComputeP2pChannels the communicator's per-peer count halved while x ceil(nRanks / 8) > p2pnChannels.
"" follows the release in force (nccl_code_rules.toml [p2p_net_peer_channels] at nccl_tuning.active_version; "2.29"
where no release is named: the pricing before this round). Figures: nccl_tuning.toml [p2p_net]."""

from __future__ import annotations

from moesim.collectives import nccl_code_rules
from moesim.collectives.nccl_tuning import tuning
from moesim.errors import SpecError

RULES = ("2.18", "2.20", "2.29")
LATEST = RULES[-1]  # the rule priced where no release is named (nccl_code_rules.toml [p2p_net_peer_channels] unset)
DEFAULT = ""  # TopologyModel.p2p_net_peer_rule unless set: the rule of the release in force


def check_rule(rule, field: str = "p2p_net_peer_rule") -> None:
    """SpecError unless `rule` is "" (the release in force) or one of RULES."""
    if rule != DEFAULT and rule not in RULES:
        raise SpecError(f"unknown p2p network-peer channel rule {rule!r}", field=field, value=rule,
                        allowed='"" (the rule of the release in force), ' + ", ".join(RULES))


def resolve(rule: str) -> str:
    """The rule that prices: `rule`, or where it is "" the code rule of the release in force (nccl_code_rules)."""
    return rule or nccl_code_rules.rule("p2p_net_peer_channels")


def network_peer_channels(rule: str, n: int, p2p_nchannels: int, net_tier) -> int:
    """Channels NCCL gives one peer on another node (before the communicator's minimum over peers and pow2Up),
    in an n-rank communicator with `p2p_nchannels` p2p channels, by `rule` (RULES; paths.cc ncclTopoGetNchannels)."""
    tn = tuning()["p2p_net"]
    if rule == "2.18":  # NCCL_PARAM(NChannelsPerNetPeer, "NCHANNELS_PER_NET_PEER", 2), v2.18.1-1 .. v2.19.4-1
        return tn["default_net_peer_channels"]
    if rule == "2.20":  # 2, halved while c x nRanks > 4 x p2pnChannels; at least the NICs (v2.20.3-1 .. v2.28.9-1)
        c = tn["default_net_peer_channels"]
        while c * n > tn["ops_per_channel_before_halving"] * p2p_nchannels and c > 1:
            c //= 2
        return max(tn["nics_per_gpu"], c)
    nic_gb_per_s = int(net_tier.port_bw_bytes_per_s / 1e9 + 1e-9)  # "2.29": v2.29.2-1 .. v2.30.7-1
    return max(tn["nics_per_gpu"], -(-nic_gb_per_s // tn["per_channel_net_gb_per_s"]))


def halves_to_one_round(rule: str) -> bool:
    """Whether the communicator's per-peer count is halved until every peer fits one round (ncclTopoComputeP2pChannels
    with nNodes > 1 and NCCL_NCHANNELS_PER_NET_PEER unset: from v2.29.2-1, rule "2.29")."""
    return rule == "2.29"
