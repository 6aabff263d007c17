"""nccl-tests-style size sweeps: the rows `moesim collective` prints, from any CollectiveModel.

Conventions (NVIDIA/nccl-tests doc/PERFORMANCE.md, src/common.cu, src/*.cu):
  sizes      MIN, 2·MIN, 4·MIN, ... ≤ MAX (`-f 2`); a size is rounded down to whole elements per rank
             for all_gather, reduce_scatter and all_to_all (`count/nranks*nranks`, src/alltoall.cu)
  count      elements of `float` (4 bytes) per rank as nccl-tests prints it: S/4 for all_reduce,
             broadcast, send_recv; S/(4·n) for all_gather, reduce_scatter, all_to_all
  algbw      S / t (decimal GB/s);  busbw = algbw × bus_bw_factor(op, n) (base.py)
"""

from __future__ import annotations

import warnings

from moesim.collectives import nccl_broadcast, nccl_channel_caps, nccl_p2p, nccl_p2p_net, nccl_plan
from moesim.collectives import nccl_p2p_peer, nccl_tuning, nccl_version_pick
from moesim.collectives.a2a_choice import A2A_ALGORITHMS, DEFAULT_A2A_ALGORITHM  # noqa: F401 (callers read them here)
from moesim.collectives.base import OPS, CollectiveCost, CollectiveModel, Group
from moesim.collectives.nccl_broadcast import DEFAULT_MODEL as DEFAULT_BROADCAST_MODEL
from moesim.collectives.nccl_broadcast import MODELS as BROADCAST_MODELS  # noqa: F401 (the CLI's help reads it here)
from moesim.collectives.nccl_p2p_net import DEFAULT_MODEL as DEFAULT_P2P_NET_MODEL
from moesim.collectives.nccl_p2p_net import MODELS as P2P_NET_MODELS  # noqa: F401 (as BROADCAST_MODELS)
from moesim.errors import SpecError
from moesim.topology.mapping import devices_spanned

NCCL_TESTS_TYPE, NCCL_TESTS_TYPE_BYTES = "float", 4  # nccl-tests' default `-d float`
SWEEP_FACTOR = 2  # nccl-tests `-f 2`
_PER_RANK_OPS = ("all_gather", "reduce_scatter", "all_to_all")
_REDOP = {"all_reduce": "sum", "reduce_scatter": "sum"}


def sweep_sizes(min_bytes: int, max_bytes: int, factor: int = SWEEP_FACTOR) -> list[int]:
    """MIN, MIN·f, MIN·f², ... up to MAX inclusive (nccl-tests `-b MIN -e MAX -f f`)."""
    if min_bytes <= 0 or max_bytes < min_bytes:
        raise SpecError(f"a sweep needs 0 < MIN <= MAX, got {min_bytes}:{max_bytes}", field="--sweep",
                        value=f"{min_bytes}:{max_bytes}")
    sizes, size = [], min_bytes
    while size <= max_bytes:
        sizes.append(size)
        size *= factor
    return sizes


def aligned_size(op: str, size_bytes: int, n: int) -> int:
    """The size nccl-tests actually runs: whole `float` elements, per rank where the op splits by rank."""
    unit = NCCL_TESTS_TYPE_BYTES * (n if op in _PER_RANK_OPS else 1)
    return size_bytes // unit * unit


def element_count(op: str, size_bytes: int, n: int) -> int:
    """The `count` column: elements per rank (nccl-tests' paramcount)."""
    return size_bytes // NCCL_TESTS_TYPE_BYTES // (n if op in _PER_RANK_OPS else 1)


def all_to_all_cost(model: CollectiveModel, size_bytes: float, group: Group, a2a_algorithm: str) -> CollectiveCost:
    """The all-to-all `a2a_algorithm` names (A2A_ALGORITHMS): the fastest of the model's candidates of that
    algorithm ("nccl-tests": "pairwise", as calibrate/bench_cost.benchmark_cost prices an alltoall_perf row),
    the model's own choice where it has none of them (one node has no 2DH; a torus slice runs its own) or for
    "auto"."""
    name = "pairwise" if a2a_algorithm == "nccl-tests" else a2a_algorithm
    if name != "auto" and group.size > 1 and hasattr(model, "candidates"):
        found = [c for c in model.candidates("all_to_all", size_bytes, group) if c.algorithm == name]
        if found:
            best = min(found, key=lambda c: c.time_s)
            return CollectiveCost("all_to_all", size_bytes, group.size, best.time_s, best.label, best.bottleneck)
    return model.cost("all_to_all", size_bytes, group)


def collective_rows(model: CollectiveModel, op: str, sizes: list[int], group: Group,
                    a2a_algorithm: str = "auto") -> list[dict]:
    """One row per size: bytes, count, type, redop, root, time, algbw, busbw, algorithm, bottleneck
    (an all-to-all priced as `a2a_algorithm` says: all_to_all_cost)."""
    if op not in OPS:
        raise SpecError(f"unknown collective '{op}'", field="op", value=op, allowed=OPS)
    rows = []
    for requested in sizes:
        size = aligned_size(op, int(requested), group.size)
        cost = model.cost(op, float(size), group) if op != "all_to_all" else \
            all_to_all_cost(model, float(size), group, a2a_algorithm)
        algbw = cost.algbw_bytes_per_s if cost.time_s > 0 else 0.0
        busbw = cost.busbw_bytes_per_s if cost.time_s > 0 else 0.0
        rows.append({
            "bytes": size, "count": element_count(op, size, group.size), "type": NCCL_TESTS_TYPE,
            "redop": _REDOP.get(op, "none"), "root": 0 if op == "broadcast" else -1,
            "time_s": cost.time_s, "time_us": cost.time_s * 1e6,
            "algbw_GBps": algbw / 1e9, "busbw_GBps": busbw / 1e9,
            "algorithm": cost.algorithm, "bottleneck": cost.bottleneck,
        })
    return rows


def average_busbw_GBps(rows: list[dict]) -> float:
    """nccl-tests' closing "Avg bus bandwidth" line: the mean busbw over the rows."""
    return sum(r["busbw_GBps"] for r in rows) / len(rows) if rows else 0.0


def collective_report(hardware: str, op: str, devices: int, sizes: list[int], stride: int = 1,
                      concurrent: int = 1, nccl_algo: str = "", collnet: bool = False, nccl_proto: str = "",
                      tuner_rules: str | None = None, channels: dict | None = None,
                      a2a_algorithm: str = DEFAULT_A2A_ALGORITHM, p2p_net_model: str = DEFAULT_P2P_NET_MODEL,
                      broadcast_model: str = DEFAULT_BROADCAST_MODEL,
                      ring_net_channel_gbps: float | None = None, per_channel_caps: bool | None = None,
                      p2p_net_nchannels: int | None = None, nccl_version: str = "",
                      nccl_version_scope: str = nccl_version_pick.DEFAULT_SCOPE,
                      p2p_net_peer_rule: str = nccl_p2p_peer.DEFAULT) -> dict:
    """Everything `moesim collective` prints: the group, the system it lands on, one row per size.

    `devices` is the group size (nccl-tests' rank count); `stride` spaces its members on the device
    ids; `concurrent` groups of the same shape run at once and share links (see topology/placement.py);
    `nccl_algo` restricts NCCL's algorithms as NCCL_ALGO does (collectives/nccl.py); `collnet` is
    NCCL_COLLNET_ENABLE (SHARP all-reduce where the fabric has it); `nccl_proto` restricts the protocols as
    NCCL_PROTO does and `tuner_rules` (a CSV path) is a tuner plugin's picks (collectives/nccl_tuner_rules.py);
    `channels` sets the run's channel knobs {nccl_min_nchannels, nccl_max_nchannels, nccl_nvls_nchannels,
    nccl_min_ctas, nccl_max_ctas} (NCCL_MIN_NCHANNELS, ...; collectives/nccl_channels.py), absent or None = not set;
    `a2a_algorithm` which all-to-all is priced (A2A_ALGORITHMS, all_to_all_cost), ignored by the other ops;
    `p2p_net_model` how the network peers of a flat all-to-all / a send/recv between nodes are priced
    (collectives/nccl_p2p_net.py MODELS: "channels", the default, "summed", "concurrent" or "channels-steps");
    `broadcast_model` how NCCL's ring broadcast is priced (nccl_broadcast.MODELS; "nccl-ll128-cap" the default);
    `ring_net_channel_gbps` the ringnet option's GB/s per ring channel across the network
    (collectives/nccl_plan.ring_net_caps), None = off; `per_channel_caps` NCCL's per-channel ring LL128 / tree caps
    (collectives/nccl_channel_caps.py), None = the default (nccl_channel_caps.DEFAULT).
    `p2p_net_nchannels` NCCL's p2p channels where a send/recv or all-to-all spans several nodes
    (collectives/nccl_p2p.p2p_net_nchannels), None = the default. `nccl_version` the NCCL release the run uses
    ("2.26.2": its version-keyed constants, collectives/nccl_tuning.at_version), "" = today's tables;
    `nccl_version_scope` what they move (collectives/nccl_version_pick.SCOPES: "all", the default, or "pick").
    `p2p_net_peer_rule` NCCL's rule for a network peer's p2p channels (collectives/nccl_p2p_peer.RULES), "" = the
    release in force (`nccl_version`; none named: "2.29", the default pricing).
    """
    from moesim.collectives.select import default_model
    from moesim.specs.load import load_hardware

    if a2a_algorithm not in A2A_ALGORITHMS:
        raise SpecError(f"unknown all-to-all algorithm '{a2a_algorithm}'", field="--a2a-algorithm",
                        value=a2a_algorithm, allowed=A2A_ALGORITHMS)
    nccl_p2p_net.check_model(p2p_net_model)  # before the profile is read: TopologyModel's own checks
    nccl_plan.check_ring_net_channel_gbps(ring_net_channel_gbps)
    nccl_p2p.check_p2p_net_nchannels(p2p_net_nchannels)
    nccl_broadcast.check_model(broadcast_model)
    nccl_tuning.check_version(nccl_version, field="--nccl-version")
    nccl_version_pick.check_scope(nccl_version_scope, field="--nccl-version-scope")
    nccl_p2p_peer.check_rule(p2p_net_peer_rule, field="--p2p-net-peer-rule")
    hw = load_hardware(hardware, field="hardware")
    if op not in OPS:
        raise SpecError(f"unknown collective '{op}'", field="op", value=op, allowed=OPS)
    for name, value in (("--devices", devices), ("--group-stride", stride), ("--concurrent", concurrent)):
        if value < 1:
            raise SpecError(f"must be >= 1, got {value}", field=name, value=value)
    if devices > hw.max_devices:
        raise SpecError(f"{devices} devices is more than {hw.name} holds", field="--devices", value=devices,
                        allowed=f"1..{hw.max_devices}")
    group = Group(size=devices, stride=stride, concurrent=concurrent)
    spanned = devices_spanned(group)
    if spanned > hw.max_devices:  # the stride or the groups at once, not --devices, carry the group past the profile
        flag = "--group-stride" if stride > 1 else "--concurrent"
        raise SpecError(f"{devices} ranks at stride {stride}, {concurrent} group(s) at once, span {spanned} devices "
                        f"but {hw.name} has at most {hw.max_devices}", field=flag, value=stride if stride > 1 else
                        concurrent, allowed=f"groups within {hw.max_devices} devices")
    model = default_model(hw)
    from moesim.collectives.nccl_channels import CHANNEL_KNOBS, channel_counts

    knobs = {name: (channels or {}).get(name) for name in CHANNEL_KNOBS}
    options = [("--nccl-algo", nccl_algo), ("--nccl-collnet", collnet), ("--nccl-proto", nccl_proto),
               ("--tuner-rules", tuner_rules), *(("--" + k.replace("_", "-"), v is not None) for k, v in knobs.items()),
               ("--p2p-net-model", p2p_net_model != DEFAULT_P2P_NET_MODEL),
               ("--broadcast-model", broadcast_model != DEFAULT_BROADCAST_MODEL),
               ("--ring-net-channel-gbps", ring_net_channel_gbps is not None),
               ("--per-channel-caps", per_channel_caps is not None and per_channel_caps != nccl_channel_caps.DEFAULT),
               ("--p2p-net-nchannels", p2p_net_nchannels is not None), ("--nccl-version", nccl_version),
               ("--nccl-version-scope", nccl_version_scope != nccl_version_pick.DEFAULT_SCOPE),
               ("--p2p-net-peer-rule", p2p_net_peer_rule)]
    given = [name for name, value in options if value]
    if given:
        if hw.device_kind != "gpu":  # the model prices these devices' own collectives: NCCL's options would do nothing
            raise SpecError(f"NCCL's options ({', '.join(given)}) apply to GPUs; {hw.name}'s devices are "
                            f"{hw.device_kind} (collectives priced on their own links, no NCCL)", field=given[0],
                            value=hw.device_kind, allowed="a GPU profile")
        from moesim.collectives.nccl_tuner_rules import load_tuner_rules
        from moesim.collectives.topo_model import TopologyModel

        rules = load_tuner_rules(tuner_rules) if tuner_rules else None
        model = TopologyModel(hw, nccl_algo=nccl_algo, collnet=collnet, nccl_proto=nccl_proto, tuner_rules=rules,
                              p2p_net_model=p2p_net_model, broadcast_model=broadcast_model,
                              ring_net_channel_gbps=ring_net_channel_gbps,
                              per_channel_caps=nccl_channel_caps.DEFAULT if per_channel_caps is None else per_channel_caps,
                              p2p_net_nchannels=p2p_net_nchannels, nccl_version=nccl_version,
                              nccl_version_scope=nccl_version_scope, p2p_net_peer_rule=p2p_net_peer_rule, **knobs)
        rows = collective_rows(model, op, sizes, group, a2a_algorithm)
        ignored = [name for name, value in options[:3] if value]  # NCCL_ALGO, NCCL_COLLNET_ENABLE, NCCL_PROTO
        if op in ("all_to_all", "send_recv") and ignored:  # NCCL's p2p: no algorithm, the protocol by size
            warnings.warn(f"{', '.join(ignored)} do(es) not apply to {op}: NCCL runs it as point-to-point sends, "
                          "their protocol picked by size; priced as without")
        elif collnet and not any(level.sharp for level in hw.interconnect):  # CollNet needs in-network reduction
            warnings.warn(f"--nccl-collnet: no interconnect level of {hw.name} has sharp = true, so NCCL has no "
                          "CollNet to run there; priced as without")
    else:
        rows = collective_rows(model, op, sizes, group, a2a_algorithm)
    system = model.system(model.job_devices(group)).summary() if hasattr(model, "system") else {}
    return {"hardware": hw.name, "op": op, "devices": devices, "group_stride": stride, "concurrent": concurrent,
            "a2a_algorithm": a2a_algorithm, "p2p_net_model": p2p_net_model, "broadcast_model": broadcast_model,
            "ring_net_channel_gbps": ring_net_channel_gbps,
            "per_channel_caps": getattr(model, "per_channel_caps", nccl_channel_caps.DEFAULT),
            "p2p_net_nchannels": p2p_net_nchannels, "nccl_version": getattr(model, "nccl_version", ""),
            "nccl_version_scope": getattr(model, "nccl_version_scope", nccl_version_pick.DEFAULT_SCOPE),
            "p2p_net_peer_rule": getattr(model, "p2p_net_peer_rule", nccl_p2p_peer.DEFAULT),
            "nccl_algo": nccl_algo, "nccl_collnet": collnet, "nccl_proto": nccl_proto, "tuner_rules": tuner_rules,
            **knobs, "nccl_channels": channel_counts(model, group, knobs),
            "system": system, "results": rows, "avg_busbw_GBps": average_busbw_GBps(rows)}
