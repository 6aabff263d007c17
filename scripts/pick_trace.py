"""Session 14 (pick): which figures a calibrated model's algorithm / protocol pick reads, and where NCCL's tuner takes
the quantity each stands for (docs/collectives-history.md "Session 14 (pick)"; the NCCL side in pick_trace.toml).

For every figure of pick_trace.toml, on the shipped priors (PROFILES), the script scales that one figure by 1/2 and
by 2 (the size of the moves calibrate makes to hop latencies and lines on the collected logs, e.g. the NVLink Simple
hop 3.4 -> 1.72 us) and counts the calls (op x ranks x size, CALLS) whose (algorithm, protocol) pick moves: under
the model's own ranking (calibrate's default transfers), and with the prior's levels as pick_interconnect (the
pick rules), where it must be 0 (the pick is the prior's by construction).

Run: python scripts/pick_trace.py [--write]   (--write rewrites the doc block in docs/collectives-history.md)
"""

from __future__ import annotations

import tomllib
from dataclasses import replace

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.collectives.base import Group  # noqa: E402
from moesim.collectives.select import default_model  # noqa: E402
from moesim.specs.load import load_hardware  # noqa: E402
from scripts.docblock import run_check  # noqa: E402

FACTS = ROOT / "scripts" / "pick_trace.toml"
DOC = ROOT / "docs" / "collectives-history.md"
PROFILES = ("b200", "h100-sxm")
OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
RANKS = (8, 16, 64)  # one node, two nodes, eight nodes of 8 GPUs
SIZES = tuple(2.0 ** k for k in range(3, 35, 2))  # 8 B - 4 GiB, every fourth power of two
SCALES = (0.5, 2.0)
BEGIN = "<!-- BEGIN pick_trace: python scripts/pick_trace.py --write -->"
END = "<!-- END pick_trace -->"


def _scaled(hw, level: int, field: str, k: float):
    lv = hw.interconnect[level]
    old = getattr(lv, field)
    if old is None:  # a figure that follows another where unset (α^LL follows α): scale what it follows
        old = lv.latency_s if field.endswith("latency_s") else 0.0
    if field == "nvls_efficiency":
        new = min(old * k, 1.0)
    elif field == "fill_bytes" and not old:
        new = 2 ** 20 * k  # the prior has no fill here: a fill of 0.5 / 2 MiB
    else:
        new = old * k
    levels = list(hw.interconnect)
    levels[level] = replace(lv, **{field: new})
    return replace(hw, interconnect=tuple(levels))


def _picks(model) -> list[str]:
    return [model.cost(op, s, Group(n)).algorithm for op in OPS for n in RANKS for s in SIZES]


def rows() -> list[list[str]]:
    figures = tomllib.loads(FACTS.read_text(encoding="utf-8"))["figure"]
    priors = {name: load_hardware(name) for name in PROFILES}
    base = {name: _picks(default_model(hw)) for name, hw in priors.items()}
    out = []
    for f in figures:
        own = ranked = 0
        for name, hw in priors.items():
            for k in SCALES:
                moved = _scaled(hw, f["level"], f["field"], k)
                own += sum(a != b for a, b in zip(base[name], _picks(default_model(moved))))
                kept = replace(moved, pick_interconnect=hw.interconnect)
                ranked += sum(a != b for a, b in zip(base[name], _picks(default_model(kept))))
        out.append([f"`{f['key']}`", f["fitted"], str(own), str(ranked), f["nccl"], f["taken_from"], f["source"]])
    return out


def render() -> str:
    calls = len(OPS) * len(RANKS) * len(SIZES) * len(PROFILES) * len(SCALES)
    head = ["profile key", "figure calibrate fits", "picks moved, model's own ranking", "picks moved, pick rules",
            "NCCL's quantity (v2.28.9-1)", "NCCL takes it from", "source"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows()]
    lines.append("")
    lines.append(f"(picks moved: of {calls} calls, {', '.join(PROFILES)} x {', '.join(OPS)} x {RANKS} ranks x 8 B - 4 GiB "
                 f"(every fourth power of two) x the figure at 1/2 and 2 times the prior's, those whose (algorithm, "
                 "protocol) differs from the prior's pick; pick rules: the same profile with the prior's levels as "
                 "pick_interconnect. NCCL's figures in pick_trace.toml.)")
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.split("\n")[0], render, DOC, BEGIN, END)
