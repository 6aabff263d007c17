"""nccl-tests-style size sweeps: the rows `moesim collective` prints, from any CollectiveModel.

Conventions (NVIDIA/nccl-tests doc/PERFORMANCE.md, src/common.cu, src/*.cu):
  sizes      MIN, 2·MIN, 4·MIN, ... ≤ MAX (`-f 2`); a size is rounded down to whole elements per rank
             for all_gather, reduce_scatter and all_to_all (`count/nranks*nranks`, src/alltoall.cu)
  count      elements of `float` (4 bytes) per rank as nccl-tests prints it: S/4 for all_reduce,
             broadcast, send_recv; S/(4·n) for all_gather, reduce_scatter, all_to_all
  algbw      S / t (decimal GB/s);  busbw = algbw × bus_bw_factor(op, n) (base.py)
"""

from __future__ import annotations

from moesim.collectives.base import OPS, CollectiveModel, Group
from moesim.errors import SpecError

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


def collective_rows(model: CollectiveModel, op: str, sizes: list[int], group: Group) -> list[dict]:
    """One row per size: bytes, count, type, redop, root, time, algbw, busbw, algorithm, bottleneck."""
    if op not in OPS:
        raise SpecError(f"unknown collective '{op}'", field="op", value=op, allowed=OPS)
    rows = []
    for requested in sizes:
        size = aligned_size(op, int(requested), group.size)
        cost = model.cost(op, float(size), group)
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
                      tuner_rules: str | None = None, channels: dict | None = None) -> dict:
    """Everything `moesim collective` prints: the group, the system it lands on, one row per size.

    `devices` is the group size (nccl-tests' rank count); `stride` spaces its members on the device
    ids; `concurrent` groups of the same shape run at once and share links (see topology/placement.py);
    `nccl_algo` restricts NCCL's algorithms as NCCL_ALGO does (collectives/nccl.py); `collnet` is
    NCCL_COLLNET_ENABLE (SHARP all-reduce where the fabric has it); `nccl_proto` restricts the protocols as
    NCCL_PROTO does and `tuner_rules` (a CSV path) is a tuner plugin's picks (collectives/nccl_tuner_rules.py);
    `channels` sets the run's channel knobs {nccl_min_nchannels, nccl_max_nchannels, nccl_nvls_nchannels,
    nccl_min_ctas, nccl_max_ctas} (NCCL_MIN_NCHANNELS, ...; collectives/nccl_channels.py), absent or None = not set.
    """
    from moesim.collectives.select import default_model
    from moesim.specs.load import load_hardware

    hw = load_hardware(hardware)
    if op not in OPS:
        raise SpecError(f"unknown collective '{op}'", field="op", value=op, allowed=OPS)
    for name, value in (("--devices", devices), ("--group-stride", stride), ("--concurrent", concurrent)):
        if value < 1:
            raise SpecError(f"must be >= 1, got {value}", field=name, value=value)
    if devices > hw.max_devices:
        raise SpecError(f"{devices} devices is more than {hw.name} holds", field="--devices", value=devices,
                        allowed=f"1..{hw.max_devices}")
    group = Group(size=devices, stride=stride, concurrent=concurrent)
    model = default_model(hw)
    from moesim.collectives.nccl_channels import CHANNEL_KNOBS, channel_counts

    knobs = {name: (channels or {}).get(name) for name in CHANNEL_KNOBS}
    if nccl_algo or collnet or nccl_proto or tuner_rules or any(v is not None for v in knobs.values()):
        from moesim.collectives.nccl_tuner_rules import load_tuner_rules
        from moesim.collectives.topo_model import TopologyModel

        rules = load_tuner_rules(tuner_rules) if tuner_rules else None
        model = TopologyModel(hw, nccl_algo=nccl_algo, collnet=collnet, nccl_proto=nccl_proto, tuner_rules=rules,
                              **knobs)
    rows = collective_rows(model, op, sizes, group)
    system = model.system(model.job_devices(group)).summary() if hasattr(model, "system") else {}
    return {"hardware": hw.name, "op": op, "devices": devices, "group_stride": stride, "concurrent": concurrent,
            "nccl_algo": nccl_algo, "nccl_collnet": collnet, "nccl_proto": nccl_proto, "tuner_rules": tuner_rules,
            **knobs, "nccl_channels": channel_counts(model, group, knobs),
            "system": system, "results": rows, "avg_busbw_GBps": average_busbw_GBps(rows)}
