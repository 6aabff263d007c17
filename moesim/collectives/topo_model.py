"""The topology-aware collective model: place the group, price every algorithm × protocol, keep the fastest.

Selection rule (as NCCL's tuner, NVIDIA/nccl src/graph/tuning.cc `ncclTopoGetAlgoTime`): for every algorithm that
applies to the operation and the system, and every protocol (LL, LL128, Simple on GPUs; one on TPU ICI and CPU), time
= base latency + algorithm latency + transfer, transfer from the tier that bounds it; the minimum wins and is reported
with that tier as `bottleneck`.

Algorithms (formulas in formulas.py, hierarchy.py, torus_costs.py):
  torus (group inside one torus slice): torus_rings and halving-doubling (all-reduce, all-gather,
      reduce-scatter), dimension_ordered all-to-all, scatter_allgather and binomial broadcast, direct send/recv
  switch tiers (NVLink domain, NIC fabric, leaf uplinks), GPUs (what NCCL runs): ring, tree (all-reduce),
      pairwise and hierarchical (2DH, Tutel / DeepSpeed on top of NCCL) all-to-all, ring broadcast, direct
  switch tiers elsewhere (gloo on CPUs): ring, hierarchical_ring, rabenseifner / recursive_halving /
      recursive_doubling, pairwise and hierarchical all-to-all, ring / binomial / scatter_allgather broadcast
  members all on one chip (TPU v2/v3 cores): copies through HBM ("on_chip")
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moesim.collectives import formulas, hierarchy, nccl, nccl_facts, nccl_multinode, nccl_plan, torus_costs
from moesim.collectives import nccl_broadcast, nccl_p2p, nccl_p2p_net, nccl_p2p_peer
from moesim.collectives.algorithm_menu import (HALVING_NAME as _HALVING_NAME, P2P_OPS as _P2P_OPS, PASSES as _PASSES,
                                               algorithm_names as _algorithm_names, peer_bytes as _peer_bytes,
                                               algorithm_terms as _algorithm_terms)
from moesim.collectives.base import OPS, CollectiveCost, Group, check_op, p2p_latency_s
from moesim.collectives.nccl_channels import CHANNEL_KNOBS, check_channel_knob
from moesim.collectives.formulas import Terms
from moesim.collectives import nccl_channel_caps, nccl_env_lists, nccl_tuning, nccl_version_pick
# nccl_pick / nccl_no_pick are imported in the branches that need them (a search that never takes one skips it)
from moesim.collectives.nccl_tuner_rules import TunerRules, rules_at_release
from moesim.collectives.protocols import NCCL_PROTOCOLS, PLAIN, p2p_protocol
from moesim.collectives.tier_layout import Layout as _Layout
from moesim.collectives.tier_layout import bound as _bound
from moesim.collectives.tier_layout import concurrent_layout as _concurrent_layout
from moesim.collectives.tier_layout import nic_tier as _nic_tier
from moesim.collectives.tier_layout import p2p_line as _p2p_line
from moesim.errors import SpecError
from moesim.specs.hardware import HardwareProfile
from moesim.topology.mapping import devices_spanned
from moesim.topology.placement import GroupPlacement, place
from moesim.topology.system import System, build_system

ON_CHIP = "on_chip"
_active_version = nccl_tuning.active_version


@dataclass(frozen=True)
class Candidate:
    """One (algorithm, protocol) pricing of a collective."""

    algorithm: str
    protocol: str
    terms: Terms
    base_latency_s: float
    bottleneck: str
    tuner_offset_s: float = 0.0  # NCCL's own model time minus time_s: NCCL picks the least time_s + this (nccl.py)

    @property
    def latency_s(self) -> float:
        return self.base_latency_s + self.terms.latency_s

    @property
    def time_s(self) -> float:
        return self.base_latency_s + self.terms.time_s

    @property
    def label(self) -> str:
        return f"{self.algorithm}/{self.protocol}" if self.protocol else self.algorithm


@dataclass(frozen=True, eq=False)
class TopologyModel:
    """Collective costs on the physical topology of `hardware` (tori, NVLink domains, NIC fabrics)."""

    hardware: HardwareProfile
    nccl_algo: str = ""  # NCCL_ALGO syntax ("ring", "^nvls,nvlstree"): restrict NCCL's algorithms, as NCCL does
    collnet: bool = False  # NCCL_COLLNET_ENABLE=1: CollNet (SHARP) all-reduce where the fabric has `sharp = true`
    nccl_proto: str = ""  # NCCL_PROTO syntax ("LL128,Simple", "^LL"): the tuner's protocols (nccl_tuner_rules.py)
    tuner_rules: object = None  # nccl_tuner_rules.TunerRules: a tuner plugin's (algorithm, protocol) picks, or None
    # the run's NCCL_MIN/MAX_NCHANNELS, NCCL_NVLS_NCHANNELS, NCCL_MIN/MAX_CTAS; None = not set (nccl_channels.py)
    nccl_min_nchannels: int | None = None
    nccl_max_nchannels: int | None = None
    nccl_nvls_nchannels: int | None = None
    nccl_min_ctas: int | None = None
    nccl_max_ctas: int | None = None
    # a network peer's sends in one grouped send/recv (nccl_p2p_net.MODELS): "channels" (default, session 12), NCCL's
    # p2p channels, batches and proxy posts; "summed", one message latency per peer; "concurrent" (nccl_p2p_net.py)
    p2p_net_model: str = nccl_p2p_net.DEFAULT_MODEL
    # GB/s one ring channel moves where its ring crosses the network (nccl_plan.ring_net_caps, session 10 ringnet);
    # None = not modelled (the shipped pricing); not sourced, so an option only
    ring_net_channel_gbps: float | None = None
    per_channel_caps: bool = nccl_channel_caps.DEFAULT  # NCCL's per-channel ring LL128 / tree caps (nccl_channel_caps)
    # NCCL's p2pnChannels where a send/recv or all-to-all spans several nodes (nccl_p2p.p2p_net_nchannels: pow2Up of
    # comm->nChannels); None = the default ([p2p_net] p2p_channels; session 11 p2pcong)
    p2p_net_nchannels: int | None = None
    p2p_net_peer_rule: str = nccl_p2p_peer.DEFAULT  # a network peer's p2p channel rule (nccl_p2p_peer); "": the release's
    # how NCCL's ring broadcast is priced (nccl_broadcast.MODELS: plain, nccl, nccl-fill, ..., nccl-ll128-cap (default))
    broadcast_model: str = nccl_broadcast.DEFAULT_MODEL
    # the NCCL release the run used ("2.26.2"): its version-keyed constants (nccl_tuning.at_version); "" = the file's
    # own tables (session 12 ncclver)
    nccl_version: str = ""
    # what the release's constants move (nccl_version_pick.SCOPES): "all" (NCCL's pick and the wire) or "pick"
    nccl_version_scope: str = nccl_version_pick.DEFAULT_SCOPE
    # {multi_node: {op: NCCL_ALGO's list}} (nccl_env_lists.algo_lists: before 2.24.3 the list depends on the nodes)
    _algos: dict = field(default_factory=dict, init=False, repr=False)
    _protos: dict = field(default_factory=dict, init=False, repr=False)  # {op: NCCL_PROTO's list}, set ops only
    _systems: dict = field(default_factory=dict, init=False, repr=False)
    _placements: dict = field(default_factory=dict, init=False, repr=False)

    def job_devices(self, group: Group) -> int:
        """The job's device count: Group.devices, at least what the concurrent groups span, whole chips."""
        per_chip = self.hardware.chip.devices_per_chip
        need = max(group.devices, devices_spanned(group))
        need = -(-need // per_chip) * per_chip
        if need > self.hardware.max_devices:
            raise SpecError(f"{need} devices are needed but {self.hardware.name} has at most "
                            f"{self.hardware.max_devices}", field="devices", value=need,
                            allowed=f"1..{self.hardware.max_devices}")
        return need

    def system(self, devices: int) -> System:
        if devices not in self._systems:
            self._systems[devices] = build_system(self.hardware, devices)
        return self._systems[devices]

    def placement(self, group: Group) -> tuple[System, GroupPlacement]:
        return self._placed(group)[:2]

    def _placed(self, group: Group) -> tuple[System, GroupPlacement, dict]:
        """(system, placement, {op: _Layout}) of `group`, memoised on the group's fields (all they depend on)."""
        key = (group.size, group.stride, group.concurrent, group.devices)
        found = self._placements.get(key)
        if found is None:
            system = self.system(self.job_devices(group))
            found = self._placements[key] = (system, place(system, group), {})
        return found

    def cost(self, op: str, size_bytes: float, group: Group) -> CollectiveCost:
        """The fastest candidate (ties: the first listed); NCCL's tuner candidates ranked by its own model
        (time_s + tuner_offset_s; on hardware.pick_interconnect's levels where set: nccl_pick.py). `candidates`' pick,
        without building the losers' Candidate objects (tests/collectives/test_cost_fast_path.py checks the two agree
        bit for bit). With nccl_version set, at that release's constants (nccl_version_pick.at_release, entered here)."""
        version = self.nccl_version
        if version and self.nccl_version_scope == "all" and nccl_tuning.active_version() != version:
            with nccl_tuning.at_version(version):
                return self.cost(op, size_bytes, group)
        if group.size == 1:
            check_op(op, size_bytes)
            return CollectiveCost(op, size_bytes, 1, 0.0, "local", "none")
        rows, bound = (nccl_version_pick.priced(self, op, size_bytes, group) if version
                       else self._priced(op, size_bytes, group))
        best, best_s, best_rank = None, 0.0, 0.0
        if self.tuner_rules is not None and self.tuner_rules.covers(op):  # a tuner plugin's pick (nccl_tuner_rules.py)
            best, channels = self._rule_row(op, size_bytes, group, rows)
            if best is not None and channels > 0 and best[0] in ("ring", "tree"):  # the plugin's channels (wire only)
                rows, bound = self._priced(op, size_bytes, group, (best[0], best[1], channels))
                best = next(row for row in rows if row[:2] == best[:2])
            if best is not None:
                best_s = best[3] + best[2].time_s
        if best is None and self.hardware.pick_interconnect:  # NCCL's pick on the prior's figures (nccl_pick.py)
            from moesim.collectives import nccl_pick
            best, best_s = nccl_pick.ranked_row(self, op, size_bytes, group, rows)
        for row in rows if best is None else ():
            latency_s, transfer, overlapped = row[2]  # Candidate.time_s = base + Terms.time_s, inline
            time_s = row[3] + (latency_s + ((max(transfer) if overlapped else sum(transfer)) if transfer else 0.0))
            rank_s = time_s + row[4]  # NCCL's pick (nccl_plan.candidates), its wire time
            if best is None or rank_s < best_rank:
                best, best_s, best_rank = row, time_s, rank_s
        if best is None:  # NCCL_ALGO / NCCL_PROTO leave nothing: ring where the release falls back, else the error
            from moesim.collectives import nccl_no_pick
            return nccl_no_pick.no_algorithm(self, op, size_bytes, group)
        name, proto, terms = best[:3]
        label = f"{name}/{proto}" if proto else name
        return CollectiveCost(op, size_bytes, group.size, best_s, label,
                              bound if isinstance(bound, str) else _bound(terms, bound))

    @nccl_version_pick.at_release
    def candidates(self, op: str, size_bytes: float, group: Group) -> list[Candidate]:
        """Every applicable (algorithm, protocol) with its time."""
        rows, bound = nccl_version_pick.priced(self, op, size_bytes, group)
        if isinstance(bound, str):
            return [Candidate(name, proto, terms, base, bound, offset) for name, proto, terms, base, offset in rows]
        return [Candidate(name, proto, terms, base, _bound(terms, bound), offset)
                for name, proto, terms, base, offset in rows]

    def _priced(self, op: str, size_bytes: float, group: Group, pinned=None) -> tuple[list[tuple], str | tuple]:
        """(rows of (algorithm, protocol, Terms, base latency s, tuner offset s), bound): `bound` names the
        bottleneck of every row, or is the tiers each row's Terms index (_bound). `pinned`: nccl_plan.priced's."""
        if op not in OPS or size_bytes.__class__ not in (int, float) or not size_bytes >= 0:
            check_op(op, size_bytes)  # the one clear error (or a valid subclass / bool: on as before)
        found = self._placements.get((group.size, group.stride, group.concurrent, group.devices))  # _placed, inline
        system, pl, layouts = found if found is not None else self._placed(group)
        if size_bytes == 0 and system.nccl:  # NCCL v2.29.2-1 src/enqueue.cc taskAppend: an empty collective is dropped
            from moesim.collectives import nccl_no_pick
            if nccl_no_pick.discarded(op, size_bytes, self.nccl_version):
                return nccl_no_pick.empty_rows()
        if pl.torus is not None and pl.top == 0:
            if pl.torus.chips == 1 or (op == "send_recv" and sum(pl.torus.pair_hops) == 0):
                return [self._on_chip(op, size_bytes, group.size)], ON_CHIP
            return self._torus(op, size_bytes, group.size, system, pl), system.tiers[0].name
        version = _active_version()
        key = (op, version) if version else op  # the layout of the NCCL tables in force
        layout = layouts.get(key)
        if layout is None:
            layout = layouts[key] = self._layout(op, group.size, system, pl)
        return self._tiers(op, size_bytes, group.size, system, pl, layout, pinned), layout.tiers

    def _rule_row(self, op: str, size_bytes: float, group: Group, rows: list[tuple]) -> tuple:
        """(row, channels) of the first tuner rule that matches and that the model can run here (rows hold only
        what NCCL_ALGO / NCCL_PROTO allow), as NCCL's example tuner plugin takes it; (None, -1): NCCL's own pick."""
        system, _, layouts = self._placed(group)
        layout = layouts.get((op, v) if (v := _active_version()) else op)  # _priced's key: the tables in force
        if not system.nccl or layout is None:
            return None, -1
        nodes = max(1, group.size // layout.counts[0])  # NVLink domains spanned: nccl_plan.plan's N
        for rule in self.tuner_rules.matching(op, size_bytes, nodes, group.size):
            for row in rows:
                if row[0] == rule.algorithm and row[1] == rule.protocol:
                    return row, rule.channels
        return None, -1

    # -- members on one chip -------------------------------------------------------------------------
    def _on_chip(self, op: str, size: float, n: int) -> tuple:
        """Cores of one chip exchange through its HBM: the flat formulas with α = 0 and W = HBM bandwidth
        × memory efficiency (assumption: no published figure for core-to-core transfers on v2/v3)."""
        w = self.hardware.chip.hbm_bw_bytes_per_s * self.hardware.efficiency.memory_bandwidth
        flat = {"all_reduce": formulas.ring_all_reduce_s, "all_gather": formulas.ring_all_gather_s,
                "reduce_scatter": formulas.ring_all_gather_s, "all_to_all": formulas.pairwise_all_to_all_s,
                "broadcast": formulas.pipelined_ring_broadcast_s}
        time = formulas.send_recv_s(size, 0.0, w) if op == "send_recv" else flat[op](n, size, 0.0, w)
        return ON_CHIP, "", Terms(0.0, (time,)), 0.0, 0.0

    # -- groups inside one torus slice ---------------------------------------------------------------
    def _torus(self, op: str, size: float, n: int, system: System, pl: GroupPlacement) -> list[tuple]:
        tier, tg = system.tiers[0], pl.torus
        b = tier.bw_at(size / n if op in _PASSES or op == "all_to_all" else size)
        alpha = p2p_latency_s(tier) if op in _P2P_OPS else tier.latency_s
        if op in _PASSES:
            found = [("torus_rings", torus_costs.torus_rings_terms(_PASSES[op], size, tg, b, alpha)),
                     (_HALVING_NAME[op], torus_costs.torus_halving_doubling_terms(_PASSES[op], size, tg, b, alpha))]
        elif op == "all_to_all":
            found = [("dimension_ordered", torus_costs.torus_all_to_all_terms(tg.q * size, tg, b, alpha))]
        elif op == "broadcast":
            found = [(name, torus_costs.torus_broadcast_terms(name, size, tg, b, alpha))
                     for name in ("scatter_allgather", "binomial")]
        else:
            found = [("direct", torus_costs.torus_send_recv_terms(size, tg, b, alpha))]
        # The runtime's fixed cost of one collective (profile `collective_overhead_us`) precedes the hops.
        return [(name, "", terms, tier.overhead_s, 0.0) for name, terms in found]

    # -- switch tiers (and anything spanning more than one torus slice) ------------------------------
    def _layout(self, op: str, n: int, system: System, pl: GroupPlacement) -> "_Layout":
        """What pricing `op` over this placement needs that no message size changes (memoised per group, op)."""
        top = pl.pair_tier if op == "send_recv" else pl.top
        tiers = system.tiers[:top + 1]
        counts = pl.counts[:top + 1]
        multi = top >= 1
        protocols = NCCL_PROTOCOLS if system.nccl else (PLAIN,)
        allowed = self._protos.get(op)  # NCCL_PROTO's list for the op (tuner-picked ops only), None: not set
        no_ring = op == "broadcast" and system.nccl and "ring" not in self._allowed(op, multi)  # nccl_no_pick.py
        if system.nccl and allowed is not None:
            protocols = tuple(p for p in protocols if p.name in allowed)
        torus_port = tuple(t.kind == "torus" and pl.torus is not None for t in tiers)
        rail = any(t.kind == "fabric" and self.hardware.interconnect[t.level_index].topology == "rail_optimized"
                   for t in tiers)
        if system.nccl and op in _PASSES:  # NCCL's tuner: nccl_plan.py prices every candidate from its plan (_tiers),
            # so nothing per protocol is built here (protocols empty; the rest as below for these ops)
            return _Layout(tiers=tiers, counts=counts, top=top, multi=multi, torus_port=torus_port, p2p=None, rail=rail,
                           protocols=(), names=_algorithm_names(op, counts, n, system.nccl), cap_tiers=None,
                           p2p_protocols=False, tuner=nccl_plan.plan(
                               op, n, counts, tiers, self._allowed(op, multi), self.collnet, allowed,
                               tuple(getattr(self, k) for k in CHANNEL_KNOBS),
                               (self.ring_net_channel_gbps or 0.0) * 1e9, self.per_channel_caps))
        # send/recv's own message latency where a profile sets one (InterconnectLevel.p2p_latency_s)
        latency = [p2p_latency_s(t) if op in _P2P_OPS else t.latency_s for t in tiers]
        cap_tiers = ((tiers[0], _nic_tier(system, pl), nccl_p2p_peer.resolve(self.p2p_net_peer_rule))
                     if system.nccl and op == "send_recv" and tiers[0].kind == "switch" else None)
        # NCCL's send/recv between nodes runs Simple: its network connection has no LL buffer by default; where it
        # has one (NCCL_ALLOC_P2P_NET_LL_BUFFERS=1) that buffer is in host memory, so LL pays the host leg
        net_p2p = system.nccl and op == "send_recv" and multi and tiers[top].kind not in ("switch", "torus")
        net_simple = net_p2p and not nccl_multinode.p2p_net_runs_ll(nccl.tuning())
        leg = nccl_multinode.net_ll_send_leg_s(nccl.tuning())["ring"] if net_p2p and not net_simple else 0.0
        legs = [leg if t.kind not in ("switch", "torus") else 0.0 for t in tiers]  # added to LL steps only
        # without GPUDirect RDMA a network step of send/recv, all-to-all or broadcast stages through host memory
        staged = [nccl_facts.no_gdr_step_legs_s(nccl.tuning(), op, t) if system.nccl and multi else None for t in tiers]
        # NCCL's tuner picks a broadcast's protocol and prices no GDR leg: wire only (the offset takes them back)
        gdr_offsets = None if op != "broadcast" or not any(staged) else {
            proto.name: -hierarchy.ring_latency_s(1, n, counts, [g[proto.name] if g else 0.0 for g in staged])
            for proto in protocols}
        protocol_rows = tuple((proto, {family: tuple(lat * proto.step_factor(t.kind, family) +
                                                     (extra if proto.name == "LL" else 0.0) +
                                                     (gdr[proto.name] if gdr else 0.0)
                                                     for lat, t, extra, gdr in zip(latency, tiers, legs, staged))
                                       for family in ("ring", "tree")},
                               nccl_broadcast.protocol_bw_factor(proto, op, n, counts, multi, system.nccl))
                               for proto in protocols)
        return _Layout(
            tiers=tiers, counts=counts, top=top, multi=multi, torus_port=torus_port,
            p2p=tuple(_p2p_line(t, op) for t in tiers) if op in _P2P_OPS else None, rail=rail,
            protocols=protocol_rows,
            names=() if no_ring else _algorithm_names(op, counts, n, system.nccl), tuner=None, cap_tiers=cap_tiers,
            p2p_protocols=system.nccl and op in _P2P_OPS, p2p_net_simple=net_simple, gdr_offsets=gdr_offsets,
            p2p_concurrent=_concurrent_layout(self.p2p_net_model, self.p2p_net_nchannels, op, n, system, pl, tiers,
                                              protocol_rows, nccl_p2p_peer.resolve(self.p2p_net_peer_rule)),
            bcast=nccl_broadcast.layout(self.broadcast_model, n, counts, tiers, protocol_rows, tuple(getattr(
                self, k) for k in CHANNEL_KNOBS), self.per_channel_caps) if system.nccl and op == "broadcast" else None)

    def _tiers(self, op: str, size: float, n: int, system: System, pl: GroupPlacement, lay: "_Layout",
               pinned=None) -> list[tuple]:
        """Rows of every algorithm × protocol over the switch tiers at this size (`lay`: the size-free part)."""
        tiers, counts, top, multi = lay.tiers, lay.counts, lay.top, lay.multi
        message = size / n if op in _PASSES or op == "all_to_all" else size
        port, boost, clamped = [], pl.boost, max(float(message), 1.0)  # Tier.bw_at's message, read once
        for i, (t, torus) in enumerate(zip(tiers, lay.torus_port)):  # Tier.bw_at inline on switch tiers
            port.append(self._port_bw(system, pl, i, message) if torus else
                        t.port_bw_bytes_per_s * t.efficiency.at(clamped) * boost[i])
        if lay.p2p is not None:  # send/recv's own line where a profile sets one (InterconnectLevel.p2p_factor)
            port = [w * f for w, f in zip(port, lay.p2p)]
        if lay.tuner is not None:  # NCCL's tuner: nccl_plan.py
            return nccl_plan.priced(lay.tuner, size, port, pinned)
        copy_bw = self.hardware.chip.hbm_bw_bytes_per_s * self.hardware.efficiency.memory_bandwidth
        cap = 0.0
        if lay.cap_tiers is not None:
            # NCCL's p2p channels per peer (nccl_tuning.toml [p2p], [p2p_net]: the comm's NIC tier if it spans nodes)
            tier0, net, peer_rule = lay.cap_tiers
            if not multi:
                cap = nccl.p2p_bw_cap(size, n, tier0, net)
            elif net is not None:
                cap = nccl.p2p_net_bw_cap(size, n, tier0, net, self.p2p_net_nchannels, peer_rule)
        # send/recv-based ops on NCCL price each algorithm with the protocol its message size picks only (a
        # send/recv between nodes: Simple, _layout)
        picked = None
        if lay.p2p_protocols:  # {algorithm: its protocol}, a loop rather than a comprehension (one frame fewer)
            picked = {}
            for name in lay.names:
                picked[name] = "Simple" if lay.p2p_net_simple else p2p_protocol(_peer_bytes(name, size, n, counts))
        out = []
        for proto, alpha, factor in lay.protocols:
            if picked is not None and proto.name not in picked.values():
                continue
            bw = [w * factor for w in port]
            if cap:  # NCCL's p2p channels of one peer bound the send (computed once, above the loop)
                bw[top] = min(bw[top], cap * proto.bw_factor(False, multi))
            for name in lay.names:
                if picked is not None and proto.name != picked[name]:
                    continue
                offset = lay.gdr_offsets[proto.name] if lay.gdr_offsets else 0.0
                if lay.bcast is not None:  # NCCL's broadcast as broadcast_model says (nccl_broadcast.py)
                    terms, extra = nccl_broadcast.terms(lay.bcast, proto.name, size, n, counts, alpha["ring"], bw)
                    offset += extra
                else:
                    terms = _algorithm_terms(name, op, size, n, counts, alpha, bw, lay.rail, copy_bw)
                base = proto.base_latency_s(name)
                if lay.p2p_concurrent is not None and name in ("pairwise", "direct"):
                    terms, base = nccl_p2p_net.concurrent_terms(lay.p2p_concurrent, name, size, n, counts, proto,
                                                                alpha, factor, terms, base)
                out.append((name, proto.name, terms, base, offset))
        return out

    def __post_init__(self) -> None:
        nccl_tuning.check_version(self.nccl_version)  # first: the NCCL_ALGO / NCCL_PROTO syntax is the release's
        object.__setattr__(self, "_algos", nccl_env_lists.algo_lists_by_nodes(self.nccl_algo, self.nccl_version,
                                                                              self.collnet))
        object.__setattr__(self, "_protos", nccl_env_lists.proto_lists(self.nccl_proto, self.nccl_version))
        for name in CHANNEL_KNOBS:
            check_channel_knob(name, getattr(self, name))
        nccl_p2p_net.check_model(self.p2p_net_model)
        nccl_plan.check_ring_net_channel_gbps(self.ring_net_channel_gbps)
        nccl_p2p.check_p2p_net_nchannels(self.p2p_net_nchannels)
        nccl_p2p_peer.check_rule(self.p2p_net_peer_rule)
        nccl_broadcast.check_model(self.broadcast_model)
        nccl_version_pick.check_scope(self.nccl_version_scope)
        if self.tuner_rules is not None and not isinstance(self.tuner_rules, TunerRules):
            raise SpecError("tuner_rules must be the rules load_tuner_rules reads (or None)", field="tuner_rules",
                            value=type(self.tuner_rules).__name__)
        object.__setattr__(self, "tuner_rules", rules_at_release(self.tuner_rules, self.nccl_version))

    def _allowed(self, op: str = nccl_env_lists.OTHER, multi_node: bool = False) -> frozenset[str]:
        """NCCL_ALGO's list for `op` on a communicator over one node or several (algo_lists)."""
        lists = self._algos[multi_node]
        return lists.get(op, lists[nccl_env_lists.OTHER])

    def _port_bw(self, system: System, pl: GroupPlacement, index: int, message: float) -> float:
        """Per-device bandwidth of tier `index`: the port × efficiency, an uplink's share × boost, or, for a
        torus tier inside a larger group, the group's multi-axis ring bandwidth per device."""
        tier = system.tiers[index]
        if tier.kind == "torus" and pl.torus is not None:
            tg = pl.torus
            b = tier.bw_at(message)
            rings = sum(torus_costs.axis_ring_bw(tg.m[a], tg.wrap[a], tg.share[a], b) for a in tg.axes)
            return max(rings, b) / tg.q
        return tier.bw_at(message) * pl.boost[index]
