"""NCCL's tuner over one group: what no message size changes, computed once (`plan`: hop latencies per
algorithm × protocol, bandwidth factors, LL caps, gates), and every candidate priced from it (`priced`).
TopologyModel memoises one plan per group and op; `candidates` is both in one call.

Formulas and constants: nccl.py (notation, the helpers called here), hierarchy.py (ring and tree terms),
nccl_tuning.toml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from moesim.collectives import hierarchy
from moesim.collectives.formulas import Terms
from moesim.collectives.nccl import (PROTOCOLS, US, _caps, _hop_tables, _ll_cap, _net_ll_legs,
                                     _net_overheads, _ring_plateau, _scaled_transfer,
                                     _tree_net_hops, fill_factor, level_fill_bytes, tree_correction, tuning)
from moesim.collectives.nccl_algos import _collnet, _nvls, _nvls_fixed, _pat
from moesim.collectives.nccl_channel_caps import per_channel_cap_bytes_per_s
from moesim.collectives import nccl_code_rules, nccl_tuned_plan
from moesim.collectives.nccl_channels import (channel_rule, coll_channels, full_share_bytes, pinned_share,
                                              ring_ll_share_on, share_at)
from moesim.collectives.nccl_facts import ll128_across_nodes, no_gdr_legs_s, no_gdr_tuner_latency_s
from moesim.collectives.nccl_multinode import ring_chain_extra_net_steps
from moesim.collectives.nccl_nvls import nvls_step_rule, nvls_steps_s
from moesim.errors import SpecError

_new_terms = partial(tuple.__new__, Terms)  # Terms((latency, transfer, overlapped)) without its Python-level __new__


def candidates(op: str, size_bytes: float, n: int, counts, tiers, port_bw, allowed: frozenset[str],
               collnet: bool = False, protocols: frozenset[str] | None = None, knobs: tuple = (None,) * 5,
               ring_net_channel_bw: float = 0.0, per_channel_caps: bool = False):
    """(algorithm, protocol, Terms, base latency s, tuner offset s) of every enabled NCCL candidate for AR / AG / RS.

    The Terms are what the wire takes (wire_hops_us); the tuner offset is NCCL's own model time minus it (its
    NVLink LL / LL128 hops are smaller than the published ones: NVLink steps × (own hop − wire hop)), so NCCL's pick
    is the candidate with the least time + offset, as its tuner ranks them (topo_model.TopologyModel.cost).

    `port_bw` is W_i (usable, before protocol factors); `tiers` the System tiers of the group; `collnet`
    is NCCL_COLLNET_ENABLE (CollNet runs only where the first network tier has SHARP as well); `protocols`
    the list NCCL_PROTO sets for the op, None where it sets none (PAT, NVLS and CollNet run Simple only). A list
    that keeps LL128 enables it past NCCL's default LL128 gate (nccl_facts.ll128_across_nodes), as NCCL up to
    2.28 does (tuning.cc: the gate applies only to protoEnable == 2, the value NCCL_PROTO did not set).
    `knobs`: the run's (NCCL_MIN_NCHANNELS, NCCL_MAX_NCHANNELS, NCCL_NVLS_NCHANNELS, NCCL_MIN_CTAS, NCCL_MAX_CTAS),
    None where not set (nccl_channels.CHANNEL_KNOBS, coll_channels, nvls_channels).
    `ring_net_channel_bw`: bytes/s one ring channel moves where its ring crosses the network (the ringnet option,
    `ring_net_caps`; 0 = off, as shipped). `per_channel_caps`: NCCL's per-channel ring LL128 / tree caps
    (nccl_channel_caps.py; False = off here; TopologyModel passes nccl_channel_caps.DEFAULT, on since session 11).
    """
    return priced(plan(op, n, counts, tiers, allowed, collnet, protocols, knobs, ring_net_channel_bw,
                       per_channel_caps), size_bytes, port_bw)


@dataclass(frozen=True)
class Plan:
    """What `candidates` needs that no message size changes, for one op over one group's tiers (`plan`)."""

    op: str
    n: int
    counts: tuple[int, ...]
    tiers: tuple
    allowed: frozenset[str]
    passes: int
    multi: bool
    nodes: int
    nvls_eff: float
    fill_bytes: float  # S_fill of the ring / tree ramp
    # ring and tree: (algorithm, protocol, latency s, bandwidth factor, per-tier LL caps or None, base s, plateau,
    # (NVLink steps x (own hop − wire hop) s, the chain's wire-only s, the LL host legs' s): the tuner offset's parts,
    # (the size below which its channel share is under 1, nccl_channels.full_share_bytes; nccl_channels.channel_rule)
    ring_tree: tuple[tuple, ...]
    pat: bool
    nvls: tuple | None  # _nvls_fixed: (algorithm, latency s, S_fill) of NVLS / NVLSTree where it runs
    sharp: bool
    channels: int | None = None  # the run's comm->nChannels (nccl_channels.coll_channels); None: the system's
    nvls_steps: tuple | None = None  # nccl_nvls.nvls_step_rule of NVLS / NVLSTree where it runs (per-loop cost)
    no_gdr: tuple | None = None  # ((algorithm, s), ...) PAT / NVLSTree / CollNet legs without GDR (wire only)
    ring_net: tuple | None = None  # per-tier ring bandwidth caps of the ringnet option (ring_net_caps), None = off
    # the size-free factors of the ring's and the tree's per-tier transfer (transfer_shape; priced's fast path)
    shape: tuple = ()


def plan(op: str, n: int, counts, tiers, allowed: frozenset[str], collnet: bool = False,
         protocols: frozenset[str] | None = None, knobs: tuple = (None,) * 5, ring_net_channel_bw: float = 0.0,
         per_channel_caps: bool = False) -> Plan:
    """The size-free part of `candidates`: hop latencies per algorithm × protocol, factors, caps, gates."""
    t = tuning()
    passes = 2 if op == "all_reduce" else 1
    multi = len(counts) > 1
    nodes = max(1, n // counts[0])
    nvls_eff = getattr(tiers[0], "nvls_efficiency", 0.0)
    # the system facts NCCL reads on the network level next to the GPUs (nccl_facts.py; "" = not stated)
    cpu, path = (getattr(tiers[1], "host_cpu", ""), getattr(tiers[1], "gpu_nic_path", "")) if multi else ("", "")
    ll_cap = _ll_cap(tiers[0], nodes, cpu)
    hops, tuner0 = _hop_tables(tiers)
    # one GPU per node: NCCL prices the network hops at the tree's ("With ppn=1 latencies are fully exposed,
    # use the Tree network latency", 2.30.7 tuning.cc); several nodes: ring steps >= the net overhead
    ppn1 = multi and counts[0] == 1
    overhead = _net_overheads(cpu) if multi else None
    ll128 = ll128_across_nodes(t, getattr(tiers[0], "nccl_arch", ""), path)  # NCCL's LL128 gate by the path
    # LL128 off by default on Blackwell up to v2.24.3-1 (ncclTopoTuneModel's compCap switch; nccl_code_rules.toml)
    ll128 = ll128 and (getattr(tiers[0], "nccl_arch", "") != "blackwell" or nccl_code_rules.rule("ll128_on_blackwell"))
    # ring LL128 x 0.7 instead of 0.92 with one GPU per node, v2.18.1-1 .. v2.22.3-1 (0: not in force)
    ll128_ppn1 = nccl_code_rules.rule("ring_ll128_factor_one_gpu_per_node") if ppn1 else 0.0
    forced = protocols is not None  # NCCL_PROTO set the op's list: what it keeps is on, past the gate (candidates)
    protocols = frozenset(PROTOCOLS) if protocols is None else protocols
    staged = no_gdr_legs_s(t, path)  # host-memory legs without GPUDirect RDMA, wire only (as the LL leg)
    chain = ring_chain_extra_net_steps(passes, counts)  # the ring's slowest chunk crosses one more node boundary
    outer = len(counts) - 1  # the last tier of the group's counts holds it and is crossed (D_t > 1, hierarchy.py)
    legs = _net_ll_legs() if multi else None  # wire only: NCCL's tuner has no host leg (offset below)
    ring_tree = []
    # the system's nChannels (NCCL's tuner's busBw: graphs[a]->nChannels, which the run's knobs leave alone) and
    # the run's comm->nChannels after NCCL_MIN/MAX_NCHANNELS (the wire's channels; tuning.cc's ring plateau)
    default = t["pipeline"]["channels"]
    coll = knobs[:2] + knobs[3:]  # NCCL_MIN/MAX_NCHANNELS, NCCL_MIN/MAX_CTAS (nccl_channels.CHANNEL_KNOBS' order)
    channels = coll_channels(default, *coll) if any(k is not None for k in coll) else None
    nvls_knobs = knobs[2:] if any(k is not None for k in knobs[2:]) else None  # NVLS_NCHANNELS, the CTA bounds
    for algo in ("ring", "tree"):
        if algo not in allowed or (algo == "tree" and (op != "all_reduce" or n <= 2)):
            continue
        factors, bases = t["protocol_bw_factor"][algo], t["base_latency_us"][algo]
        # NVLink steps of the candidate (hierarchy.ring_terms / double_binary_tree_terms, tier 0)
        steps0 = passes * (n - n / counts[0]) if algo == "ring" else 2 * (counts[0] - 1)
        # the LL host legs on NCCL's own network steps (ring: passes·(N − 1); tree: 2·Σ lg D_i), not in its model
        net_steps = (passes * (n / counts[0] - 1) if algo == "ring" else _tree_net_hops(counts)) if multi else 0.0
        leg_off = legs[algo] * net_steps if multi else 0.0
        for p, proto in enumerate(PROTOCOLS):
            if proto not in protocols or (proto == "LL128" and not ll128 and not forced):  # NCCL_PROTO; gate
                continue
            alpha = [h["tree" if i else algo][p] for i, h in enumerate(hops)] if ppn1 else [h[algo][p] for h in hops]
            own0 = tuner0[algo][p]  # NCCL's own NVLink hop, which its tuner ranks by
            if algo == "ring" and multi:  # NCCL's per-step network post overhead floors the intra-node steps
                alpha[0], own0 = max(alpha[0], overhead[p]), max(own0, overhead[p])
            if algo == "ring":  # chain NVLink steps priced as network steps (wire only: see the offset)
                chain_wire = chain * (alpha[outer] - alpha[0])
                latency = hierarchy.ring_latency_s(passes, n, counts, alpha) + chain_wire
            else:
                chain_wire, latency = 0.0, hierarchy.double_binary_tree_latency_s(counts, alpha)
            plateau = algo == "ring" and proto == "Simple" and multi and op == "all_reduce"
            # NCCL's tuner sees neither the ring's extra network steps nor the LL host leg (wire only,
            # nccl_multinode.py): the offset subtracts them, so NCCL's pick stays its own model's (priced)
            leg = leg_off if p == 0 else 0.0
            if staged:  # the GDR-less legs of NCCL's own network steps (ppn = 1: the tree's hops, as alpha)
                leg += staged["tree" if ppn1 else algo][p] * net_steps
            offset = (steps0 * (own0 - alpha[0]), chain_wire, leg)
            rule = channel_rule(algo, proto, n, default if channels is None else channels, default)
            # the size below which NCCL's per-size share applies; 0 (never) for a ring LL with the share off
            full = full_share_bytes(rule) if algo != "ring" or proto != "LL" or ring_ll_share_on() else 0.0
            cap = ll_cap if p == 0 else 0.0
            if per_channel_caps:  # NCCL's per-channel ring LL128 / tree caps, tuner and wire (nccl_channel_caps.py)
                # the graph's channels: the system's count (its tuner's graphs[a]->nChannels; the run's knobs
                # change comm->nChannels only)
                per_ch = per_channel_cap_bytes_per_s(algo, proto, getattr(tiers[0], "nccl_arch", ""), nodes, default)
                cap = min((c for c in (cap, per_ch) if c > 0), default=0.0)  # 0 = no cap
            factor = ll128_ppn1 if algo == "ring" and proto == "LL128" and ll128_ppn1 else factors[p]
            if algo == "ring" and proto == "LL":  # 1/4 or 1/3 up to v2.20.5-1 (nccl_code_rules.toml [ring_ll_factor])
                factor = nccl_code_rules.ring_ll_bw_factor(op, nodes, factor)
            ring_tree.append((algo, proto, latency, factor, _caps(counts, cap),
                              bases[p] * US, plateau, offset, (full, rule)))
    simple = "Simple" in protocols  # PAT, NVLS / NVLSTree and CollNet run Simple only
    nvls = (_nvls_fixed(op, n, counts, tiers, nodes, multi, allowed, nvls_knobs) if nvls_eff > 0 and counts[0] > 1
            and simple else None)
    return Plan(op=op, n=n, counts=tuple(counts), tiers=tuple(tiers), allowed=allowed,
                passes=passes, multi=multi, nodes=nodes, nvls_eff=nvls_eff,
                fill_bytes=level_fill_bytes(tiers, multi, channels), ring_tree=tuple(ring_tree), channels=channels,
                pat=multi and counts[0] == 1 and op != "all_reduce" and "pat" in allowed and simple
                and nccl_code_rules.rule("pat_available"),  # NCCL's PAT from v2.23.4-1 (nccl_code_rules.toml)
                # NVLS across nodes goes over CollNet where SHARP is on (_collnet), else it is NVLSTree
                nvls=nvls,
                sharp=collnet and multi and op == "all_reduce" and getattr(tiers[1], "sharp", False) and simple,
                nvls_steps=nvls_step_rule(nvls[0], n, counts, tiers, nodes, nvls_knobs) if nvls else None,
                no_gdr=no_gdr_tuner_latency_s(t, path, nodes, counts[0]) if staged else None,
                ring_net=ring_net_caps(counts, default if channels is None else channels, ring_net_channel_bw)
                if multi and ring_net_channel_bw > 0 else None, shape=transfer_shape(passes, n, tuple(counts)))


def transfer_shape(passes: int, n: int, counts: tuple) -> tuple:
    """What no size changes in hierarchy.ring_transfer_s and double_binary_tree_transfer_s over `counts`, so that
    priced computes them with the same operations in the same order (bit for bit; tests/collectives/
    test_priced_fast_path.py): (passes·(n−1)/n, per tier c_i where the ring crosses it else 0; per tier the tree's
    bytes per byte of S (2 on tier 0, formulas.tree_bytes above) where D_i > 1 else 0, and η·c_i)."""
    ring_c, tree_m, tree_e, c = [], [], [], 1
    for i, g in enumerate(counts):
        d = max(1, -(-g // c))
        ring_c.append(c if g > c else 0)
        tree_m.append(0 if d <= 1 else 2 if i == 0 else 1 if d == 2 else 2)
        tree_e.append(hierarchy.TREE_EFFICIENCY * c)
        c = g
    return passes * (n - 1) / n, tuple(ring_c), tuple(tree_m), tuple(tree_e)


def check_ring_net_channel_gbps(value) -> None:
    """The ringnet option as given: None, or a finite number of GB/s > 0 (else a SpecError naming the field)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SpecError(f"must be a number of GB/s > 0, got {value!r}", field="ring_net_channel_gbps", value=value,
                        allowed="a number > 0 (GB/s per ring channel across the network), or not set")


def ring_net_caps(counts, channels: int, channel_bw: float) -> tuple[float, ...]:
    """Per-tier caps W_i of the ring's transfer (hierarchy.ring_transfer_s: tier i moves its bytes at c_i x W_i, c_i
    the devices below it) so that no network tier carries more than `channels` x `channel_bw`: the ringnet option, a
    per-channel rate of a ring channel whose ring crosses the network. Tier 0 (the NVLink domain) is not capped.

    Not sourced: NVIDIA/nccl-tests#309 (an NVIDIA maintainer) says NCCL's default CTA count keeps 8 x 400G H100 nodes
    below the NICs and NCCL_MIN_CTAS=24 goes above 380 GB/s, but no source gives the per-channel rate; the option
    takes it from the user (docs/collectives-history.md "Session 10 (ringnet)"). Off by default.
    """
    out, below = [float("inf")], counts[0]
    for g in counts[1:]:
        out.append(channels * channel_bw / below)
        below = g
    return tuple(out)


def priced(plan: Plan, size_bytes: float, port_bw, pinned: tuple | None = None) -> list[tuple]:
    """`candidates` for `plan`'s op and group at `size_bytes`, W_i = `port_bw`. `pinned` = (algorithm, protocol,
    channels): a tuner plugin's channel count for that ring / tree candidate (nccl_channels.pinned_share)."""
    op, n, counts, tiers = plan.op, plan.n, plan.counts, plan.tiers
    ramp = fill_factor(size_bytes, plan.fill_bytes)
    out = []
    for algo, proto, latency, factor, caps, base, plateau, (own_s, chain_wire, leg_s), (full, rule) in plan.ring_tree:
        # hierarchy.ring_terms / double_binary_tree_terms, their latency from the plan
        if algo == "ring" and plateau:  # the plateau scales the whole latency, the chain's wire steps with it
            before = latency
            latency, base = _ring_plateau(latency, base, size_bytes, n, tiers[0], plan.channels)
            chain_wire *= latency / before if before else 1.0
        offset = own_s - chain_wire - leg_s  # NCCL's own model time minus the wire's
        transfer = _ramped(plan.shape, algo, proto, size_bytes, port_bw, factor, caps, ramp)
        net = plan.ring_net if algo == "ring" else None
        if net is not None:  # the ringnet option's per-channel cap: wire only (NCCL's tuner has no such rate)
            capped = _scaled_transfer(_transfer(plan, algo, proto, size_bytes, port_bw, factor, caps, net), ramp)
            offset -= max(capped) - max(transfer)
            transfer = capped
        pin = pinned is not None and pinned[:2] == (algo, proto)
        if size_bytes < full or pin:  # NCCL runs its pick on fewer channels / threads: wire only, the offset takes it back
            share = (pinned_share(rule, size_bytes, pinned[2], plan.passes, proto,  # all-reduce: 2 bytes per byte
                                  nccl_tuned_plan.count_bytes(op, size_bytes, n)) if pin
                     else share_at(rule, size_bytes))
            cut = (tuple([x / share for x in transfer]) if caps is None else  # no cap: the transfer / share
                   _ramped(plan.shape, algo, proto, size_bytes, port_bw, factor * share, caps, ramp) if net is None
                   else _scaled_transfer(_transfer(plan, algo, proto, size_bytes, port_bw, factor * share, caps,
                                                   tuple(c * share for c in net)), ramp))
            offset -= max(cut) - max(transfer)
            transfer = cut
        out.append((algo, proto, _new_terms((latency, transfer, True)), base, offset))  # Terms(latency, transfer)
    if plan.pat:
        out.append(_pat(size_bytes, n, plan.nodes, tiers, port_bw))
    if plan.nvls:
        row = _nvls(op, size_bytes, n, counts, tiers, port_bw, plan.nvls_eff, plan.nodes, plan.nvls)
        if plan.nvls_steps:  # NCCL's per-size chunk: loops x a Simple NVLink step, wire only (nccl_nvls.nvls_steps_s)
            row = _wire_only(row, nvls_steps_s(plan.nvls_steps, size_bytes))
        out.append(row)
    if plan.sharp:
        out.extend(_collnet(size_bytes, counts, tiers, port_bw, plan.nvls_eff, plan.allowed))
    if plan.no_gdr:  # the GDR-less legs of PAT / NVLSTree / CollNet network hops: wire only, the offset takes them back
        legs = dict(plan.no_gdr)
        out = [row if row[0] not in legs else _wire_only(row, legs[row[0]]) for row in out]
    return out


def _wire_only(row: tuple, extra_s: float) -> tuple:
    """A candidate row (algorithm, protocol, Terms, base s, tuner offset s) with `extra_s` more latency on the wire
    and the same taken back in the offset: NCCL's tuner does not see it, so its pick does not move."""
    algo, proto, terms, base, offset = row
    wire = _new_terms((terms.latency_s + extra_s, terms.transfer_s, terms.overlapped))  # Terms(...)
    return algo, proto, wire, base, offset - extra_s


def _ramped(shape: tuple, algo: str, proto: str, size_bytes: float, port_bw, factor: float, caps,
            ramp: float) -> tuple:
    """_scaled_transfer(_transfer(...), ramp) without the ringnet option, from the plan's transfer_shape: the same
    operations in the same order (hierarchy.ring_transfer_s, double_binary_tree_transfer_s), one call per candidate
    and no comprehension (the pricing's hot path: tests/collectives/test_priced_fast_path.py checks the two agree bit
    for bit)."""
    k_ring, ring_c, tree_m, tree_e = shape
    out = []
    if algo == "ring":
        moved = k_ring * size_bytes
        if caps is None:
            for c, w in zip(ring_c, port_bw):
                out.append(moved / (c * (w * factor)) if c else 0.0)
        else:
            for c, w, cap in zip(ring_c, port_bw, caps):
                out.append(moved / (c * min(w * factor, cap)) if c else 0.0)
    else:
        k = 1.0 / tree_correction(proto, size_bytes)
        if caps is None:
            for m, e, w in zip(tree_m, tree_e, port_bw):
                out.append(m * size_bytes / (e * (w * factor)) * k if m else 0.0)
        else:
            for m, e, w, cap in zip(tree_m, tree_e, port_bw, caps):
                out.append(m * size_bytes / (e * min(w * factor, cap)) * k if m else 0.0)
    if len(out) == 1:  # one tier: no search (_scaled_transfer)
        return (out[0] * ramp,)
    worst = out.index(max(out))  # the first largest, as Terms.bottleneck
    out[worst] *= ramp
    return tuple(out)


def _transfer(plan: Plan, algo: str, proto: str, size_bytes: float, port_bw, factor: float, caps,
              net: tuple | None = None) -> tuple:
    """Per-tier transfer of a ring or tree (hierarchy.ring_transfer_s / double_binary_tree_transfer_s, the tree's
    size correction) at W_i x `factor`, capped per tier where the protocol has a cap: NCCL's busBw = nChannels x the
    per-channel bandwidth x the protocol factor, its LL cap on that total (tuning.cc ncclTopoTuneModel), so a
    channel share goes into `factor` before the cap (nccl_channels.share_at)."""
    bw = [w * factor for w in port_bw] if caps is None else [min(w * factor, c) for w, c in zip(port_bw, caps)]
    if net is not None:  # the ringnet option (ring_net_caps)
        bw = [min(w, c) for w, c in zip(bw, net)]
    if algo == "ring":
        return hierarchy.ring_transfer_s(plan.passes, size_bytes, plan.n, plan.counts, bw)
    k = 1.0 / tree_correction(proto, size_bytes)
    return tuple(x * k for x in hierarchy.double_binary_tree_transfer_s(size_bytes, plan.counts, bw))
