"""`moesim profiles`: the built-in hardware profiles."""

from __future__ import annotations

import argparse

from moesim.cli.output import print_json, table
from moesim.units import format_bytes


def register(subparsers) -> None:
    p = subparsers.add_parser("profiles", help="list the built-in hardware profiles")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def profile_rows() -> list[dict]:
    from moesim.paths import builtin_names
    from moesim.specs.load import load_hardware

    rows = []
    for name in builtin_names("hardware_profiles"):
        hw = load_hardware(name)
        rows.append({
            "name": hw.name, "device_kind": hw.device_kind, "max_devices": hw.max_devices,
            "peak_flops_per_s": dict(hw.chip.peak_flops_per_s), "hbm_bytes": hw.chip.hbm_bytes,
            "hbm_bw_bytes_per_s": hw.chip.hbm_bw_bytes_per_s,
            "interconnect": [{"name": lv.name, "topology": lv.topology, "domain_devices": lv.domain_devices,
                              "link_bw_bytes_per_s": lv.link_bw_bytes_per_s, "latency_s": lv.latency_s}
                             for lv in hw.interconnect],
            "description": hw.description,
            "price_per_device_hour_usd": hw.price_per_device_hour_usd, "price_source": hw.price_source,
        })
    return rows


def run(args: argparse.Namespace) -> int:
    rows = profile_rows()
    if args.json:
        print_json({"profiles": rows})
        return 0
    body = []
    for r in rows:
        peak = r["peak_flops_per_s"].get("bfloat16") or max(r["peak_flops_per_s"].values())
        levels = " > ".join(f"{lv['name']} {lv['topology']} {lv['domain_devices']} "
                            f"@{lv['link_bw_bytes_per_s'] / 1e9:g} GB/s" for lv in r["interconnect"])
        price = r["price_per_device_hour_usd"]
        body.append((r["name"], r["device_kind"], r["max_devices"], f"{peak / 1e12:.1f}",
                     format_bytes(r["hbm_bytes"]), f"{r['hbm_bw_bytes_per_s'] / 1e9:.0f}",
                     "-" if price is None else f"{price:.2f}", levels))
    print(table(body, ["profile", "device", "max", "bf16 TFLOP/s", "HBM", "HBM GB/s", "USD/device-h",
                       "interconnect (per device, one way)"], align="llrrrrrl"))
    print("Figures per device (a TPU v2/v3 device is one TensorCore). Sources in hardware_profiles/*.toml; "
          "prices are on-demand list prices with URL and date there ('-': none found).")
    return 0
