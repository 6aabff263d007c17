"""Which algorithms a system's collective library runs for an operation, and the Terms of each: the menu
TopologyModel (topo_model.py) prices per protocol and tier before it keeps the fastest.

NCCL on GPUs runs ring and tree (all-reduce), grouped send/recv (pairwise all-to-all, send/recv), ring broadcast,
plus the two-level all-to-all MoE libraries build on it (2DH, Tutel / DeepSpeed); elsewhere (gloo on CPUs) the
textbook set adds hierarchical_ring and the halving-doubling family. Formulas in hierarchy.py. Split out of
topo_model.py (session 8) unchanged; topo_model imports every name under its old private one.
"""

from __future__ import annotations

from moesim.collectives import hierarchy
from moesim.collectives.formulas import Terms

PASSES = {"all_reduce": 2, "all_gather": 1, "reduce_scatter": 1}
P2P_OPS = ("all_to_all", "send_recv")
HALVING_NAME = {"all_reduce": "rabenseifner", "all_gather": "recursive_doubling",
                "reduce_scatter": "recursive_halving"}


def algorithm_names(op: str, counts, n: int, nccl_lib: bool) -> tuple[str, ...]:
    """The algorithms the system's library runs: NCCL's on GPUs (ring, tree, grouped send/recv, plus the
    two-level all-to-all MoE libraries build on it), the textbook set elsewhere."""
    multi = len(counts) > 1
    if op in PASSES:
        names = ["ring"]
        if op == "all_reduce" and nccl_lib:
            names.append("tree")
        if not nccl_lib:
            names += (["hierarchical_ring"] if multi else []) + [HALVING_NAME[op]]
        return tuple(names)
    if op == "all_to_all":
        return ("pairwise", "hierarchical") if multi and counts[0] > 1 and n % counts[0] == 0 else ("pairwise",)
    if op == "broadcast":
        return ("ring",) if nccl_lib else ("ring", "binomial", "scatter_allgather")
    return ("direct",)


def algorithm_terms(name: str, op: str, size: float, n: int, counts, alpha, bw, rail: bool, copy_bw: float) -> Terms:
    """Terms of one of algorithm_names' algorithms; `alpha` holds the "ring" and "tree" step latencies."""
    if op in PASSES:
        passes = PASSES[op]
        if name == "ring":
            return hierarchy.ring_terms(passes, size, n, counts, alpha["ring"], bw)
        if name == "tree":
            return hierarchy.double_binary_tree_terms(size, counts, alpha["tree"], bw)
        if name == "hierarchical_ring":
            return hierarchy.hierarchical_ring_terms(passes, size, counts, alpha["ring"], bw)
        return hierarchy.halving_doubling_terms(passes, size, counts, alpha["ring"], bw)
    if name == "pairwise":
        return hierarchy.pairwise_all_to_all_terms(size, n, counts, alpha["ring"], bw, rail)
    if name == "hierarchical":
        return hierarchy.two_level_all_to_all_terms(size, n, counts, alpha["ring"], bw, copy_bw)
    if op == "broadcast":
        return hierarchy.broadcast_terms(name, size, n, counts, alpha["ring"], bw)
    return hierarchy.send_recv_terms(size, len(counts) - 1, len(counts), alpha["ring"], bw)


def peer_bytes(algorithm: str, size: float, n: int, counts) -> float:
    """Bytes per send/recv message: S/n per peer (pairwise), S·g_0/n between nodes (2DH), S (send/recv)."""
    if algorithm == "pairwise":
        return size / n
    if algorithm == "hierarchical":
        return size * counts[0] / n
    return size
