"""Session 14 (g8): the Engaging rows per size, as the docs section quotes them (docs/collectives-history.md,
"Session 14 (g8)"). Prices nothing new: every row is priced as the per-log table prices it
(calibrate/nccl_error.log_error with the entry's model and host floor), and the 1-node `-g 8` rows are set beside the
Vultr 1-node B200 logs (one process per GPU) at the sizes both have.

Run: python scripts/g8_rows.py   (prints the 2-node rows: measured / priced time - 1 and measured - priced, per size;
then the 1-node measured times, Engaging | Vultr, per size).
"""

from __future__ import annotations

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_error import SizeError  # noqa: E402
from moesim.calibrate.nccl_table import read_manifest  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
US_PER_S = 1e6
MIB = 2**20
TWO_NODE_OPS = ("all_reduce", "all_gather", "reduce_scatter", "alltoall", "broadcast", "sendrecv")
ONE_NODE_OPS = ("all_gather", "alltoall", "reduce_scatter", "all_reduce", "sendrecv")


def _entry(name: str) -> dict:
    file = f"{name}_perf.log"
    return next(e for e in read_manifest(MANIFEST) if e["file"] == file)


def rows(name: str) -> dict[int, SizeError]:
    """Size in bytes -> the priced row of log `name` (e.g. "b200-engaging-2node_all_gather")."""
    return {int(s.size_bytes): s for s in priced_log(MANIFEST.parent, _entry(name)).error().sizes}


def excess_us(row: SizeError) -> float:
    """Measured - priced time of a row, us."""
    return (row.measured_s - row.predicted_s) * US_PER_S


def one_node_pairs(op: str) -> list[tuple[int, float, float]]:
    """(size, Engaging us, Vultr us) of the 1-node logs of `op` at the sizes both print."""
    engaging, vultr = rows(f"b200-engaging-1node_{op}"), rows(f"b200-vultr-1node_{op}")
    return [(size, engaging[size].measured_s * US_PER_S, vultr[size].measured_s * US_PER_S)
            for size in sorted(engaging) if size in vultr]


def main() -> None:
    print("2-node rows: measured / priced - 1, measured - priced (us)")
    for op in TWO_NODE_OPS:
        line = [f"{size // MIB:>6d} MiB {100 * r.busbw_error:+7.1f} % {excess_us(r):+9.1f}"
                for size, r in sorted(rows(f"b200-engaging-2node_{op}").items())]
        print(f"{op}:\n  " + "\n  ".join(line))
    print("1-node measured us, Engaging (-g 8) | Vultr (one process per GPU)")
    for op in ONE_NODE_OPS:
        print(f"{op}: " + "; ".join(f"{size // MIB} MiB {e:.1f} | {v:.1f}" for size, e, v in one_node_pairs(op)))


if __name__ == "__main__":
    main()
