"""DeepEP's and HybridEP's measured figures as moesim reads them (session 25, tidy25: moved out of
moesim/collectives/dispatch.py, which still exports every name): deepep.toml (the forwarding stage's rate W_fwd, the
NIC fraction DeepEP's network-bound kernels reach, the kernels' per-token records f and their SMs) and hybridep.toml
(HybridEP's published per-rank rates W_hep and its kernels' SMs), each read strictly. The notation and the costs
these figures enter: dispatch.py's docstring. Sources: deepseek-ai/DeepEP @dd758ca docs/legacy.md, README.md,
csrc/kernels/legacy/intranode.cu / internode.cu (get_num_bytes_per_token), DeepEP issue #493 (W_fwd); each data
file's own header.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from moesim.errors import SpecError
from moesim.paths import read_versioned_toml

CONSTANTS = Path(__file__).with_name("deepep.toml")
HYBRIDEP = Path(__file__).with_name("hybridep.toml")
RECORD_KERNELS = ("intranode_dispatch", "intranode_combine", "internode_dispatch", "internode_combine",
                  "low_latency_dispatch", "low_latency_combine")
RECORD_KEYS = {"fixed_bytes", "per_topk_bytes", "align_bytes", "source"}
KEYS = {"schema_version": None, "forward": {"dispatch_gb_per_s", "combine_gb_per_s", "source"},
        "rdma": {"logical_gb_per_s", "nodes", "link_gb_per_s", "source"}, "records": set(RECORD_KERNELS),
        "sms": {"normal_training", "source"}}


@lru_cache(maxsize=1)
def constants() -> dict:
    """deepep.toml, strictly: schema_version 1, exactly the keys of KEYS, positive figures."""
    data = read_versioned_toml(CONSTANTS)
    for key, sub in data.items():
        if key not in KEYS:
            raise SpecError("unknown key", file=str(CONSTANTS), field=key, allowed=sorted(KEYS))
        if KEYS[key] and set(sub) != KEYS[key]:
            raise SpecError("unknown or missing keys", file=str(CONSTANTS), field=key,
                            value=sorted(set(sub) ^ KEYS[key]), allowed=sorted(KEYS[key]))
    if set(data) != set(KEYS):
        raise SpecError("missing section", file=str(CONSTANTS), field=str(sorted(set(KEYS) - set(data))))
    forward, rdma = data["forward"], data["rdma"]
    numbers = [forward["dispatch_gb_per_s"], forward["combine_gb_per_s"], rdma["link_gb_per_s"],
               *rdma["logical_gb_per_s"], *rdma["nodes"]]
    if not all(isinstance(x, (int, float)) and x > 0 for x in numbers) or \
            len(rdma["nodes"]) != len(rdma["logical_gb_per_s"]) or min(rdma["nodes"]) < 2:
        raise SpecError("figures must be positive, one node count (>= 2) per rdma figure", file=str(CONSTANTS),
                        field="forward / rdma", value=numbers)
    sms = data["sms"]["normal_training"]
    if not isinstance(sms, int) or isinstance(sms, bool) or sms < 1:
        raise SpecError("must be an integer >= 1 (SMs)", file=str(CONSTANTS), field="sms.normal_training", value=sms)
    for kernel, record in data["records"].items():
        if set(record) != RECORD_KEYS:
            raise SpecError("unknown or missing keys", file=str(CONSTANTS), field=f"records.{kernel}",
                            value=sorted(set(record) ^ RECORD_KEYS), allowed=sorted(RECORD_KEYS))
        sizes = [record[key] for key in ("fixed_bytes", "per_topk_bytes", "align_bytes")]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in sizes) or min(sizes[:2]) < 0 or sizes[2] < 1:
            raise SpecError("byte counts must be integers >= 0 (align_bytes >= 1)", file=str(CONSTANTS),
                            field=f"records.{kernel}", value=sizes)
    return data


@lru_cache(maxsize=1)
def hybridep_rates() -> dict[str, tuple[tuple[int, float, float], ...]]:
    """hybridep.toml, strictly: hardware -> its rows (ranks, dispatch, combine GB/s) by ranks."""
    data = read_versioned_toml(HYBRIDEP)
    if set(data) != {"schema_version", "source", "rate", "sms"}:
        raise SpecError("unknown or missing keys", file=str(HYBRIDEP), value=sorted(data),
                        allowed=["schema_version", "source", "rate", "sms"])
    keys = {"hardware", "ranks", "dispatch_gb_per_s", "combine_gb_per_s"}
    out: dict[str, list] = {}
    for i, row in enumerate(data["rate"]):
        figures = [row.get(k) for k in ("ranks", "dispatch_gb_per_s", "combine_gb_per_s")]
        if set(row) != keys or not isinstance(row["hardware"], str) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in figures):
            raise SpecError("a rate needs hardware (a profile name) and positive ranks, dispatch_gb_per_s, "
                            "combine_gb_per_s", file=str(HYBRIDEP), field=f"rate[{i}]", value=row,
                            allowed=sorted(keys))
        out.setdefault(row["hardware"], []).append((int(row["ranks"]), float(figures[1]), float(figures[2])))
    return {hw: tuple(sorted(rows)) for hw, rows in out.items()}


@lru_cache(maxsize=1)
def hybridep_kernel_sms() -> int:
    """The SMs HybridEP's dispatch / combine kernels hold while they run (hybridep.toml [sms] kernels: the SM count
    its published rates were measured at), strictly a positive integer."""
    sms = read_versioned_toml(HYBRIDEP).get("sms", {})
    kernels = sms.get("kernels") if isinstance(sms, dict) else None
    if not isinstance(sms, dict) or set(sms) != {"kernels"} or isinstance(kernels, bool) \
            or not isinstance(kernels, int) or kernels < 1:
        raise SpecError("[sms] needs exactly kernels, a positive integer", file=str(HYBRIDEP), field="sms",
                        value=sms, allowed="kernels = SMs >= 1")
    return kernels


def hybridep_published_ranks(hardware: str) -> int:
    """The most ranks hybridep.toml publishes a rate for on profile `hardware` (0: none)."""
    rows = hybridep_rates().get(hardware)
    return rows[-1][0] if rows else 0


def hybridep_rate_bytes_per_s(hardware: str, ranks: int, direction: str = "") -> float:
    """W_hep: HybridEP's published per-rank rate (hybridep.toml) on profile `hardware` for `ranks` GPUs, the row of
    the fewest ranks >= `ranks` (beyond the table, its last); `direction` dispatch or combine, "" their mean;
    inf where the table has no row for the hardware (DeepEP's figures alone then)."""
    rows = hybridep_rates().get(hardware)
    if not rows:
        return math.inf
    _, dispatch, combine = next((r for r in rows if r[0] >= ranks), rows[-1])
    gb = dispatch if direction == "dispatch" else combine if direction == "combine" else (dispatch + combine) / 2
    return gb * 1e9


def record_bytes(kernel: str, token_bytes: float, top_k: int) -> float:
    """Bytes one copy of a token moves in `kernel` (deepep.toml [records]): align_up(token + fixed + per_topk·k,
    align); `token_bytes` = hidden × element bytes, FP8 scales included (what DeepEP's tests count)."""
    record = constants()["records"][kernel]
    raw = token_bytes + record["fixed_bytes"] + record["per_topk_bytes"] * top_k
    align = record["align_bytes"]
    return math.ceil(raw / align) * align

@lru_cache(maxsize=1)
def forward_rate_bytes_per_s() -> float:
    """W_fwd: the internode forwarding stage's rate (deepep.toml [forward]), one for both directions (the
    collective model does not know which one it prices): the mean of the measured dispatch and combine."""
    forward = constants()["forward"]
    return (forward["dispatch_gb_per_s"] + forward["combine_gb_per_s"]) / 2 * 1e9


def normal_kernel_sms() -> int:
    """The SMs DeepEP's normal kernels hold while they run in training (deepep.toml [sms])."""
    return constants()["sms"]["normal_training"]


@lru_cache(maxsize=1)
def rdma_fraction() -> float:
    """The NIC's usable fraction under DeepEP's traffic (deepep.toml [rdma]): the mean over DeepEP's
    network-bound figures of logical × (N − 1)/N (the remote share of its node copies), over the link."""
    rdma = constants()["rdma"]
    real = [bw * (n - 1) / n for bw, n in zip(rdma["logical_gb_per_s"], rdma["nodes"])]
    return sum(real) / len(real) / rdma["link_gb_per_s"]

