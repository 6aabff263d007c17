"""The system's channel count against published NCCL_DEBUG=INFO lines (docs/collectives-history.md, "Channel counts
(nchannels round, session 7)"): the counts real runs printed (tests/data/nccl/channel_counts.toml) and what pricing
every healthy nccl-tests log with them would give, two ways.

- shipped: every ring / tree comm has nChannels = nccl_tuning.toml [pipeline] channels (16);
- published (evaluated, not shipped): a group inside one node has the count the runs of its hardware profile printed on
  one 8-GPU node (channel_counts.toml, nodes = 1), a group across nodes the count printed across nodes (16 wherever
  printed); the system's count in NCCL's per-size channel cut (nccl_channels.channel_rule) and channel share, the
  shape-read fill and the ring plateau unchanged.

Run: python scripts/channel_default_check.py [--write]   (--write replaces the marked block of docs/collectives-history.md)
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import read_manifest  # noqa: E402
from moesim.collectives import nccl_plan  # noqa: E402
from moesim.collectives.nccl import tuning  # noqa: E402
from moesim.errors import SpecError  # noqa: E402
from moesim.paths import read_versioned_toml  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import band_cells, total_rows  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
EVIDENCE = ROOT / "tests" / "data" / "nccl" / "channel_counts.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN channel_default_check: python scripts/channel_default_check.py --write -->"
END = "<!-- END channel_default_check -->"
RUN_KEYS = ("gpu", "profile", "gpus_per_node", "nodes", "nccl", "coll_channels", "nvls_channels", "source", "shows")


def read_evidence(path: Path = EVIDENCE) -> list[dict]:
    """The [[run]] entries of channel_counts.toml (schema_version 1; every key required, no other key)."""
    runs = read_versioned_toml(path)["run"]
    for i, run in enumerate(runs):
        if set(run) != set(RUN_KEYS):
            raise SpecError(f"run {i}: keys must be exactly {RUN_KEYS}", file=str(path),
                            value=sorted(set(run) ^ set(RUN_KEYS)))
        for key in ("gpus_per_node", "nodes", "coll_channels", "nvls_channels"):
            if not isinstance(run[key], int) or isinstance(run[key], bool) or run[key] < -1:
                raise SpecError(f"run {i}: must be an integer", file=str(path), field=key, value=run[key])
    return runs


def published_counts(runs: list[dict]) -> dict[tuple[str, bool], int]:
    """{(hardware profile, several nodes): coll channels} from the runs naming a shipped profile (one node: 8-GPU
    runs only); SpecError where two runs of one key disagree."""
    out: dict[tuple[str, bool], int] = {}
    for run in runs:
        several = run["nodes"] > 1
        if not run["profile"] or (not several and run["gpus_per_node"] != 8):
            continue
        key = (run["profile"], several)
        if out.setdefault(key, run["coll_channels"]) != run["coll_channels"]:
            raise SpecError(f"runs of {key} print {out[key]} and {run['coll_channels']} channels", file=str(EVIDENCE))
    return out


@contextmanager
def system_channels(count: int | None):
    """nccl_plan's system channel count ([pipeline] channels) set to `count` for the duration (None: the shipped)."""
    saved = nccl_plan.tuning
    if count is not None:
        t = dict(tuning())
        t["pipeline"] = dict(t["pipeline"], channels=count)
        nccl_plan.tuning = lambda: t
    try:
        yield
    finally:
        nccl_plan.tuning = saved


def errors(counts: dict[tuple[str, bool], int]) -> dict[str, dict[str, object]]:
    """{log file: {"shipped" | "published": LogError}} over the healthy logs of the manifest."""
    out: dict[str, dict[str, object]] = {}
    for entry in read_manifest(MANIFEST):
        if not entry["healthy"]:
            continue
        log = priced_log(MANIFEST.parent, entry)
        several = log.group_size > log.hardware.interconnect[0].domain_devices
        out[entry["file"]] = {}
        for name, count in (("shipped", None), ("published", counts.get((entry["hardware"], several)))):
            with system_channels(count):
                out[entry["file"]][name] = log.error()  # a fresh model: plans are memoised per model
    return out


def render(runs: list[dict], counts: dict[tuple[str, bool], int], found: dict[str, dict[str, object]]) -> str:
    lines = ["Published channel counts (tests/data/nccl/channel_counts.toml; coll = comm->nChannels, nvls = "
             "comm->nvlsChannels, - = not printed):", "",
             "| GPU | profile | GPUs per node x nodes | NCCL | coll | nvls | source |", "|---|---|---|---|---:|---:|---|"]
    for r in runs:
        nvls = "-" if r["nvls_channels"] < 0 else str(r["nvls_channels"])
        lines.append(f"| {r['gpu']} | {r['profile'] or '-'} | {r['gpus_per_node']} x {r['nodes']} | "
                     f"{r['nccl'] or '-'} | {r['coll_channels']} | {nvls} | {r['source']} |")
    lines += ["", "Counts the evaluation takes (one node: 8-GPU runs; profiles without a printed count keep 16): "
              + ", ".join(f"{p} {'several nodes' if s else 'one node'} {c}" for (p, s), c in sorted(counts.items())),
              "", "Per log, busbw MAPE >= 1 MiB | < 1 MiB, the logs that move (every other healthy log is unchanged):", "",
              "| log | shipped (16 everywhere) | published counts (not shipped) |", "|---|---:|---:|"]
    for name, by in found.items():
        a, b = by["shipped"], by["published"]
        if (a.mape_large, a.mape_small) != (b.mape_large, b.mape_small):
            lines.append(f"| {name[:-4]} | {band_cells(by, ('shipped', 'published'))} |")
    lines += total_rows(found, ("shipped", "published"), f"sum over the {len(found)} healthy logs")
    return "\n".join(lines)


def main() -> None:
    def block() -> str:
        runs = read_evidence()
        counts = published_counts(runs)
        return render(runs, counts, errors(counts))
    run_check(__doc__.split("\n\n")[0], block, DOC, BEGIN, END)


if __name__ == "__main__":
    main()
