"""Facts of one cluster's system set over a shared hardware profile: the hosts' CPU and the GPU-NIC PCIe path that
NCCL reads (InterconnectLevel.host_cpu / gpu_nic_path; rules in moesim/collectives/nccl_facts.py). A logs.toml
entry (moesim/calibrate/nccl_table.py) and a scenario's [system] table set them, as read from the cluster's own
report, where the profile (shared by several clusters) does not state them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from moesim.errors import SpecError
from moesim.specs.hardware import GPU_NIC_PATHS, HOST_CPUS, NETWORK_TOPOLOGIES, HardwareProfile

SYSTEM_FACT_KEYS = ("host_cpu", "gpu_nic_path")
ALLOWED = {"host_cpu": HOST_CPUS, "gpu_nic_path": GPU_NIC_PATHS}


def system_facts(entry: Mapping, where: str = "") -> dict[str, str]:
    """The system-fact keys of a mapping (a logs.toml entry, a scenario's [system] table), checked."""
    facts = {k: entry[k] for k in SYSTEM_FACT_KEYS if k in entry}
    for key, value in facts.items():
        if value not in ALLOWED[key] or not value:
            raise SpecError(f"{key} '{value}' is not allowed", file=where or None, field=key, value=value,
                            allowed=ALLOWED[key][1:])
    return facts


def with_system_facts(hardware: HardwareProfile, facts: Mapping[str, str]) -> HardwareProfile:
    """`hardware` with `facts` (SYSTEM_FACT_KEYS) set on every network level; unchanged without facts."""
    unknown = set(facts) - set(SYSTEM_FACT_KEYS)
    if unknown:
        raise SpecError(f"unknown system facts {sorted(unknown)}", field=sorted(unknown)[0],
                        allowed=SYSTEM_FACT_KEYS)
    if not facts:
        return hardware
    if not any(level.topology in NETWORK_TOPOLOGIES for level in hardware.interconnect):
        raise SpecError(f"{hardware.name} has no network level to set {sorted(facts)} on", field=sorted(facts)[0],
                        allowed=NETWORK_TOPOLOGIES)
    levels, picks = (tuple(replace(level, **facts) if level.topology in NETWORK_TOPOLOGIES else level
                           for level in group) for group in (hardware.interconnect, hardware.pick_interconnect))
    return replace(hardware, interconnect=levels, pick_interconnect=picks)


def set_system_facts(raw: dict, facts: Mapping[str, str]) -> dict:
    """A hardware profile's TOML table (moesim calibrate's output) with `facts` written on its network levels."""
    for level in raw.get("interconnect", []) + raw.get("pick_interconnect", []):
        if level.get("topology") in NETWORK_TOPOLOGIES:
            level.update(facts)
    return raw
