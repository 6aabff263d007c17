"""The expert all-to-all of Megatron-Bridge rows.

Validation only (moesim.models.bridge_a2a): per row, each EP all-to-all the estimate charges (group, nodes spanned,
bytes, µs per call, NCCL's algorithm, per-step time); Megatron-Core's EP A2A overlap is priced in the operator list
(training.moe_a2a_overlap, moesim.estimate.a2a_order). Rows: the
cases named on the command line, else every row of tests/data/bridge_perf/megatron_bridge_moe.toml with ep > 1.
"""

from __future__ import annotations

import sys

from _repo_root import ROOT  # noqa: F401  (first: this checkout's root on sys.path)

from moesim.errors import SpecError  # noqa: E402
from moesim.models.bridge_a2a import render  # noqa: E402
from moesim.models.bridge_perf import load_rows  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cases = sys.argv[1:] if argv is None else argv
    rows = load_rows()
    known = {r.case: r for r in rows}
    unknown = [c for c in cases if c not in known]
    if unknown:
        raise SystemExit(str(SpecError("unknown Megatron-Bridge case", field="case", value=unknown[0],
                                       allowed=sorted(known))))
    print(render(tuple(known[c] for c in cases) if cases else tuple(r for r in rows if r.ep > 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
