"""Session 17 (bcast)'s ship rule (b) for `broadcast_model = "nccl-ll128-cap"` (NCCL's per-channel ring LL128 cap on a
broadcast, moesim/collectives/nccl_broadcast.py) against `nccl`: every manifest log priced as the per-log table prices
it, only broadcast_model changed; the logs that move and rule (b) over the healthy ones (scripts/log_variants.py);
then the per-size residual of h100-voltagepark-4node broadcast under both: measured and predicted time and busbw
(= algbw, nccl-tests' broadcast factor 1), the signed error (measured / predicted - 1: + means moesim prices it too
fast), the ring protocol picked and the channels NCCL runs it on at that size (nccl_channels.ring_tree_channels_at).

Run: python scripts/bcast_ll128_cap_check.py [--write]   (--write replaces the marked block of
docs/collectives-history.md, "Session 17 (bcast)")
"""

from __future__ import annotations

import dataclasses
import re

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import _size, read_manifest  # noqa: E402
from moesim.collectives.nccl_channels import channel_rule, ring_tree_channels_at  # noqa: E402
from moesim.collectives.nccl_tuning import tuning  # noqa: E402
from scripts.docblock import run_check  # noqa: E402
from scripts.log_variants import MANIFEST, before_after_rows, moved_lines, rule_b_lines  # noqa: E402

DOC = ROOT / "docs" / "collectives-history.md"
BEGIN = "<!-- BEGIN bcast_ll128_cap_check: python scripts/bcast_ll128_cap_check.py --write -->"
END = "<!-- END bcast_ll128_cap_check -->"

LOG = "h100-voltagepark-4node_broadcast_perf.log"
MODELS = ("nccl", "nccl-ll128-cap")


def residual_lines() -> list[str]:
    """Per size of LOG under each of MODELS: measured | predicted us and GB/s, error, protocol, channels."""
    entry = next(e for e in read_manifest(MANIFEST) if e["file"] == LOG)
    log = priced_log(MANIFEST.parent, entry)
    errs = [log.error(dataclasses.replace(log.model(), broadcast_model=m)) for m in MODELS]
    default = tuning()["pipeline"]["channels"]
    out = [f"{LOG} ({log.group_size} ranks): us, busbw GB/s; error = measured / predicted - 1; protocol, channels",
           f"{'size':>9s} {'meas us':>9s} {'GB/s':>6s}" + "".join(
               f" | {m + ' us':>18s} {'GB/s':>6s} {'err':>6s} {'pick':>12s} {'ch':>3s}" for m in MODELS)]
    for rows in zip(*(e.sizes for e in errs)):
        size, meas = rows[0].size_bytes, rows[0].measured_s
        line = f"{_size(size):>9s} {meas * 1e6:9.1f} {size / meas / 1e9:6.1f}"
        for r in rows:
            proto = re.search(r"/(LL128|LL|Simple)", r.algorithm).group(1)
            nc = ring_tree_channels_at(channel_rule("ring", proto, log.group_size, default, default), size)[0]
            line += (f" | {r.predicted_s * 1e6:18.1f} {size / r.predicted_s / 1e9:6.1f} {meas / r.predicted_s - 1:+6.0%}"
                     f" {r.algorithm.split(':')[0]:>12s} {nc:3d}")
        out.append(line)
    return out


def render() -> str:
    data = before_after_rows(lambda entry, hw, model, n: (dataclasses.replace(model, broadcast_model="nccl"),
                                                          dataclasses.replace(model, broadcast_model="nccl-ll128-cap")))
    lines, met = rule_b_lines(data, small_rise=0.01)
    return "\n".join(["```"] + moved_lines(data, "nccl -> nccl-ll128-cap") + lines
                     + [f"rule (b): {'met' if met else 'fails'}", ""] + residual_lines() + ["```"])


if __name__ == "__main__":
    run_check(__doc__.splitlines()[0], render, DOC, BEGIN, END)
