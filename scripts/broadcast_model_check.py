"""Check of broadcast_model (moesim/collectives/nccl_broadcast.py) against every broadcast log, healthy or not:
per-log busbw MAPE under "plain" (the pricing before session 10), "nccl" (the default: NCCL v2.24.3's per-size
channels and ring LL bus cap), "nccl-fill" ("nccl" and the chain's store-and-forward fill), "nccl-tests" (what
nccl-tests 2.17.9 reports for back-to-back broadcasts of the default), and session 11's "nccl-fill-entry" (the root its
node's ring exit) and "nccl-tests-proxy" (back-to-back over it, the proxy's op serialisation), and every size of each
log under each.

Each log is priced as the per-log table prices it (calibrate/nccl_error.log_error: its system facts, its model, the
host floor), with only broadcast_model changed. The ship rule (docs/collectives-history.md "Session 10 (bcast)",
committed before this script first ran) reads the healthy rows; a broadcast log added later is judged here as it
comes.

Run: python scripts/broadcast_model_check.py [--write]   (--write replaces the marked block of
docs/collectives-history.md)
"""

from __future__ import annotations

import dataclasses

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import _size, read_manifest  # noqa: E402
from moesim.collectives.nccl_broadcast import MODELS  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import mape_cell  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN broadcast_model_check: python scripts/broadcast_model_check.py --write -->"
END = "<!-- END broadcast_model_check -->"


def broadcast_entries():
    """Every manifest entry of a broadcast log, in the manifest's order."""
    for e in read_manifest(MANIFEST):
        if e.get("op", "") == "broadcast" or "broadcast" in e["file"] or "bcast" in e["file"]:
            yield e


def rows() -> list[tuple]:
    """(log, healthy, [(size, measured s, one predicted s per MODELS, nccl label)]) per log."""
    out = []
    for e in broadcast_entries():
        log = priced_log(MANIFEST.parent, e)
        base = log.model()
        errs = [log.error(dataclasses.replace(base, broadcast_model=m)) for m in MODELS]
        sizes = [(rs[0].size_bytes, rs[0].measured_s, *(r.predicted_s for r in rs), rs[1].algorithm)
                 for rs in zip(*(err.sizes for err in errs))]
        out.append((e["file"].replace("_perf.log", ""), e.get("healthy", True), sizes))
    return out


def render() -> str:
    data = rows()
    head = " -> ".join(MODELS)
    cols = range(2, 2 + len(MODELS))
    lines = ["```", "busbw MAPE >= 1 MiB | < 1 MiB per broadcast_model:"]
    lines.append(f"{'log (healthy)':42s}" + "".join(f"{m:>18s}" for m in MODELS))
    for name, healthy, sizes in data:
        cells = [f"{mape_cell(sizes, True, col)} | {mape_cell(sizes, False, col)}" for col in cols]
        lines.append(f"{name + ' (' + str(healthy).lower() + ')':42s}" + "".join(f"{c:>18s}" for c in cells))
    lines += ["", "per size (us; error = measured / predicted - 1)"]
    for name, _, sizes in data:
        lines.append(name)
        lines.append(f"  {'size':>9s} {'measured':>9s}" + "".join(f" {m:>16s} {'err':>7s}" for m in MODELS)
                     + "  nccl label")
        for size, meas, *pred, label in sizes:
            lines.append(f"  {_size(size):>9s} {meas * 1e6:9.1f}" + "".join(
                f" {p * 1e6:16.1f} {meas / p - 1:+7.0%}" for p in pred) + f"  {label}")
    lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
