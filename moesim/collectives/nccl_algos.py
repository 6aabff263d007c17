"""NCCL's candidates priced by formulas of their own: PAT (all-gather / reduce-scatter, one GPU per node), CollNet
(Direct, Chain and NVLS+CollNet over SHARP switches) and NVLS / NVLSTree (moved out of nccl.py; ring and tree are
priced in nccl_plan.py from hierarchy.py). Notation: nccl.py's docstring. Constants: nccl_tuning.toml.
"""

from __future__ import annotations

from moesim.collectives.formulas import Terms, lg
from moesim.collectives.nccl import (PROTOCOLS, US, _link, _scaled, fill_factor, hop_latency_s, level_fill_bytes,
                                     nvls_fill_bytes, tree_correction, tuning)
from moesim.collectives import nccl_code_rules

X86_HOSTS = ("intel", "amd", "mixed")  # host_cpu values NCCL reads as NCCL_TOPO_CPU_ARCH_X86 ("" = not stated: no)


def nvlstree_corrected(tiers) -> bool:
    """Whether NCCL corrects NVLSTree's all-reduce bandwidth by treeCorrectionFactor: minCompCap >= 100 (Blackwell)
    and cpuArch x86, from v2.29.2-1 (src/graph/tuning.cc ncclTopoGetAlgoTime; nccl_code_rules.toml
    [nvlstree_tree_correction], not priced unless a version names it). A host CPU not stated is not taken as x86."""
    return (getattr(tiers[0], "nccl_arch", "") == "blackwell" and getattr(tiers[1], "host_cpu", "") in X86_HOSTS
            and nccl_code_rules.rule("nvlstree_tree_correction"))


def _pat(size_bytes, n, nodes, tiers, port_bw):
    """PAT all-gather / reduce-scatter, one GPU per node (nccl_tuning.toml [pat]): base 8 us + lg N·h_net/3.5 +
    2.8 us·n; the network moves S at 0.75 of the port, the several-node ramp on it."""
    t = tuning()
    p = t["pat"]
    simple = PROTOCOLS.index("Simple")
    latency = lg(nodes) * hop_latency_s("pat", simple, tiers[1]) / p["inter_divisor"] + p["per_rank_us"] * US * n
    transfer = (0.0, size_bytes / (p["bw_factor"] * port_bw[1])) + tuple(0.0 for _ in tiers[2:])
    terms = Terms(latency, transfer)
    return ("pat", "Simple", _scaled(terms, fill_factor(size_bytes, level_fill_bytes(tiers, True))),
            t["base_latency_us"]["pat"][simple] * US, 0.0)


def _collnet(size_bytes, counts, tiers, port_bw, nvls_eff, allowed):
    """CollNet all-reduce over SHARP switches (NCCL_COLLNET_ENABLE=1): CollNetDirect, CollNetChain and
    NVLS+CollNet, Simple only, formulas and constants in nccl_tuning.toml [collnet] (NCCL 2.30.7 tuning.cc,
    ../shared/reference/wave2.md §1.4-1.6). The switches reduce, so no term grows with the node count:
    transfer = S / (bus_to_alg × figure) on the NVLink tier (NVLS: S/(η_nvls·W_0)) and on the node's NICs
    (c_1 = ppn ports), the several-node ramp on the bottleneck."""
    t = tuning()["collnet"]
    simple = PROTOCOLS.index("Simple")
    ppn = counts[0]
    nics = port_bw[1] * ppn
    net = size_bytes / (t["bus_to_alg"] * nics)
    rest = tuple(0.0 for _ in tiers[2:])
    fill = level_fill_bytes(tiers, True)
    out = []

    def hop(algo, tier):
        return hop_latency_s("tree" if ppn == 1 and _link(tier.kind) == "net" else algo, simple, tier)

    if "collnetdirect" in allowed:
        latency = 2 * (min(1, ppn - 1) * hop("collnetdirect", tiers[0])
                       + t["direct_per_local_rank_us"] * US * (ppn - 1)) + hop("collnetdirect", tiers[1])
        k = t["direct_bw_factor_hopper"] if getattr(tiers[0], "nccl_arch", "") in ("hopper", "blackwell") else 1.0
        intra = size_bytes / (t["bus_to_alg"] * port_bw[0] * k) if ppn > 1 else 0.0
        terms = Terms(latency, (intra, net) + rest)
        out.append(("collnetdirect", "Simple", _scaled(terms, fill_factor(size_bytes, fill)), 0.0, 0.0))
    if "collnetchain" in allowed:
        latency = 2 * (ppn - 1) * hop("collnetchain", tiers[0]) + hop("collnetchain", tiers[1])
        intra = size_bytes / (t["bus_to_alg"] * port_bw[0]) if ppn > 1 else 0.0
        terms = Terms(latency, (intra, net) + rest)
        out.append(("collnetchain", "Simple", _scaled(terms, fill_factor(size_bytes, fill)), 0.0, 0.0))
    if nvls_eff > 0 and ppn > 1 and "nvls" in allowed:
        latency = hop("nvls", tiers[0]) + hop("nvls", tiers[1])
        terms = Terms(latency, (size_bytes / (port_bw[0] * nvls_eff), net) + rest)
        fill = max(fill, nvls_fill_bytes(ppn, tiers[0], multi_node=True))
        out.append(("nvls", "Simple", _scaled(terms, fill_factor(size_bytes, fill)), 0.0, 0.0))
    return out


def _nvls_fixed(op, n, counts, tiers, nodes, multi, allowed, nvls_knobs=None) -> tuple[str, float, float] | None:
    """_nvls' algorithm, latency s and S_fill (nothing in them depends on the size); None where NCCL_ALGO or
    the op rules it out. `nvls_knobs`: nvls_fill_bytes' (None: the run sets none). NCCL runs NVLS all-gather /
    reduce-scatter only up to NCCL_MAX_NVLS_ARITY (32) local ranks (enqueue.cc updateCollCostTable, v2.28.9-1 /
    v2.30.7-1: `info->func != ncclFuncAllReduce && comm->localRanks > NCCL_MAX_NVLS_ARITY` skips NVLS; nccl_tuning.toml
    [nvls_chunk] max_arity)."""
    simple = PROTOCOLS.index("Simple")
    if not multi:
        if "nvls" not in allowed or (op != "all_reduce" and n > tuning()["nvls_chunk"]["max_arity"]):
            return None
        return "nvls", hop_latency_s("nvls", simple, tiers[0]), nvls_fill_bytes(n, tiers[0], False, nvls_knobs)
    if op != "all_reduce" or "nvlstree" not in allowed:
        return None
    latency = hop_latency_s("nvlstree", simple, tiers[0]) + 2 * lg(nodes) * hop_latency_s("nvlstree", simple, tiers[1])
    return "nvlstree", latency, max(level_fill_bytes(tiers, True),
                                    nvls_fill_bytes(counts[0], tiers[0], True, nvls_knobs))


def _nvls(op, size_bytes, n, counts, tiers, port_bw, nvls_eff, nodes, fixed):
    """NVLink SHARP (Simple only). One node: the switch reduces (multimem.ld_reduce) and multicasts
    (multimem.st), so each GPU moves S out and S in for an all-reduce and S(n−1)/n for all-gather /
    reduce-scatter: transfer_0 = S·f/(η_nvls·W_0). Several nodes (NVLSTree, all-reduce only): NVLS
    inside the node, a tree between nodes over the node's c_1 NICs: transfer_1 = S/(c_1·W_1) on ≤ 2
    nodes (NCCL counts bwInter twice there), 2S/(c_1·W_1) beyond.
    latency: NVLS h(nvls, Simple, nvlink); NVLSTree h(nvlstree, nvlink) + 2·lg N·h(nvlstree, net)
    (`fixed`: _nvls_fixed, once per plan).
    Source: wave2.md §1.4-1.6 (NCCL 2.30.7 tuning.cc gating and formulas); η_nvls from the maintainers'
    ~480 GB/s busbw (algbw ~275 GB/s) on 8×H100 (NVIDIA/nccl-tests#212), set in the hardware profile.
    """
    name, latency, fill = fixed
    line0 = port_bw[0] * nvls_eff
    if name == "nvls":  # one tier: _scaled(Terms(latency, (S·f / line0,)), ramp) written out, the same operations
        share = 1.0 if op == "all_reduce" else (n - 1) / n
        return "nvls", "Simple", Terms(latency, (size_bytes * share / line0 * fill_factor(size_bytes, fill),)), 0.0, 0.0
    line0 = port_bw[0] * (getattr(tiers[0], "nvlstree_efficiency", 0.0) or nvls_eff)  # calibrate: its own figure
    inter = port_bw[1] * counts[0] * getattr(tiers[1], "nvlstree_net_factor", 1.0)  # the node's c_1 = g_0 NICs
    outer = size_bytes / inter * (1 if nodes <= 2 else 2)
    transfer = (size_bytes / line0, outer) + (0.0,) * (len(tiers) - 2)
    if nvlstree_corrected(tiers):  # NCCL's bw x treeCorrectionFactor (ncclTopoGetAlgoTime from v2.29.2-1)
        k = 1.0 / tree_correction("Simple", size_bytes, "nvlstree")
        transfer = tuple(x * k for x in transfer)
    return "nvlstree", "Simple", _scaled(Terms(latency, transfer), fill_factor(size_bytes, fill)), 0.0, 0.0
