"""GDR-less legs on every NCCL algorithm, evaluated as a what-if on the b200-vultr 2-node logs (docs/collectives.md,
"GDR-less legs on every algorithm (session 8, gdrless)"): busbw MAPE (>= 1 MiB | < 1 MiB) of every b200-vultr 2-node
log, held or not, three ways. No source states these hosts' GPU-NIC path: logs.toml leaves it unset and nothing here
is shipped as a prior.

- shipped: the path unset (as logs.toml has it): GDR and LL128 on;
- PHB, ring / tree legs: gpu_nic_path = PHB with the legs of session 7 only (ring and tree network steps,
  nccl_facts.no_gdr_legs_s), this session's taken off: the model before this change;
- PHB, every algorithm: PHB with this session's legs as well (PAT / NVLSTree / CollNet hops, nccl_plan; send/recv,
  all-to-all and broadcast steps, topo_model: nccl_facts.no_gdr_tuner_latency_s, no_gdr_step_legs_s).

Then, per log and band, the rows that move between the last two: NCCL's pick and the signed error's range.

Run: python scripts/gdrless_check.py [--write]   (--write replaces the marked block of docs/collectives.md)
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import read_manifest  # noqa: E402
from moesim.collectives import nccl_facts, nccl_plan  # noqa: E402
from moesim.specs.system_facts import with_system_facts  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import BARS, MANIFEST, pct, size_label  # noqa: E402

DOC = ROOT / "docs" / "collectives.md"
BEGIN = "<!-- BEGIN gdrless_check: python scripts/gdrless_check.py --write -->"
END = "<!-- END gdrless_check -->"
VARIANTS = ("shipped", "PHB, ring / tree legs", "PHB, every algorithm")
PREFIX = "b200-vultr-2node"


@contextmanager
def _session7_legs_only():
    """This session's legs taken off (the tuner's PAT / NVLSTree / CollNet legs and the send/recv-based steps')."""
    saved = nccl_plan.no_gdr_tuner_latency_s, nccl_facts.no_gdr_step_legs_s
    nccl_plan.no_gdr_tuner_latency_s = lambda *args: None
    nccl_facts.no_gdr_step_legs_s = lambda *args: None
    try:
        yield
    finally:
        nccl_plan.no_gdr_tuner_latency_s, nccl_facts.no_gdr_step_legs_s = saved


def errors() -> dict[str, dict[str, object]]:
    """{log file: {variant: LogError}} of every b200-vultr 2-node log in the manifest."""
    out = {}
    for entry in read_manifest(MANIFEST):
        if not entry["file"].startswith(PREFIX):
            continue
        shipped = priced_log(MANIFEST.parent, entry)
        phb = replace(shipped, hardware=with_system_facts(shipped.hardware, {"gpu_nic_path": "PHB"}))
        found = {"shipped": shipped.error()}
        with _session7_legs_only():
            found[VARIANTS[1]] = phb.error()
        found[VARIANTS[2]] = phb.error()
        out[entry["file"]] = (entry, found)
    return out


def _name(file: str) -> str:
    return file.removesuffix("_perf.log").replace("_", " ", 1)


def render(found: dict | None = None) -> str:
    """The docs block: the MAPE table of every b200-vultr 2-node log and the rows that move (`found`: errors())."""
    found = errors() if found is None else found
    bars = f"bars {BARS[0]:.0%} | {BARS[1]:.0%}"
    lines = [f"busbw MAPE, >= 1 MiB | < 1 MiB ({bars}; 'held': held to the bars in logs.toml)",
             "", "| log | held | " + " | ".join(VARIANTS) + " |", "|---|---|" + "---|" * len(VARIANTS)]
    for file, (entry, errs) in found.items():
        cells = " | ".join(f"{pct(errs[v].mape_large)} \\| {pct(errs[v].mape_small)}" for v in VARIANTS)
        lines.append(f"| {_name(file)} | {'yes' if entry['healthy'] else 'no'} | {cells} |")
    lines += ["", "Rows that move between the last two, per band (NCCL's pick; signed error = measured / priced - 1,",
              "its range over the band's moved rows):", "",
              "| log | band | moved rows | pick | ring / tree legs | every algorithm |", "|---|---|---|---|---|---|"]
    for file, (_, errs) in found.items():
        before, after = errs[VARIANTS[1]], errs[VARIANTS[2]]
        for band, large in (("< 1 MiB", False), (">= 1 MiB", True)):
            moved = [(b, a) for b, a in zip(before.sizes, after.sizes)
                     if a.predicted_s != b.predicted_s and (a.size_bytes >= 2**20) == large]
            if not moved:
                continue
            picks = sorted({a.algorithm for _, a in moved} | {b.algorithm for b, _ in moved})
            sizes = f"{_size(moved[0][0].size_bytes)} - {_size(moved[-1][0].size_bytes)} ({len(moved)})"
            lines.append(f"| {_name(file)} | {band} | {sizes} | {', '.join(picks)} | {_span([b for b, _ in moved])} | "
                         f"{_span([a for _, a in moved])} |")
    return "\n".join(lines)


def _span(rows) -> str:
    errs = [r.busbw_error for r in rows]
    return f"{min(errs):+.1%} .. {max(errs):+.1%}" if len(errs) > 1 else f"{errs[0]:+.1%}"


def _size(b: float) -> str:
    b = int(b)
    return size_label(b) if b >= 2**10 and b & (b - 1) == 0 else f"{b} B"


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
