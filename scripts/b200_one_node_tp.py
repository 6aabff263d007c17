"""Session 19 (newlogs9): the shipped priors on the collected one-node B200 logs at the sizes of a TP8 all-gather /
reduce-scatter (docs/collectives-history.md, "Session 19 (newlogs9)", item 6).

The published B200 validation runs (docs/operators.md, "Validation against published B200 runs") are priced too fast;
the lane asked what the one-node B200 nccl-tests logs already collected say at 32 and 64 MiB. For every one-node B200
log of tests/data/nccl/logs.toml: the sizes it covers and, at 32 MiB and 64 MiB where it has a row, measured (the
faster of out-of-place / in-place) and priced time, measured / priced - 1 and the priced algorithm / protocol, as the
per-log table prices the log (calibrate/log_pricing.priced_log; nothing fitted, nothing read into a prior).

Run: python scripts/b200_one_node_tp.py. Prints only; the figures are quoted in the docs section.
"""

from __future__ import annotations

from _repo_root import ROOT  # noqa: F401  (first: this checkout's root on sys.path; scripts/_repo_root.py)

from moesim.calibrate.nccl_table import _size, read_manifest  # noqa: E402
from scripts.fresh_logs_check import MANIFEST  # noqa: E402
from scripts.newlogs4_check import priced  # noqa: E402

TP_SIZES_BYTES = (32 * 2**20, 64 * 2**20)  # the 32-64 MiB TP all-gathers / reduce-scatters the lane names


def one_node_b200_entries() -> list[dict]:
    """Every one-node B200 log of the manifest, in manifest order."""
    return [e for e in read_manifest(MANIFEST) if e["hardware"] == "b200" and "-1node" in e["file"]]


def tp_rows(entry: dict) -> dict:
    """{"sizes": (first, last, count) of the log's sizes, size_bytes: SizeError or None for each TP size}."""
    by_size = {int(s.size_bytes): s for s in priced(entry).sizes}
    sizes = sorted(by_size)
    return {"sizes": (sizes[0], sizes[-1], len(sizes)), **{b: by_size.get(b) for b in TP_SIZES_BYTES}}


def lines() -> list[str]:
    out = [f"{'log':36s} {'-g':6s} {'sizes':22s} " + "   ".join(
        f"{_size(b)}: measured / priced us (error, pick)" for b in TP_SIZES_BYTES)]
    for e in one_node_b200_entries():
        rows = tp_rows(e)
        first, last, n = rows["sizes"]
        launch = f"-g {e.get('gpus_per_thread', 1)}"  # GPUs per thread as the per-log table prices the log
        cells = []
        for b in TP_SIZES_BYTES:
            s = rows[b]
            cells.append("no row" if s is None else f"{s.measured_s * 1e6:.1f} / {s.predicted_s * 1e6:.1f} "
                         f"({100 * s.busbw_error:+.0f} %, {s.algorithm})")
        out.append(f"{e['file'].removesuffix('_perf.log'):36s} {launch:6s} "
                   f"{_size(first) + ' - ' + _size(last) + f' ({n})':22s} " + "   ".join(f"{c:40s}" for c in cells))
    return out


if __name__ == "__main__":
    print("\n".join(lines()))
