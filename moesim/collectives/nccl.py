"""NCCL's all-reduce / all-gather / reduce-scatter as its tuner prices them: algorithm × protocol latency
floors, per-hop latencies, protocol bandwidth factors, NVLS and NVLSTree, and the pipeline ramp.

Notation (tiers i = 0..t innermost first, as hierarchy.py; NCCL's names in brackets):
  n        ranks;  ppn = g_0 ranks per node [localRanks];  N = n / g_0 nodes [nNodes]
  S        size as nccl-tests counts it (base.py)
  W_i      per-rank usable bandwidth of tier i (port × efficiency), one direction
  h(a, p, link)  hop latency of algorithm a, protocol p over an NVLink or NIC hop [hwLatencies]
  b(a, p)  base latency [baseLatencies]
  η_nvls   NVLS algbw / W_0, the usable NVLink bandwidth (profile: nvls_efficiency)
  S_fill   bytes in flight before a channel streams at full rate: channels × chunk × NCCL_STEPS
Time of a candidate = b(a, p) + latency + transfer, transfer from the tier that bounds it, with the
bottleneck transfer × (1 + S_fill / (S + S_fill)): half the peak rate for messages
well below S_fill, the peak well above (the ramp nccl-tests shows between ~1 MiB and ~1 GiB).
The enabled candidate NCCL's own model rates fastest wins, as `ncclTopoGetAlgoTime` + `topoGetAlgoInfo` pick;
its time is what the wire takes: the NVLink LL / LL128 hops are the published ones (nccl_tuning.toml
[published_hop_us]), not NCCL's table. `NCCL_ALGO` syntax (`parse_nccl_algo`) restricts the set.
The candidates are priced in nccl_plan.py from the helpers here; PAT, CollNet and NVLS / NVLSTree by their own
formulas in nccl_algos.py; send/recv's channel counts and bandwidth caps are nccl_p2p.py's.
Constants: moesim/collectives/nccl_tuning.toml (NCCL 2.30.7 tuning.cc, cited there), read by nccl_tuning.py.
"""

from __future__ import annotations

from functools import lru_cache

from moesim.collectives import hierarchy
from moesim.collectives.nccl_facts import ll_multi_node_row, net_overhead_us, no_gdr_legs_s
from moesim.collectives.nccl_multinode import net_ll_send_leg_s
from moesim.collectives.formulas import Terms
# moved out of this module (tidy, session 10), re-exported here: nccl.tuning(), nccl.p2p_channels, ... keep working
from moesim.collectives.nccl_p2p import (  # noqa: F401
    p2p_bw_cap, p2p_channels, p2p_net_bw_cap, p2p_net_nchannels, p2p_net_peer_channels,
)
from moesim.collectives.nccl_tuning import active_version, tuning
from moesim.errors import SpecError

PROTOCOLS = ("LL", "LL128", "Simple")
ALGORITHMS = ("ring", "tree", "nvls", "nvlstree", "collnetdirect", "collnetchain", "pat")
UNMODELLED: tuple[str, ...] = ()  # NCCL_ALGO names moesim knows but does not model (none left)
ALIASES = {"collnet": ("collnetdirect", "collnetchain")}  # NCCL 2.5-2.13 name for CollNet
# Where each algorithm other than ring runs, as the plan gates it (nccl_plan.py): the hint of an NCCL_ALGO
# that leaves no algorithm for a call.
ALGO_NEEDS = {
    "tree": "tree: all-reduce over more than 2 ranks",
    "nvls": "nvls: one node whose NVLink level has nvls_efficiency > 0 (NVLink SHARP), Simple",
    "nvlstree": "nvlstree: all-reduce across nodes whose NVLink level has nvls_efficiency > 0, Simple",
    "collnetdirect": "collnet: --nccl-collnet (NCCL_COLLNET_ENABLE), all-reduce across nodes over a network level "
                     "with sharp = true, Simple",
    "pat": "pat: all-gather / reduce-scatter across nodes with one GPU per node, Simple",
}
ALGO_NEEDS["collnetchain"] = ALGO_NEEDS["collnetdirect"]
US = 1e-6


def parse_nccl_algo(text: str | None) -> frozenset[str]:
    """The algorithms NCCL_ALGO enables: "ring,tree" keeps those, "^nvls" drops those; "" keeps all.

    Source: NCCL env.rst (NCCL_ALGO, 2.5+; NVLS 2.17+, NVLSTree 2.18+; a leading ^ excludes).
    """
    if not text:
        return frozenset(ALGORITHMS)
    exclude = text.startswith("^")
    names = [t.strip().lower() for t in text.lstrip("^").split(",") if t.strip()]
    names = [a for name in names for a in ALIASES.get(name, (name,))]
    for name in names:
        if name in UNMODELLED:
            raise SpecError(f"NCCL algorithm '{name}' is not modelled by moesim", field="nccl_algo", value=text,
                            allowed=ALGORITHMS)
        if name not in ALGORITHMS:
            raise SpecError(f"unknown NCCL algorithm '{name}'", field="nccl_algo", value=text, allowed=ALGORITHMS)
    chosen = frozenset(ALGORITHMS) - frozenset(names) if exclude else frozenset(names)
    if not chosen:
        raise SpecError("NCCL_ALGO leaves no algorithm", field="nccl_algo", value=text, allowed=ALGORITHMS)
    return chosen


def _link(kind: str) -> str:
    return "nvlink" if kind in ("switch", "torus") else "net"


def hop_latency_s(algorithm: str, protocol: int, tier) -> float:
    """h(a, p, link) × latency_us / reference Simple ring hop: the profile's latency scales the table the wire
    takes (wire_hops_us: NCCL's, with the published NVLink LL / LL128 hops); LL and LL128 by the level's own
    figure where it has one (protocol_latency_s)."""
    t, link = tuning(), _link(tier.kind)
    return (protocol_latency_s(tier, protocol, algorithm) * wire_hops_us(link, algorithm)[protocol]
            / t["reference_hop_us"][link])


def protocol_latency_s(tier, protocol: int, algorithm: str = "ring") -> float:
    """The level's reference hop as `protocol` (index into PROTOCOLS) and `algorithm` read it: the profile's
    ll_latency_us / ll128_latency_us where set (InterconnectLevel: NCCL's hop is per link, algorithm and protocol,
    tuning.cc hwLat), else for any algorithm but ring nonring_latency_us where set (session 10, calpairs), else
    latency_us (Simple, and every protocol of a level that sets none)."""
    own = getattr(tier, _PROTOCOL_LATENCY[protocol], None) if protocol < len(_PROTOCOL_LATENCY) else None
    if own is None and algorithm != "ring":
        own = getattr(tier, "nonring_latency_s", None)
    return tier.latency_s if own is None else own


_PROTOCOL_LATENCY = ("ll_latency_s", "ll128_latency_s")  # PROTOCOLS' LL, LL128; Simple reads latency_s


def wire_hops_us(link: str, algorithm: str) -> list[float]:
    """[LL, LL128, Simple] hop (us) the wire takes: NCCL's hwLatencies row, its NVLink ring / tree LL and LL128
    entries replaced by the published per-hop figures (nccl_tuning.toml [published_hop_us]: Hu et al. 2025,
    arXiv:2507.04786 Table I). NCCL's own row stays what its tuner ranks by (candidates)."""
    t = tuning()
    row = t["hop_latency_us"][link][algorithm]
    published = t["published_hop_us"].get(link) if algorithm in ("ring", "tree") else None
    if not published:
        return row  # NCCL's own row (not to be mutated)
    return [published.get(proto, x) for proto, x in zip(PROTOCOLS, row)]


def fill_factor(size_bytes: float, fill_bytes: float) -> float:
    """1 + S_fill / (S + S_fill): the Simple pipeline's slow start (2 for tiny S, → 1 for S ≫ S_fill).

    Derivation: a channel's NCCL_STEPS slots of one chunk each must fill before it streams at the peak;
    moesim prices the first ~S_fill bytes at half the peak rate, smoothly (assumption on the shape;
    S_fill from NCCL's own channels × chunk × steps).
    """
    return 1.0 + fill_bytes / (size_bytes + fill_bytes)


def fill_bytes(multi_node: bool, channels: int | None = None) -> float:
    """S_fill = channels × chunk × NCCL_STEPS, the chunk of one node or of several (nccl_tuning.toml). Several
    nodes: `channels` is the run's comm->nChannels (nccl_channels.coll_channels; None: the system's), each with
    NCCL's 4 MiB Simple buffer; one node keeps the shape-read 16 MiB (no counterpart in NCCL's buffers)."""
    p = tuning()["pipeline"]
    if multi_node and channels is not None:
        return channels * p["inter_chunk_bytes"] * p["steps"]
    return p["channels"] * p["inter_chunk_bytes" if multi_node else "intra_chunk_bytes"] * p["steps"]


def level_fill_bytes(tiers, multi_node: bool, channels: int | None = None) -> float:
    """S_fill of a ring / tree / PAT / CollNet ramp over `tiers` (the group's, innermost first): the outermost
    tier's profile figure (InterconnectLevel.fill_bytes, e.g. a calibrated one) where it has one, else fill_bytes.
    Several nodes with a run's `channels` (NCCL_MIN/MAX_NCHANNELS): the profile's figure × channels / the system's,
    as fill_bytes scales NCCL's per-channel buffers (the profile's figure is the system's own channel count's)."""
    own = getattr(tiers[-1], "fill_bytes", None) if tiers else None
    if own is None:
        return fill_bytes(multi_node, channels)
    return own * channels / tuning()["pipeline"]["channels"] if multi_node and channels is not None else own


def nvls_fill_bytes(n: int, tier0, multi_node: bool = False, nvls_knobs: tuple | None = None) -> float:
    """S_fill of NVLS over n ranks of one domain: n × NVLS channels × chunk (nccl_tuning.toml [nvls]; with a run's
    `nvls_knobs` = (NCCL_NVLS_NCHANNELS, NCCL_MIN_CTAS, NCCL_MAX_CTAS), nccl_channels.nvls_channels); the one-node
    S_fill where the architecture has no NVLS channel count listed and the run sets none."""
    t = tuning()["nvls"]
    channels = t["channels_multi_node" if multi_node else "channels"].get(getattr(tier0, "nccl_arch", ""))
    if nvls_knobs is not None and (channels or nvls_knobs[0] is not None):
        from moesim.collectives.nccl_channels import nvls_channels

        channels = nvls_channels(channels or 0, *nvls_knobs)
    return n * channels * t["chunk_bytes"] if channels else fill_bytes(False)


@lru_cache(maxsize=256)
def _tree_net_hops(counts: tuple[int, ...]) -> float:  # counts: the placement's tuple (hashable)
    """Network hops of NCCL's tree all-reduce over the tiers above the first, 2·Σ_{i≥1} ⌈lg D_i⌉: the tree's
    latency (hierarchy.double_binary_tree_latency_s) with a unit hop on every tier but the first."""
    return hierarchy.double_binary_tree_latency_s(counts, (0.0,) + (1.0,) * (len(counts) - 1))


@lru_cache(maxsize=1)
def _net_ll_legs() -> dict[str, float]:
    """{ring, tree: s} of the LL network send's host leg (nccl_multinode.net_ll_send_leg_s), read once."""
    return net_ll_send_leg_s(tuning())


def net_overhead_s(protocol: str, host_cpu: str = "") -> float:
    """NCCL's network post overhead per ring step of a several-node ring (Simple × 3): every intra-node step
    costs at least this (nccl_tuning.toml [net_overhead]; NCCL 2.30.7 tuning.cc getNetOverhead), by the hosts'
    CPU (nccl_facts.net_overhead_us; "" = not stated: the Intel / default figure)."""
    t = tuning()
    return net_overhead_us(t, host_cpu) * (t["net_overhead"]["simple_multiplier"] if protocol == "Simple" else 1.0) * US


@lru_cache(maxsize=8)
def _net_overheads(host_cpu: str = "") -> tuple[float, ...]:
    return tuple(net_overhead_s(proto, host_cpu) for proto in PROTOCOLS)


def tree_correction(protocol: str, size_bytes: float, algorithm: str = "tree") -> float:
    """NCCL's all-reduce bandwidth factor for this size: treeCorrectionFactor[p][log2(bytes/64)] where
    0 <= log2(bytes/64) < the algorithm's bound (tree 23: none from 512 MiB; NVLSTree 24), else 1.0.

    Source: NVIDIA/nccl ncclTopoGetAlgoTime (src/graph/tuning.cc v2.18.1-1 .. v2.30.7-1) / treeCorrectionFactor
    (nccl_tuning.toml [tree_correction], [tree_correction_bound]).
    """
    t = tuning()
    row = t["tree_correction"][protocol]
    units = int(size_bytes) >> 6
    index = units.bit_length() - 1  # log2i
    return row[index] if 0 <= index < min(len(row), t["tree_correction_bound"][algorithm]) else 1.0


def _ring_plateau(latency_s: float, base_s: float, size_bytes: float, n: int, tier0,
                  channels: int | None = None) -> tuple[float, float]:
    """Multi-node Simple ring all-reduce: latency (base included) × 1.4 (1.9 before Ampere) once
    bytes / (channels × ranks) ≥ 64, NCCL's "plateau effect of ring" (nccl_tuning.toml [ring_plateau]);
    `channels`: the run's comm->nChannels, which NCCL's tuner reads here (None: the system's)."""
    t = tuning()
    rule = t["ring_plateau"]
    if size_bytes / ((t["pipeline"]["channels"] if channels is None else channels) * n) < \
            rule["min_bytes_per_channel_rank"]:
        return latency_s, base_s
    k = rule["factor_volta"] if getattr(tier0, "nccl_arch", "") == "volta" else rule["factor"]
    return latency_s * k, base_s * k


def _hop_tables(tiers) -> tuple[list[dict], dict]:
    """Per tier, {algorithm: [hop s for LL, LL128, Simple]} the wire takes (hop_latency_s for every pair at once),
    and tier 0's hops in NCCL's own table (what its tuner ranks by; the two differ on NVLink LL / LL128 only). The
    wire's LL / LL128 hops scale by the level's own figures where set (protocol_latency_s); NCCL's own table by
    latency_us alone (its tuner ranks by hwLat, which no measured protocol hop changes)."""
    key = tuple((tier.kind, tier.latency_s, getattr(tier, "gpu_nic_path", ""), protocol_latency_s(tier, 0),
                 protocol_latency_s(tier, 1), tuple(protocol_latency_s(tier, p, "tree") for p in range(3)))
                for tier in tiers) + (active_version(),)  # the NCCL version in force: its hwLat rows
    found = _HOPS.get(key)
    if found is None:
        t = tuning()
        wire = []
        for kind, latency, path, ll, ll128, other in key[:-1]:
            link = _link(kind)
            # per protocol (PROTOCOLS): ring's, and every other algorithm's (nonring_latency_us where set)
            scales = [x / t["reference_hop_us"][link] for x in (ll, ll128, latency)]
            scales_other = [x / t["reference_hop_us"][link] for x in other]
            wire.append({a: [k * x for k, x in zip(scales if a == "ring" else scales_other, wire_hops_us(link, a))]
                         for a in ALGORITHMS})
            if link == "net":  # an LL network step first crosses PCIe into host memory (net_ll_send_leg_s)
                for a, leg in _net_ll_legs().items():
                    wire[-1][a][0] += leg
                staged = no_gdr_legs_s(t, path)  # without GPUDirect RDMA: host-memory legs (nccl_facts.py)
                for a, legs in (staged or {}).items():
                    wire[-1][a] = [x + leg for x, leg in zip(wire[-1][a], legs)]
        link = _link(key[0][0])
        scale = key[0][1] / t["reference_hop_us"][link]
        own = {a: [scale * x for x in t["hop_latency_us"][link][a]] for a in ("ring", "tree")}
        found = _HOPS[key] = (wire, own)
    return found


_HOPS: dict = {}


def _ll_cap(tier, nodes: int, host_cpu: str = "") -> float:
    """LL bus bandwidth cap of the NVLink tier's architecture for `nodes` nodes, bytes/s (0 = none)."""
    arch = getattr(tier, "nccl_arch", "")
    if not arch:
        return 0.0
    t = tuning()["ll_max_bus_gb_per_s"]
    # several nodes: NCCL reads the row of the host CPU (nccl_facts.ll_multi_node_row)
    row = t[arch if nodes == 1 else ll_multi_node_row(tuning(), host_cpu)]
    return row[0 if nodes == 1 else 1 if nodes == 2 else 2] * 1e9


def _caps(counts, cap: float) -> tuple[float, ...] | None:
    """Per-tier bandwidth caps from a per-rank bus cap: tier i's c_i ports together carry at most `cap` per
    rank (None: no cap)."""
    if cap <= 0:
        return None
    return tuple(cap / (counts[i - 1] if i > 0 else 1) for i in range(len(counts)))


def _scaled(terms: Terms, k: float) -> Terms:
    """`terms` with its bottleneck transfer × k."""
    if not terms.transfer_s:
        return terms
    return Terms(terms.latency_s, _scaled_transfer(terms.transfer_s, k), terms.overlapped)


def _scaled_transfer(transfer: tuple[float, ...], k: float) -> tuple[float, ...]:
    """`transfer` with its largest (first largest: Terms.bottleneck) entry × k."""
    if len(transfer) == 1:  # one tier (most groups on one node): no search
        return (transfer[0] * k,)
    if not transfer:
        return transfer
    worst = transfer.index(max(transfer))
    return transfer[:worst] + (transfer[worst] * k,) + transfer[worst + 1:]
