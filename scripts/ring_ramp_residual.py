"""The 1-512 MiB rows of every healthy multi-node all_reduce / all_gather / reduce_scatter log, one by one: measured
time minus the shipped prior's, what the prior prices (algorithm / protocol, NCCL's channels x threads at that size),
the ring's steps and the network edges its slowest chunk crosses, the bytes one channel moves per ring step and how
many network messages that is (one per step of the protocol's chunk), and the error the prior's own ring / Simple
candidate (NCCL_PROTO=Simple, NCCL's tuner otherwise unchanged) would give at that size. Session 11 (ramp):
docs/collectives-history.md "Session 11 (ramp)".

Per row, NCCL v2.29.2-1 (the same at v2.24.3-1 and v2.28.9-1): a ring LL128 chunk is one LL128 step, 120 x 640 x 8 B
(NCCL_LL128_ELEMS_PER_THREAD x NCCL_LL128_MAX_NTHREADS x 8, init.cc DEFAULT_LL128_BUFFSIZE / NCCL_STEPS) of which
120/128 is data (enqueue.cc calcCollChunking: chunkSize = stepSize / NCCL_LL128_LINEELEMS x NCCL_LL128_DATAELEMS);
a ring Simple chunk is 4 steps of 512 KiB sent in 2-step slices (ALLGATHER_CHUNKSTEPS / SLICESTEPS, collectives.h);
one loop moves nChannels x nRanks chunks (calcCollChunking: loopSize, nLoops = ceil(nBytes / loopSize)). A ring
step of one channel moves m = bytes / (channels x ranks) per loop (all_reduce: the same m on each of its 2(n-1)
steps). Messages per step = ceil(m / slice data) (LL128: one message per step; Simple: per 1 MiB slice). The chain's
network edges: nodes (the ring's slowest chunk, nccl_multinode.ring_chain_extra_net_steps), all_reduce 2 x nodes.
Tree and NVLSTree rows are listed with their error only. Nothing is fitted; the prior is priced as the per-log table
prices it (calibrate/nccl_error.log_error) before this round, i.e. with NCCL's per-channel caps off (per_channel_caps,
which this round's C1 turns on): the residual that motivated the round.

Run: python scripts/ring_ramp_residual.py [--write]   (--write replaces the marked block of
docs/collectives-history.md)
"""

from __future__ import annotations

import math

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import _size, read_manifest  # noqa: E402
from moesim.collectives.nccl_channels import ring_tree_channels  # noqa: E402
from moesim.collectives.topo_model import TopologyModel  # noqa: E402
from scripts.docblock import fenced_table, run_check  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN ring_ramp_residual: python scripts/ring_ramp_residual.py --write -->"
END = "<!-- END ring_ramp_residual -->"
OPS = ("all_reduce", "all_gather", "reduce_scatter")
LOW, HIGH = 2**20, 512 * 2**20
CHANNELS = 16  # nccl_tuning.toml [pipeline] channels (no healthy multi-node log sets NCCL_MIN/MAX_NCHANNELS)
LL128_CHUNK_BYTES = 120 * 640 * 8 * 120 // 128  # one LL128 step's data (module doc)
SIMPLE_SLICE_BYTES = 2 * 512 * 1024  # a ring Simple slice: 2 steps of 512 KiB


def _logs():
    """(PricedLog, op, nodes) of every healthy multi-node AR / AG / RS log."""
    for entry in read_manifest(MANIFEST):
        if not entry["healthy"]:
            continue
        log = priced_log(MANIFEST.parent, entry)
        n, op = log.group_size, log.points[0].op
        domain = log.hardware.interconnect[0].domain_devices
        if op not in OPS or n <= domain:
            continue
        yield log, op, -(-n // domain)


def _simple_model(entry, hardware):
    """The prior with NCCL_PROTO=Simple (the run's other knobs kept)."""
    keep = {k: entry.get(k) for k in ("nccl_algo",) if entry.get(k)}
    return TopologyModel(hardware, nccl_proto="Simple", collnet=entry.get("collnet", False), per_channel_caps=False,
                         **keep)


def ring_row_facts(algorithm: str, size_bytes: float, n: int, op: str, nodes: int) -> tuple:
    """(channels x threads, ring steps, chain network edges, bytes per channel per ring step, messages per step) of a
    ring row as NCCL runs it (module doc); '-' cells off the ring."""
    if not algorithm.startswith("ring/"):
        return ("-",) * 5
    proto = algorithm.split("/")[1]
    nc, nt = ring_tree_channels("ring", proto, size_bytes, n, CHANNELS)
    passes = 2 if op == "all_reduce" else 1
    m = size_bytes / (nc * n)
    per_message = {"LL128": LL128_CHUNK_BYTES, "Simple": SIMPLE_SLICE_BYTES}.get(proto)
    msgs = "-" if per_message is None else str(math.ceil(m / per_message))
    return f"{nc}x{nt}", str(passes * (n - 1)), str(passes * nodes), _bytes(m), msgs


def _bytes(x: float) -> str:
    return f"{x / 1024:.0f} KiB" if x < 2**20 else f"{x / 2**20:.1f} MiB"


def rows() -> tuple[list[tuple], list[tuple]]:
    body, summary = [], []
    for log, op, nodes in _logs():
        name, n = log.name, log.group_size
        prior = log.error(log.model(per_channel_caps=False)).sizes
        simple = log.error(_simple_model(log.entry, log.hardware)).sizes
        ramp = [(p, s) for p, s in zip(prior, simple) if LOW <= p.size_bytes <= HIGH]
        if not ramp:
            continue
        for p, s in ramp:
            excess_us = (p.measured_s - p.predicted_s) * 1e6
            facts = ring_row_facts(p.algorithm, p.size_bytes, n, op, nodes)
            per_edge = f"{excess_us / int(facts[2]):+.1f}" if facts[2] != "-" else "-"
            body.append((name, _size(p.size_bytes), p.algorithm, *facts, f"{p.measured_s * 1e6:.1f}",
                         f"{p.predicted_s * 1e6:.1f}", f"{excess_us:+.1f}", per_edge, f"{p.busbw_error:+.0%}",
                         f"{s.busbw_error:+.0%}"))
        mape = sum(abs(p.busbw_error) for p, _ in ramp) / len(ramp)
        signed = sum(p.busbw_error for p, _ in ramp) / len(ramp)
        mape_simple = sum(abs(s.busbw_error) for _, s in ramp) / len(ramp)
        ll128 = [(p, s) for p, s in ramp if p.algorithm.endswith("/LL128")]
        ll128_cells = ((f"{sum(abs(p.busbw_error) for p, _ in ll128) / len(ll128):.1%}",
                        f"{sum(abs(s.busbw_error) for _, s in ll128) / len(ll128):.1%}") if ll128 else ("-", "-"))
        summary.append((name, str(nodes), str(len(ramp)), f"{mape:.1%}", f"{signed:+.1%}", f"{mape_simple:.1%}",
                        str(len(ll128)), *ll128_cells))
    return body, summary


def render() -> str:
    body, summary = rows()
    head = ("log", "size", "priced as", "ch x thr", "ring steps", "chain net edges", "bytes/ch/step", "msgs/step",
            "measured us", "priced us", "excess us", "per net edge", "error", "NCCL_PROTO=Simple")
    shead = ("log", "nodes", "rows 1-512 MiB", "MAPE as priced", "signed", "MAPE at NCCL_PROTO=Simple", "LL128 rows",
             "their MAPE as priced", "at NCCL_PROTO=Simple")
    return "\n".join(["Per row (error = measured time / priced time - 1; + = priced too fast):", ""]
                     + fenced_table(head, body)
                     + ["", "Per log, the 1-512 MiB rows as priced and with the prior's own Simple candidates "
                            "(NCCL_PROTO=Simple):", ""] + fenced_table(shead, summary))


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
