"""Which priced rows the GDR-less legs of session 8 move (docs/collectives.md, "GDR-less legs on every algorithm"):
the quick collective grid (benchmarks/collective_grid.py --quick) with every GPU profile's network levels at
gpu_nic_path = PHB, this round's legs off (nccl_facts.no_gdr_tuner_latency_s / no_gdr_step_legs_s taken as None: the
model before it) against on. Prints the rows that move per (op, pick) and every pick that changes.

Run: python scripts/gdrless_grid.py   (about twice the quick grid's time)
"""

from __future__ import annotations

import collections
import sys

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)
sys.path.insert(0, str(ROOT / "benchmarks"))  # collective_grid

import collective_grid  # noqa: E402

from moesim.collectives import nccl_facts, nccl_plan  # noqa: E402
from moesim.specs.hardware import NETWORK_TOPOLOGIES  # noqa: E402
from moesim.specs.system_facts import with_system_facts  # noqa: E402

_load = collective_grid.load_hardware


def _phb(name: str):
    """A shipped profile with gpu_nic_path = PHB on its network levels (GPU profiles with one; others as shipped)."""
    hw = _load(name)
    if hw.device_kind == "gpu" and any(level.topology in NETWORK_TOPOLOGIES for level in hw.interconnect):
        return with_system_facts(hw, {"gpu_nic_path": "PHB"})
    return hw


def main() -> None:
    collective_grid.load_hardware = _phb
    with_legs = collective_grid.grid(quick=True)
    saved = nccl_plan.no_gdr_tuner_latency_s, nccl_facts.no_gdr_step_legs_s
    nccl_plan.no_gdr_tuner_latency_s = nccl_facts.no_gdr_step_legs_s = lambda *args: None
    try:
        without = collective_grid.grid(quick=True)
    finally:
        nccl_plan.no_gdr_tuner_latency_s, nccl_facts.no_gdr_step_legs_s = saved
        collective_grid.load_hardware = _load
    moved = [key for key in with_legs if with_legs[key] != without[key]]
    rows, picks = collections.Counter(), collections.Counter()
    for key in moved:
        op = key.split("|")[3]
        rows[(op, without[key][1])] += 1
        if with_legs[key][1] != without[key][1]:
            picks[(op, without[key][1], with_legs[key][1])] += 1
    print(f"{len(moved)} of {len(with_legs)} rows move with this round's legs under PHB")
    for (op, pick), count in sorted(rows.items()):
        print(f"  {op} {pick}: {count}")
    print(f"{sum(picks.values())} picks change")
    for (op, old, new), count in sorted(picks.items()):
        print(f"  {op} {old} -> {new}: {count}")


if __name__ == "__main__":
    main()
