"""The ramp rows (128 KiB - 512 MiB) of every healthy multi-node ring all_gather / reduce_scatter log, one process per
GPU, one by one against the network message NCCL sends for them: the bytes one channel moves per ring step, the
message its protocol puts on the wire for them, whether that message is above NCCL_IB_AR_THRESHOLD (sent as an RDMA
write plus a 0-byte write with immediate where adaptive routing is on: NCCL's default on an InfiniBand link layer),
and the measured time's step from the row before against the priced one. Session 17 (agrs):
docs/collectives-history.md "Session 17 (agrs)".

Per row (NVIDIA/nccl v2.24.3-1 / v2.28.9-1 / v2.29.2-1; figures and lines in scripts/ring_message_rows.toml, the
scheduler's in moesim/collectives/nccl_tuning.toml [channels] and its release rows): the
channels NCCL runs at the priced (ring, protocol): its tuner's loop (nccl_channels.ring_tree_channels), then its
scheduler's cells of MinTrafficPerChannel (scheduled_channels; it cuts only rows below 256 KiB here);
data per channel per ring step m = bytes / (ranks x channels) (enqueue.cc spreads a ring collective's per-rank count
over the channels, all_gather.h / reduce_scatter.h send each channel's part one ring step at a time), capped at one
protocol step (LL128 576,000 B, Simple a 1 MiB slice); wire bytes: LL128 divUp(m, 1920) x 2048, LL divUp(m, 8) x 16,
Simple m. Nothing is fitted; the prior is priced as the per-log table prices it (calibrate/nccl_error.log_error).

Run: python scripts/ring_message_rows.py [--write]   (--write replaces the marked block of
docs/collectives-history.md)
"""

from __future__ import annotations

import math
import tomllib

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import _size, entry_nccl_version, read_manifest  # noqa: E402
from moesim.collectives.nccl_channels import ring_tree_channels, traffic_cell_bytes  # noqa: E402
from moesim.collectives.nccl_tuning import at_version, tuning  # noqa: E402
from moesim.collectives.topo_model import TopologyModel  # noqa: E402
from scripts.docblock import fenced_table, run_check  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
FACTS = ROOT / "scripts" / "ring_plateau_facts.toml"
NCCL = tomllib.loads((ROOT / "scripts" / "ring_message_rows.toml").read_text(encoding="utf-8"))
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN ring_message_rows: python scripts/ring_message_rows.py --write -->"
END = "<!-- END ring_message_rows -->"
OPS = ("all_gather", "reduce_scatter")
LOW, HIGH = 128 * 2**10, 512 * 2**20
STEP_LOW, STEP_HIGH = 256 * 2**10, 64 * 2**20  # the rows whose step from the row before is compared


def scheduled_channels(protocol: str, size_bytes: float, channels: int, version: str) -> int:
    """Channels NCCL's scheduler spreads an all_gather / reduce_scatter of `size_bytes` (nccl-tests' size, the
    collective's traffic) over, given the tuner's `channels`: ceil(traffic / cell traffic), at most `channels`
    (enqueue.cc scheduleCollTasksToPlan: MinTrafficPerChannel and LL's multiplier of the release `version`, moesim's
    nccl_tuning.toml [channels] and their [versioned] rows; "" = the unset figures, v2.30.7-1's 32 KiB, LL 4x denser)."""
    with at_version(version):
        cell = traffic_cell_bytes(protocol)  # None before v2.22.3-1: no such scheduler, the tuner's channels whole
    return channels if cell is None else max(1, min(channels, math.ceil(size_bytes / cell)))


def message_data_bytes(protocol: str, size_bytes: float, ranks: int, channels: int) -> float:
    """Data bytes of one channel's network message per ring step of an all_gather / reduce_scatter of `size_bytes`
    (the total, nccl-tests' size) over `ranks` on `channels`, capped at one protocol step (module doc)."""
    m = size_bytes / (ranks * channels)
    # one LL128 step's data: nccl_tuning.toml [broadcast_chunk_bytes] LL128 (BROADCAST_CHUNKSTEPS 1: one step)
    cap = {"LL128": tuning()["broadcast_chunk_bytes"]["LL128"], "Simple": NCCL["simple"]["slice_bytes"]}.get(protocol)
    return m if cap is None else min(m, cap)


def wire_bytes(protocol: str, data_bytes: float) -> int:
    """Bytes NCCL's proxy hands the network for `data_bytes` of data in one step: LL128 whole 2048-B warp slices of
    1920 data bytes (prims_ll128.h waitSend), LL 16-B lines of 8 (prims_ll.h), Simple the data."""
    if protocol == "LL128":
        ll128 = NCCL["ll128"]
        return math.ceil(data_bytes / ll128["slice_data_bytes"]) * ll128["slice_wire_bytes"]
    if protocol == "LL":
        return math.ceil(data_bytes / NCCL["ll"]["line_data_bytes"]) * NCCL["ll"]["line_wire_bytes"]
    return math.ceil(data_bytes)


def above_ar_threshold(wire: int) -> bool:
    """ncclIbMultiSend's test `send.size > ncclParamIbArThreshold()` at the default threshold."""
    return wire > NCCL["ib"]["ar_threshold_bytes"]


def _fabric(cluster: str) -> str:
    facts = tomllib.loads(FACTS.read_text(encoding="utf-8"))["cluster"]
    return facts.get(cluster, {}).get("fabric", "not stated")


def _logs():
    """(PricedLog, fabric, NCCL release or "") of every healthy multi-node ring all_gather / reduce_scatter log, one
    GPU per process."""
    for entry in read_manifest(MANIFEST):
        if not entry["healthy"] or entry.get("gpus_per_thread", 1) != 1:
            continue
        log = priced_log(MANIFEST.parent, entry)
        if log.points[0].op not in OPS or log.group_size <= log.hardware.interconnect[0].domain_devices:
            continue
        yield log, _fabric(entry.get("cluster", "")), entry_nccl_version(MANIFEST.parent, entry)


def _simple(log):
    """The prior with NCCL_PROTO=Simple (the run's other knobs kept): the rows' Simple candidate."""
    keep = {k: log.entry[k] for k in ("nccl_algo",) if log.entry.get(k)}
    return TopologyModel(log.hardware, nccl_proto="Simple", collnet=log.entry.get("collnet", False), **keep)


def log_rows(log, version: str = "") -> list[dict]:
    """One dict per ramp row of `log`: size, priced algorithm, channels, message data and wire bytes, above the AR
    threshold, measured / priced / Simple-priced time (s), error (measured / priced - 1), Simple's error, and the
    measured and priced time over the row before's (None on the first row)."""
    n = log.group_size
    prior, simple = log.error().sizes, log.error(_simple(log)).sizes
    out, before = [], None
    for p, s in zip(prior, simple):
        if not LOW <= p.size_bytes <= HIGH:
            continue
        proto = p.algorithm.split("/")[1]
        # the tuner's channels from nccl_tuning.toml [pipeline] channels (no healthy multi-node ring log sets
        # NCCL_MIN/MAX_NCHANNELS)
        tuned = ring_tree_channels("ring", proto, p.size_bytes, n, tuning()["pipeline"]["channels"])[0]
        nc = scheduled_channels(proto, p.size_bytes, tuned, version)
        data = message_data_bytes(proto, p.size_bytes, n, nc)
        wire = wire_bytes(proto, data)
        out.append({"size": p.size_bytes, "algorithm": p.algorithm, "channels": nc, "data": data, "wire": wire,
                    "over": above_ar_threshold(wire), "measured_s": p.measured_s, "priced_s": p.predicted_s,
                    "error": p.busbw_error, "simple_error": s.busbw_error,
                    "step_measured": None if before is None else p.measured_s / before.measured_s,
                    "step_priced": None if before is None else p.predicted_s / before.predicted_s})
        before = p
    return out


def largest_step(rows: list[dict]) -> dict | None:
    """The row between 256 KiB and 64 MiB whose measured step over the row before most exceeds the priced one."""
    steps = [r for r in rows if r["step_measured"] is not None and STEP_LOW <= r["size"] <= STEP_HIGH]
    return max(steps, key=lambda r: r["step_measured"] / r["step_priced"], default=None)


def _ll128_mape(rows: list[dict], over: bool, key: str) -> str:
    errs = [abs(r[key]) for r in rows if r["algorithm"] == "ring/LL128" and r["size"] >= 2**20 and r["over"] == over]
    return f"{sum(errs) / len(errs):.1%} ({len(errs)})" if errs else "-"


def rows() -> tuple[list[tuple], list[tuple]]:
    body, summary = [], []
    for log, fabric, version in _logs():
        rs = log_rows(log, version)
        if not rs:
            continue
        for r in rs:
            body.append((log.name, _size(r["size"]), r["algorithm"], str(r["channels"]), f"{r['data']:.0f}",
                         str(r["wire"]), "yes" if r["over"] else "no", f"{r['measured_s'] * 1e6:.1f}",
                         f"{r['priced_s'] * 1e6:.1f}", f"{r['error']:+.0%}", f"{r['simple_error']:+.0%}",
                         "-" if r["step_measured"] is None else f"x{r['step_measured']:.2f}",
                         "-" if r["step_priced"] is None else f"x{r['step_priced']:.2f}"))
        big = largest_step(rs)
        first = next((r for r in rs if r["algorithm"] == "ring/LL128" and r["over"]), None)
        summary.append((log.name, fabric, version or "not stated", str(log.group_size),
                        "-" if big is None else f"{_size(big['size'])} (x{big['step_measured']:.2f} / "
                                                f"x{big['step_priced']:.2f}, {big['data']:.0f} B)",
                        "-" if first is None else _size(first["size"]),
                        f"{log.error().mape_large:.1%}",
                        _ll128_mape(rs, False, "error"), _ll128_mape(rs, True, "error"),
                        _ll128_mape(rs, True, "simple_error")))
    return body, summary


def render() -> str:
    body, summary = rows()
    head = ("log", "size", "priced as", "ch", "data B/ch/step", "wire B", "> AR threshold", "measured us",
            "priced us", "error", "as Simple", "step measured", "step priced")
    shead = ("log", "fabric", "NCCL", "ranks", "largest step 256 KiB-64 MiB (measured / priced, data B/ch/step)",
             "first LL128 row > AR threshold", "MAPE >= 1 MiB", "LL128 rows >= 1 MiB <= threshold",
             "LL128 rows > threshold", "the same as Simple")
    return "\n".join(["Per row (error = measured time / priced time - 1; + = priced too fast; step = time over the "
                      "row before's):", ""] + fenced_table(head, body)
                     + ["", "Per log (busbw MAPE of its ring/LL128 rows >= 1 MiB, row count in brackets):", ""]
                     + fenced_table(shead, summary))


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
