"""A send/recv between nodes with every Simple step launched by NCCL's proxy thread (TopologyModel(p2p_net_model=
"channels-steps"), an option: docs/collectives-history.md "Session 14 (p2pops)", priced under the lead's ship rule).

What NCCL runs (NVIDIA/nccl v2.29.7-1; the same in v2.29.2-1): src/enqueue.cc addP2pToPlan splits one peer's bytes
into parts (ops) on the p2p channels and each part into Simple steps of the network chunk (nccl_p2p_net.peer_steps);
src/proxy.cc progressOps walks the thread's ops and src/transport/net.cc sendProxyProgress takes one action per sub and
pass (post the buffer, isend, test), so every step of every part is launched by the one proxy thread in turn. What a
launch costs is what NCCL's tuner charges an inter-node ring step (src/graph/tuning.cc ncclTopoTuneModel, "launch
nsteps * net overhead": getNetOverhead x 3 for Simple; nccl.net_overhead_s, nccl_p2p_net.launch_s).

The pricing: latency = the shipped latency (base message latency and (ops - 1) posts,
nccl_p2p_net.channels_send_recv_terms) + the first op's own launch, i.e. π + ops x launch; transfer on the network tier
at least (steps - ops) launches, the further steps launched while earlier ones are on the wire.
"""

from __future__ import annotations

from moesim.collectives.formulas import Terms

MODEL = "channels-steps"  # the p2p_net_model choice that prices a send/recv between nodes here (nccl_p2p_net.MODELS)


def step_launches(steps: int, ops: int) -> int:
    """Launches the proxy takes after every op's first step: the further steps of all parts (tuning.cc's nsteps,
    less the ops' first steps, which the latency carries)."""
    return max(0, steps - max(1, ops))


def steps_send_recv_terms(channels: Terms, steps: int, ops: int, launch_s: float, first: bool = True,
                          floor: bool = True) -> Terms:
    """A send/recv between nodes under "channels-steps": `channels` its Terms under "channels" (latency π + (ops - 1)
    launches, nccl_p2p_net.channels_send_recv_terms); `steps` the Simple steps of all its `ops` parts
    (nccl_p2p_net.peer_steps); `launch_s` the proxy's launch of one step (nccl_p2p_net.launch_s). `first` adds the
    first op's launch to the latency (ops x launch in all, sendProxyProgress's isend of every op's first step in
    turn); `floor` bounds the network transfer by the further steps' launches (progressOps, one thread). The
    session's variants price one of the two alone (V1: floor only, V2: first only)."""
    transfer = list(channels.transfer_s)
    if floor and transfer:
        top = len(transfer) - 1
        transfer[top] = max(transfer[top], step_launches(steps, ops) * launch_s)
    latency = channels.latency_s + (launch_s if first else 0.0)
    return Terms(latency, tuple(transfer), overlapped=channels.overlapped)
