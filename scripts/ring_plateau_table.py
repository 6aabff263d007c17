"""The multi-node plateau of every healthy multi-node all_reduce / all_gather / reduce_scatter log: measured busbw at
the largest sizes against the shipped prior's, the algorithm / protocol and the level the prior calls the bound, and
the network load per NIC the measured plateau implies, with the cluster's stated NICs, fabric and NCCL version
(scripts/ring_plateau_facts.toml). Session 10 (ringnet): docs/collectives-history.md "Session 10 (ringnet)".

Per NIC (one NIC per GPU, 8 GPUs per node): a ring moves busbw / 8 over each NIC (every byte of a ring's busbw leaves
the node once, spread over its 8 NICs); NVLSTree moves algbw x (1 on 2 nodes, 2 beyond) / 8 (nccl.py's NVLSTree
network part). Other algorithms, and the GB200 rack (a 72-GPU NVLink domain), get '-'. Line rate: 400 Gb/s = 50 GB/s.
Nothing here is fitted; the prior is priced exactly as the per-log table prices it (calibrate/nccl_error.log_error).

Run: python scripts/ring_plateau_table.py [--write]   (--write replaces the marked block of
docs/collectives-history.md)
"""

from __future__ import annotations

from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_error import best_per_size, pct  # noqa: E402
from moesim.calibrate.nccl_table import _size, read_manifest  # noqa: E402
from moesim.collectives.base import Group, bus_bw_factor  # noqa: E402
from moesim.paths import read_versioned_toml  # noqa: E402
from scripts.docblock import fenced_table, run_check  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
FACTS = Path(__file__).with_name("ring_plateau_facts.toml")
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN ring_plateau_table: python scripts/ring_plateau_table.py --write -->"
END = "<!-- END ring_plateau_table -->"
OPS = ("all_reduce", "all_gather", "reduce_scatter")
GPUS_PER_NODE = 8
LINE_GB_PER_S = 50.0  # 400 Gb/s


def per_nic_gb_per_s(algorithm: str, busbw: float, algbw: float, nodes: int) -> float | None:
    """Network load of one NIC (GB/s) at this busbw under the algorithm as priced (module doc); None: not tabulated."""
    if algorithm.startswith("ring/"):
        return busbw / GPUS_PER_NODE
    if algorithm.startswith("nvlstree/"):
        return algbw * (1 if nodes <= 2 else 2) / GPUS_PER_NODE
    return None


def rows() -> list[tuple]:
    facts = read_versioned_toml(FACTS)["cluster"]
    out = []
    for entry in read_manifest(MANIFEST):
        if not entry["healthy"]:
            continue
        log = priced_log(MANIFEST.parent, entry)
        best = best_per_size(log.points)
        n, op = best[0].group_size, best[0].op
        domain = log.hardware.interconnect[0].domain_devices
        if op not in OPS or n <= domain:
            continue
        model = log.model()
        err = log.error(model)
        top = best[-1]
        cost = model.cost(op, top.size_bytes, Group(size=n, devices=n))
        algbw = top.size_bytes / top.time_s / 1e9
        busbw = algbw * bus_bw_factor(op, n)
        nodes = -(-n // domain)
        nic = per_nic_gb_per_s(cost.algorithm, busbw, algbw, nodes) if domain == GPUS_PER_NODE else None
        fact = facts.get(entry["cluster"], {})
        out.append((entry["file"].removesuffix("_perf.log"), str(nodes), op, fact.get("nccl", "?"),
                    fact.get("fabric", "?"), fact.get("nics", "?"), _size(top.size_bytes), f"{busbw:.1f}",
                    f"{cost.busbw_bytes_per_s / 1e9:.1f}", f"{cost.algorithm}:{cost.bottleneck}",
                    f"{busbw * 1e9 / cost.busbw_bytes_per_s - 1:+.1%}",
                    "-" if nic is None else f"{nic:.1f}", "-" if nic is None else f"{nic / LINE_GB_PER_S:.0%}",
                    pct(err.mape_large)))
    return out


def split_rows() -> list[tuple]:
    """Per healthy multi-node log the prior prices as a ring at its largest size: the error >= 1 MiB split into the
    ramp (1 MiB - 512 MiB) and the plateau (>= 1 GiB, the 80-rank logs' 1073741760-byte row included), MAPE and
    signed mean (measured time / priced time - 1, as the per-log table; positive = the prior is fast), and the
    MAPE >= 1 MiB the log would have if every plateau size were priced exactly (an oracle bound on what any
    plateau mechanism alone can give: the ramp's errors over all its sizes >= 1 MiB)."""
    out = []
    for entry in read_manifest(MANIFEST):
        if not entry["healthy"]:
            continue
        log = priced_log(MANIFEST.parent, entry)
        if log.points[0].op not in OPS or log.group_size <= log.hardware.interconnect[0].domain_devices:
            continue
        err = log.error()
        sizes = err.sizes
        if not sizes[-1].algorithm.startswith("ring/"):
            continue
        cells, split = [], 0.99 * 2**30
        for low, high in ((2**20, split), (split, float("inf"))):
            errs = [e.busbw_error for e in sizes if low <= e.size_bytes < high]
            cells += ([f"{sum(map(abs, errs)) / len(errs):.1%}", f"{sum(errs) / len(errs):+.1%}", str(len(errs))]
                      if errs else ["-", "-", "0"])
        large = [e for e in sizes if e.size_bytes >= 2**20]
        oracle = sum(abs(e.busbw_error) for e in large if e.size_bytes < split) / len(large)
        out.append((log.name, *cells, pct(err.mape_large), f"{oracle:.1%}"))
    return out


def render() -> str:
    head = ("log", "nodes", "collective", "NCCL", "fabric", "NICs per node", "largest", "measured busbw",
            "priced busbw", "priced as", "measured/priced-1", "per NIC GB/s", "of 50", "MAPE >= 1 MiB")
    split = ("log (priced as a ring at its largest size)", "ramp MAPE 1-512 MiB", "signed", "sizes",
             "plateau MAPE >= 1 GiB", "signed", "sizes", "MAPE >= 1 MiB", "plateau priced exactly")
    return "\n".join(fenced_table(head, rows()) + ["", "Ramp and plateau of the logs priced as a ring at their "
                                                       "largest size (error = measured time / priced time - 1):", ""]
                     + fenced_table(split, split_rows()))


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
