"""Step 3 of the walk-through in docs/collectives.md ("Using it on your own logs"): the calibrated B200 Vultr profile
used where a profile goes, each figure from the command the page shows, rerun here.

- the profile: `moesim calibrate tests/data/nccl/b200-vultr-2node_all_gather_perf.log --hardware b200 --ranks 16
  --host-cpu amd -o b200-vultr.toml` (step 1 of the page), written to a temporary folder;
- the busbw table: `moesim collective all_gather --hardware H --devices 16 --sweep 256KiB:1GiB --json` with H the
  shipped `b200` and the calibrated file, against the log's out-of-place busbw (its time and nccl-tests' (n-1)/n);
- the scenario: `moesim estimate deepseek-v2-l4-b200-ep8 --hardware H --devices 16 --layout dp=16,ep=16,mb=2 --json`
  on both, and `moesim search deepseek-v2-l4-b200-ep8 --hardware b200-vultr.toml --devices 16 --json --top 1`.

Run: python scripts/walkthrough_use.py [--write]   (--write replaces the marked block of docs/collectives.md)
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.nccl_tests import read_nccl_tests  # noqa: E402
from moesim.cli import main  # noqa: E402
from scripts.docblock import run_check  # noqa: E402

DOC = ROOT / "docs" / "collectives.md"
BEGIN = "<!-- BEGIN walkthrough_use: python scripts/walkthrough_use.py --write -->"
END = "<!-- END walkthrough_use -->"
LOG = "tests/data/nccl/b200-vultr-2node_all_gather_perf.log"
RANKS = 16
SIZES = {2**18: "256 KiB", 2**20: "1 MiB", 2**22: "4 MiB", 2**24: "16 MiB", 2**26: "64 MiB", 2**28: "256 MiB",
         2**30: "1 GiB"}
SCENARIO = "deepseek-v2-l4-b200-ep8"
LAYOUT = "dp=16,ep=16,mb=2"


def moesim_json(*argv: str) -> dict:
    """What `moesim ARGV --json` prints, parsed (run from the repository root, as the page's commands are)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.chdir(ROOT):
        code = main([*argv, "--json"])
    if code:
        raise SystemExit(f"moesim {' '.join(argv)} exited {code}")
    return json.loads(out.getvalue())


def measured_busbw_gbps() -> dict[int, float]:
    """The log's out-of-place busbw per size: size / time x (n - 1) / n, as all_gather_perf prints it."""
    points = read_nccl_tests(ROOT / LOG, ranks=RANKS).collectives
    return {int(p.size_bytes): p.size_bytes / p.time_s * (RANKS - 1) / RANKS / 1e9
            for p in points if p.variant == "out_of_place"}


def _cell(predicted: float, measured: float) -> str:
    return f"{predicted:.1f} ({predicted / measured - 1:+.0%})"


def render() -> str:
    with tempfile.TemporaryDirectory() as folder:
        profile = str(Path(folder) / "b200-vultr.toml")
        moesim_json("calibrate", LOG, "--hardware", "b200", "--ranks", str(RANKS), "--host-cpu", "amd", "-o", profile,
                    "-q")
        sweep = {name: {r["bytes"]: r for r in moesim_json("collective", "all_gather", "--hardware", hw, "--devices",
                                                           str(RANKS), "--sweep", "256KiB:1GiB")["results"]}
                 for name, hw in (("shipped", "b200"), ("calibrated", profile))}
        estimates = {name: moesim_json("estimate", SCENARIO, "--hardware", hw, "--devices", str(RANKS), "--layout",
                                       LAYOUT)
                     for name, hw in (("shipped", "b200"), ("calibrated", profile))}
        best = moesim_json("search", SCENARIO, "--hardware", profile, "--devices", str(RANKS), "--top", "1")
    measured = measured_busbw_gbps()
    lines = ["| size | measured busbw GB/s | b200 shipped | b200-vultr.toml | algorithm |", "|---|---|---|---|---|"]
    for size, label in SIZES.items():
        shipped, calibrated = sweep["shipped"][size], sweep["calibrated"][size]
        lines.append(f"| {label} | {measured[size]:.1f} | {_cell(shipped['busbw_GBps'], measured[size])} | "
                     f"{_cell(calibrated['busbw_GBps'], measured[size])} | {calibrated['algorithm']} |")
    comm = {name: e["communication"] for name, e in estimates.items()}

    def ms(name: str, key: str) -> str:
        return f"{comm[name][key]['time_s'] * 1e3:.2f}"

    top = best["results"][0]
    lines += ["", f"In `{SCENARIO}` on 2 nodes (`--layout {LAYOUT}`), against the shipped `b200`: the gradient "
              f"reduce-scatter goes {ms('shipped', 'dp_reduce_scatter')} → {ms('calibrated', 'dp_reduce_scatter')} "
              f"ms per step, the all-gather {ms('shipped', 'dp_all_gather')} → {ms('calibrated', 'dp_all_gather')} "
              f"ms, each expert all-to-all {ms('shipped', 'ep_all_to_all_dispatch')} → "
              f"{ms('calibrated', 'ep_all_to_all_dispatch')} ms, the "
              f"step {estimates['shipped']['step_time_s'] * 1e3:.2f} → "
              f"{estimates['calibrated']['step_time_s'] * 1e3:.2f} ms. The search's best layout on the calibrated "
              f"profile is `{top['layout_arg']}` at {top['step_time_s'] * 1e3:.2f} ms."]
    return "\n".join(lines)


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
