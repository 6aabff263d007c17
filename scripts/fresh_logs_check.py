"""Session 11's decision rule for the unshipped options, judged on the fresh logs (docs/collectives-history.md,
"Session 11 (newlogs3)"; the rule and the candidates' definitions were committed in 7fb1b63, before any fresh log was
priced): every healthy log priced as shipped and with each option, the fresh logs' test (i) and all healthy logs'
test (ii), and the held-out calibration pairs a fresh log takes part in.

Each log is priced as the per-log table prices it (calibrate/nccl_error.log_error: its system facts, its model, the
host floor); an option changes only itself on that model. The options: p2p_net_model "concurrent" (session 9,
a2aconc), the published per-system channel count (session 7; scripts/channel_default_check.py's "published"
column), ring_net_channel_gbps = 20 (session 10, ringnet), broadcast_model "nccl-fill" and "nccl-tests" (session 10,
bcast), and for calibration pairs `--transfer machinery` (session 10, calpairs).

Run: python scripts/fresh_logs_check.py [--write]   (--write replaces the marked block of
docs/collectives-history.md)
"""

from __future__ import annotations

import dataclasses
import sys
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from moesim.calibrate.nccl_error import log_error  # noqa: E402
from moesim.calibrate.nccl_table import _points, entry_hardware, entry_model, read_manifest  # noqa: E402
from moesim.collectives.select import default_model  # noqa: E402
from scripts.channel_default_check import published_counts, read_evidence, system_channels  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import BARS, pct  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN fresh_logs_check: python scripts/fresh_logs_check.py --write -->"
END = "<!-- END fresh_logs_check -->"
# The logs session 11 added (tests/data/nccl/SOURCES.md, "Session 11 (newlogs3)"), committed before pricing.
FRESH = ("b200-gke-a4-ctk-2node_all_gather_perf.log", "h100-xxrjun-2node-b_alltoall_perf.log",
         "h100-xxrjun-2node-b_sendrecv_perf.log")
WORSE_PT = 0.02  # the rule's "worse by more than 2 pt"
OPTIONS = ("p2p_net_model=concurrent", "published channel count", "ring_net_channel_gbps=20",
           "broadcast_model=nccl-fill", "broadcast_model=nccl-tests")
_REPLACE = {"p2p_net_model=concurrent": {"p2p_net_model": "concurrent"},
            "ring_net_channel_gbps=20": {"ring_net_channel_gbps": 20.0},
            "broadcast_model=nccl-fill": {"broadcast_model": "nccl-fill"},
            "broadcast_model=nccl-tests": {"broadcast_model": "nccl-tests"}}


def _priced(entry: dict, option: str | None, counts: dict) -> tuple:
    """(MAPE >= 1 MiB, MAPE < 1 MiB) of one log as shipped (option None) or with `option`."""
    hw = entry_hardware(entry)
    pts, gpt = tuple(_points(MANIFEST.parent, entry)), entry.get("gpus_per_thread", 1)
    count = None
    if option == "published channel count":
        count = counts.get((entry["hardware"], pts[0].group_size > hw.interconnect[0].domain_devices))
    with system_channels(count) if count is not None else nullcontext():
        model = entry_model(entry, hw) or default_model(hw)  # built inside: plans are memoised per model
        if option in _REPLACE:
            model = dataclasses.replace(model, **_REPLACE[option])
        err = log_error(pts, hw, model, gpt)
    return err.mape_large, err.mape_small


def table() -> dict[str, dict[str, tuple]]:
    """{healthy log: {"shipped" | option: (MAPE >= 1 MiB, MAPE < 1 MiB)}}."""
    counts = published_counts(read_evidence())
    return {e["file"]: {name: _priced(e, None if name == "shipped" else name, counts)
                        for name in ("shipped",) + OPTIONS}
            for e in read_manifest(MANIFEST) if e["healthy"]}


def _band_sum(rows: dict, name: str, band: int, logs) -> float:
    return sum(rows[f][name][band] for f in logs if rows[f][name][band] is not None)


def verdict(rows: dict, option: str, fresh: tuple[str, ...] = FRESH) -> tuple[bool, list[str]]:
    """The rule on `rows` ({log: {"shipped": (l, s), option: (l, s)}}, healthy logs only): (passes, lines)."""
    moved = {f: [b for b in (0, 1) if rows[f]["shipped"][b] != rows[f][option][b]] for f in rows}
    fresh_moved = [f for f in fresh if f in rows and moved[f]]
    lines, ok_i = [f"(i) fresh healthy logs moved: {len(fresh_moved)} of {sum(f in rows for f in fresh)}"], True
    if len(fresh_moved) < 2:
        ok_i = False
        lines.append("    fewer than two: (i) fails")
    for band in sorted({b for f in fresh_moved for b in moved[f]}):
        before, after = (_band_sum(rows, n, band, fresh_moved) for n in ("shipped", option))
        ok_i &= after < before
        lines.append(f"    fresh sum {('>= 1 MiB', '< 1 MiB')[band]}: {100 * before:.1f} -> {100 * after:.1f}"
                     f" ({'falls' if after < before else 'does not fall'})")
    worse = [(f, b) for f in fresh_moved for b in moved[f] if rows[f][option][b] - rows[f]["shipped"][b] > WORSE_PT]
    ok_i &= not worse
    lines += [f"    fresh log worse by more than 2 pt: {f} ({('>= 1 MiB', '< 1 MiB')[b]})" for f, b in worse]
    ok_ii = True
    for band in (0, 1):
        before, after = (_band_sum(rows, n, band, rows) for n in ("shipped", option))
        ok_ii &= after <= before
        lines.append(f"(ii) all {len(rows)} healthy logs, sum {('>= 1 MiB', '< 1 MiB')[band]}: {100 * before:.1f}"
                     f" -> {100 * after:.1f} ({'does not rise' if after <= before else 'rises'})")
    crossed = [(f, b) for f in rows for b in (0, 1) if rows[f]["shipped"][b] is not None
               and rows[f]["shipped"][b] <= BARS[b] < rows[f][option][b]]
    ok_ii &= not crossed
    lines.append(f"    newly over a bar: {len(crossed)}" + "".join(
        f"\n      {f.removesuffix('_perf.log')} ({('>= 1 MiB', '< 1 MiB')[b]})" for f, b in crossed))
    lines.append(f"verdict: {'meets the rule' if ok_i and ok_ii else 'fails the rule'}"
                 f" ((i) {'holds' if ok_i else 'fails'}, (ii) {'holds' if ok_ii else 'fails'})")
    return ok_i and ok_ii, lines


def fresh_pairs() -> list[tuple[str, str]]:
    """The held-out calibration pairs (fit, predicted) with a fresh log on either side: healthy logs of one cluster
    priced by the default model (nccl_table.matrix_clusters' condition)."""
    entries = [e for e in read_manifest(MANIFEST) if e["healthy"] and entry_model(e, entry_hardware(e)) is None]
    return [(a["file"], b["file"]) for a in entries for b in entries
            if a is not b and a["cluster"] == b["cluster"] and (a["file"] in FRESH or b["file"] in FRESH)]


def render() -> str:
    rows = table()
    lines = ["```"]
    for f in FRESH:
        s = rows.get(f, {}).get("shipped")
        lines.append(f"fresh: {f.removesuffix('_perf.log')}, shipped "
                     + (f"{pct(s[0])} | {pct(s[1])}" if s else "not healthy: not judged"))
    for option in OPTIONS:
        lines += ["", f"option {option}: busbw MAPE >= 1 MiB | < 1 MiB, shipped -> option, the healthy logs that move"]
        for f, by in rows.items():
            if by["shipped"] != by[option]:
                mark = " (fresh)" if f in FRESH else ""
                lines.append(f"  {f.removesuffix('_perf.log') + mark:52s}{pct(by['shipped'][0])} | "
                             f"{pct(by['shipped'][1])}  ->  {pct(by[option][0])} | {pct(by[option][1])}")
        lines += ["  " + line for line in verdict(rows, option)[1]]
    pairs = fresh_pairs()
    lines += ["", f"calibrate --transfer machinery: held-out pairs with a fresh log on either side: {len(pairs)}"]
    lines += [f"  {a} -> {b}" for a, b in pairs]
    if not pairs:
        lines.append("  (i) fails: no fresh pair moves")
    lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
