"""What a collective spanning nodes takes on the wire beyond NCCL's tuner formula (nccl.py prices both):
the ring's slowest chunk crosses every node boundary, and an LL network step first goes through host memory.
Both from NCCL's source (NVIDIA/nccl @5067397c, 2.30.7); the constant is NCCL's own (nccl_tuning.toml
[net_ll_send_via_host]). docs/collectives-history.md, "Multi-node floors, round 3"."""

from __future__ import annotations

US = 1e-6


def ring_chain_extra_net_steps(passes: int, counts) -> int:
    """Network steps the slowest chunk of a ring spanning nodes crosses beyond NCCL's tuner count (0 on one node).

    NCCL joins each node's chain of GPUs to the next node's, so a ring over N nodes has N network edges
    (src/graph/connect.cc connectRings), and a chunk crosses n−1 consecutive edges per pass (all-gather:
    send, n−2 × recvCopySend, recv; reduce-scatter alike; src/device/all_gather.h runRing). The pass ends
    when its last chunk arrives: a chunk that skips an NVLink edge crosses all N network edges, one more
    than the N−1 of the tuner (tuning.cc nInterSteps = nNodes−1; 2·(nNodes−1) for all-reduce since
    v2.23.4, 2·nNodes before, from v2.18.1 to v2.22.3). All-reduce chains its reduce-scatter and all-gather
    passes at one rank c, skipping edges (c → c+1) and (c−1 → c): both are NVLink edges when a node holds
    ≥ 3 ranks (+2), one of them when it holds 2 (+1). One rank per node: every edge is a network edge (0).
    Source: NVIDIA/nccl @5067397c (2.30.7) src/graph/connect.cc, src/device/all_gather.h,
    src/device/reduce_scatter.h, src/device/all_reduce.h (runRing); src/graph/tuning.cc at v2.22.3-1, v2.23.4-1.
    """
    if len(counts) < 2 or counts[0] < 2:
        return 0
    return passes if passes == 1 or counts[0] >= 3 else 1


def net_ll_send_leg_s(t: dict) -> dict[str, float]:
    """{algorithm: s} added to every LL network hop of ring and tree (`t` = nccl.tuning()): NCCL keeps a network
    connection's LL send buffer in host memory even with GPUDirect RDMA (its proxy CPU polls the flags in the
    data), so the step first goes from the GPU into host memory, priced at NCCL's LL hop over PCI.
    Source: nccl_tuning.toml [net_ll_send_via_host]; NVIDIA/nccl 2.30.7 src/transport/net.cc sendProxyConnect,
    src/graph/tuning.cc hwLatencies[PCI]; NVIDIA/nccl#756."""
    return {a: us * US for a, us in t["net_ll_send_via_host"]["pci_ll_hop_us"].items()}


def p2p_net_runs_ll(t: dict) -> bool:
    """Whether NCCL's send/recv between ranks on different nodes can run LL (`t` = nccl.tuning()): only with
    NCCL_ALLOC_P2P_NET_LL_BUFFERS=1, off by default, so such a send runs Simple at every size (its LL buffer,
    where allocated, is in host memory: net_ll_send_leg_s would apply).
    Source: nccl_tuning.toml [p2p_net] ll_buffers; NVIDIA/nccl 2.30.7 src/transport/net.cc sendProxyConnect /
    recvProxyConnect (allocP2pNetLLBuffers), src/enqueue.cc addP2pToPlan, src/init.cc ALLOC_P2P_NET_LL_BUFFERS."""
    return bool(t["p2p_net"]["ll_buffers"])
