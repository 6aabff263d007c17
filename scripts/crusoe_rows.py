"""Session 18 (crusoe): the Crusoe A100 2-node all_reduce, size by size (docs/collectives-history.md "Session 18
(crusoe)"). Per row: the measured time (the faster of out-of-place / in-place, as the per-log table reads it), moesim's
pick (algorithm/protocol, the tuner's channels, the bottleneck the model names) and its time, every candidate's time
(the fastest one named), the same pick without the per-channel caps (C1), the measured busbw against
the node's NIC line rate and the GPU's NVLink line, and the ring step's network message against the AR threshold.

Nothing is fitted: the prior is priced as the per-log table prices it (calibrate/log_pricing.priced_log). The NIC line
is the profile's (one 200 Gb/s NIC per GPU, 8 per node: what Crusoe's InfiniBand page states for a100-80gb-sxm-ib.8x,
8 HCAs and 1600 Gbps in all, crusoe_facts.toml); a 2-node ring all_reduce sends 2(n-1)/n of the buffer out of each node
through its NICs, so its busbw is at most the node's NIC line, 8 x 25 GB/s = 200 GB/s. The message per channel
per ring step and its wire bytes are scripts/ring_message_rows.py's (NCCL v2.24.3-1 / v2.28.9-1 / v2.29.2-1 figures).

Run: python scripts/crusoe_rows.py   (prints the table the docs section quotes)
"""

from __future__ import annotations

import tomllib

from _repo_root import ROOT  # first: this checkout's root on sys.path (scripts/_repo_root.py)

from moesim.calibrate.log_pricing import priced_log  # noqa: E402
from moesim.calibrate.nccl_table import _size, read_manifest  # noqa: E402
from moesim.collectives.base import Group, bus_bw_factor  # noqa: E402
from moesim.collectives.nccl_channels import ring_tree_channels  # noqa: E402
from moesim.collectives.nccl_tuning import tuning  # noqa: E402
from scripts.docblock import fenced_table  # noqa: E402
from scripts.ring_message_rows import message_data_bytes, wire_bytes  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "nccl" / "logs.toml"
LOG_FILE = "a100-crusoe-2node_all_reduce_perf.log"
FACTS = ROOT / "scripts" / "crusoe_facts.toml"


def stated_nic_line_bytes_per_s() -> tuple[float, float]:
    """(one HCA, one instance) in bytes/s, one direction, as Crusoe states them for a100-80gb-sxm-ib.8x
    (crusoe_facts.toml: 8 HCAs, 1600 Gbps in all)."""
    f = tomllib.loads(FACTS.read_text(encoding="utf-8"))["a100-80gb-sxm-ib"]
    total = f["total_ib_gbit_per_s"] * 1e9 / 8
    return total / f["hcas_per_instance"], total


def crusoe_log():
    """The Crusoe entry priced as the per-log table prices it."""
    entry = next(e for e in read_manifest(MANIFEST) if e["file"] == LOG_FILE)
    return priced_log(MANIFEST.parent, entry)


def busbw_bytes_per_s(size_bytes: float, time_s: float, ranks: int) -> float:
    """nccl-tests' all_reduce busbw: algbw x moesim.collectives.base.bus_bw_factor (2(n-1)/n, doc/PERFORMANCE.md)."""
    return size_bytes / time_s * bus_bw_factor("all_reduce", ranks)


def line_rates_bytes_per_s(hardware) -> tuple[float, float]:
    """(NIC line of one node, NVLink line of one GPU) in bytes/s, one direction, from the profile: the network tier's
    per-GPU link x the GPUs of a node (one NIC per GPU), and the NVLink tier's per-GPU link."""
    nvlink, net = hardware.interconnect[0], hardware.interconnect[1]
    return net.link_bw_bytes_per_s * nvlink.domain_devices, nvlink.link_bw_bytes_per_s


def rows(log=None) -> list[dict]:
    """One dict per size of the log (module doc)."""
    log = log or crusoe_log()
    n = log.group_size
    model, nocap = log.model(), log.model(per_channel_caps=False)
    shipped, uncapped = log.error(model).sizes, log.error(nocap).sizes
    nic_node, nvlink = line_rates_bytes_per_s(log.hardware)
    channels = tuning()["pipeline"]["channels"]
    group = Group(size=n, devices=n)
    out = []
    for p, q in zip(shipped, uncapped):
        algo, proto = p.algorithm.split("/")
        cands = {c.label: c for c in model.candidates("all_reduce", p.size_bytes, group)}
        pick = cands[p.algorithm]
        fastest = min(cands.values(), key=lambda c: c.time_s)
        nc = ring_tree_channels(algo, proto, p.size_bytes, n, channels)[0]
        # an all_reduce ring step sends size / (ranks x channels) per channel, as ring_message_rows' all_gather /
        # reduce_scatter step (all_reduce.h runRing: chunks of the channel's part, one per rank), capped at one step
        data = message_data_bytes(proto, p.size_bytes, n, nc) if algo == "ring" else None
        busbw = busbw_bytes_per_s(p.size_bytes, p.measured_s, n)
        out.append({"size": p.size_bytes, "pick": p.algorithm, "channels": nc, "bottleneck": pick.bottleneck,
                    "measured_s": p.measured_s, "priced_s": p.predicted_s, "error": p.busbw_error,
                    "nocap_pick": q.algorithm, "nocap_error": q.busbw_error,
                    "fastest": fastest.label, "fastest_s": fastest.time_s,
                    "cands": {k: c.time_s for k, c in cands.items()},
                    "busbw": busbw, "of_nic": busbw / nic_node, "of_nvlink": busbw / nvlink,
                    "priced_of_nic": busbw_bytes_per_s(p.size_bytes, p.predicted_s, n) / nic_node,
                    "wire": None if data is None else wire_bytes(proto, data)})
    return out


def render() -> str:
    head = ("size", "pick (ch)", "binds", "measured us", "priced us", "error", "no C1", "fastest candidate (us)",
            "busbw GB/s", "of NIC line", "priced of NIC", "of NVLink", "ring msg wire B")
    body = [(_size(r["size"]), f"{r['pick']} ({r['channels']})", r["bottleneck"], f"{r['measured_s'] * 1e6:.1f}",
             f"{r['priced_s'] * 1e6:.1f}", f"{r['error']:+.0%}",
             f"{r['nocap_error']:+.0%}" + ("" if r["nocap_pick"] == r["pick"] else f" {r['nocap_pick']}"),
             f"{r['fastest']} ({r['fastest_s'] * 1e6:.1f})", f"{r['busbw'] / 1e9:.1f}", f"{r['of_nic']:.0%}",
             f"{r['priced_of_nic']:.0%}", f"{r['of_nvlink']:.0%}", "-" if r["wire"] is None else str(r["wire"]))
            for r in rows()]
    return "\n".join(fenced_table(head, body))


if __name__ == "__main__":
    print(render())
