"""Hardware spec: the system noun — a chip and the interconnect levels that join the devices.

A *device* is what a layout counts: a GPU, a CPU process, or a TPU TensorCore on TPU v2/v3
(two per chip, as the Switch paper counts "TPU v3 cores"); `ChipSpec.devices_per_chip` says
which. All figures here are per device and SI; the loader converts per-chip, human-unit figures
from `hardware_profiles/*.toml` once.

Interconnect levels go from the innermost (fastest, smallest domain) outwards. Level i joins
`domain_devices` consecutive device ids; a group of devices that fits inside one level-i domain
never touches levels above i.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from moesim.errors import SpecError
from moesim.specs.dtypes import DTYPE_BYTES, DTYPES  # noqa: F401 (re-exported)
from moesim.specs.efficiency import (  # noqa: F401 (re-exported)
    OP_DIMS, OP_KINDS, OP_PASSES, OP_STATUS, ComputeEfficiency, EfficiencyTable, OpTable,
)
from moesim.specs.ranges import check_ranges

DEVICE_KINDS = ("tpu_core", "tpu_chip", "gpu", "cpu")
TOPOLOGIES = ("torus", "switch", "fat_tree", "rail_optimized", "ring", "loopback")
NETWORK_TOPOLOGIES = ("fat_tree", "rail_optimized")  # the levels a network fabric (NICs and switches) builds
# When a TPU slice's axis gets its wraparound link (../shared/reference/collectives.md, SB tpus.md):
# "full_axis": only when the slice spans the pod's whole axis (v2/v3); "multiple_of_4": v4/v5p
# cubes; "always"; "never".
WRAPAROUND_RULES = ("full_axis", "multiple_of_4", "always", "never")
NCCL_ARCHS = ("", "volta", "ampere", "hopper", "blackwell")  # rows of moesim/collectives/nccl_tuning.toml
# System facts NCCL reads on a network level (InterconnectLevel.host_cpu / gpu_nic_path; their rules:
# moesim/collectives/nccl_facts.py, constants in nccl_tuning.toml [net_overhead], [ll_max_bus_gb_per_s],
# [gpu_nic_path]). "" = not stated.
HOST_CPUS = ("", "intel", "amd", "arm", "mixed")  # NCCL's CPU vendor / arch classes (src/graph/topo.h)
GPU_NIC_PATHS = ("", "PIX", "PXB", "P2C", "PXN", "PHB", "NODE", "SYS")  # nvidia-smi topo -m / NCCL path types
# InterconnectLevel.fill_bytes: 4 KiB to 64 GiB (checked by ranges.py's InterconnectLevel entry, the same figures)
MIN_FILL_BYTES, MAX_FILL_BYTES = 4096.0, 64.0 * 2**30
MAX_NVLSTREE_NET_FACTOR = 4.0  # InterconnectLevel.nvlstree_net_factor: NVLSTree's network line at most 4 x the usable bandwidth


@dataclass(frozen=True, kw_only=True)
class ChipSpec:
    """One device's compute and memory (per device, SI)."""

    name: str
    devices_per_chip: int = 1
    peak_flops_per_s: Mapping[str, float]
    hbm_bytes: float
    hbm_bw_bytes_per_s: float
    source: str = ""
    # Streaming multiprocessors per device (GPUs); None: unknown, and no compute is priced as sharing the chip
    # with a communication kernel's SMs (moesim.ops.sm_share).
    sm_count: int | None = None

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.devices_per_chip < 1:
            raise SpecError("devices_per_chip must be >= 1", field="chip.devices_per_chip",
                            value=self.devices_per_chip)
        if not self.peak_flops_per_s:
            raise SpecError("at least one peak FLOP/s figure is needed", field="chip.peak_tflops_per_chip")
        for dtype, rate in self.peak_flops_per_s.items():
            if dtype not in DTYPES:
                raise SpecError(f"unknown dtype '{dtype}'", field=f"chip.peak_tflops_per_chip.{dtype}", value=dtype,
                                allowed=DTYPES)
            if rate <= 0:
                raise SpecError(f"peak for {dtype} must be > 0", field=f"chip.peak_tflops_per_chip.{dtype}", value=rate)
        if self.hbm_bytes <= 0 or self.hbm_bw_bytes_per_s <= 0:
            raise SpecError("HBM capacity and bandwidth must be > 0", field="chip")

    def peak_for(self, dtype: str) -> float:
        """Peak FLOP/s for `dtype`; float32 matmuls fall back to tfloat32 if that is all that is given."""
        if dtype in self.peak_flops_per_s:
            return self.peak_flops_per_s[dtype]
        fallback = {"float32": "tfloat32", "float16": "bfloat16", "bfloat16": "float16"}.get(dtype)
        if fallback in self.peak_flops_per_s:
            return self.peak_flops_per_s[fallback]
        raise SpecError(f"no peak FLOP/s for {dtype} on {self.name}", field="chip.peak_tflops_per_chip",
                        value=dtype, allowed=tuple(self.peak_flops_per_s))


@dataclass(frozen=True, kw_only=True)
class InterconnectLevel:
    """One tier of the network, innermost first.

    `link_bw_bytes_per_s` is one direction of one link: for a torus, one neighbour link; for a
    switch or fat tree, one device's injection port (NVLink total per GPU, or its NIC).
    """

    name: str
    topology: str
    domain_devices: int
    link_bw_bytes_per_s: float
    latency_s: float
    dims: tuple[int, ...] = ()  # torus shape of the full pod, in chips
    wraparound: str = "always"
    links_per_chip: int = 0
    bw_efficiency: EfficiencyTable = field(default_factory=lambda: EfficiencyTable.constant(1.0))
    oversubscription: float = 1.0
    switch_radix: int = 0
    rails: int = 1
    # NVLink SHARP (NCCL's NVLS): all-reduce algbw as a fraction of this level's usable bandwidth (link ×
    # bw_efficiency); 0 where the switch has none (third-generation NVSwitch, Hopper, and later: NCCL
    # env.rst NCCL_NVLS_ENABLE).
    nvls_efficiency: float = 0.0
    # NVLS inside each node of a multi-node NVLSTree all-reduce, the same kind of fraction; None = nvls_efficiency
    # (NCCL's tuner uses one nvlsEff for both). `moesim calibrate` writes it where a log's NVLSTree rows set it.
    nvlstree_efficiency: float | None = None
    # The inter-node tree of NVLSTree over this (network) level, times its usable bandwidth (ring and send/recv
    # see the usable bandwidth itself); None = 1, as NCCL's tuner (bwInter for both). At most
    # MAX_NVLSTREE_NET_FACTOR. `moesim calibrate` writes it where a log's NVLSTree rows are network-bound.
    nvlstree_net_factor: float | None = None
    # Send/recv over this level (all-to-all, pipeline sends: NCCL's p2p channels, not the tuner's rings), times its
    # usable bandwidth; None = 1. At most MAX_NVLSTREE_NET_FACTOR. `moesim calibrate` writes it from a log's
    # all-to-all / send/recv rows.
    p2p_factor: float | None = None
    # Session 10 (calpairs): the all-to-all's send/recv line over this level (every peer at once: NCCL's per-peer p2p
    # channels in batches, docs/collectives-history.md "Session 10 (calpairs)"), times its usable bandwidth; None =
    # p2p_factor (then p2p_factor is the one-peer line of send/recv and pipeline sends alone). At most
    # MAX_NVLSTREE_NET_FACTOR. `moesim calibrate --transfer machinery` writes it.
    alltoall_p2p_factor: float | None = None
    # The latency of one send/recv message over this level (all-to-all, pipeline sends: NCCL's p2p path, not the
    # tuner's rings), in place of latency_s for them; None = latency_s. `moesim calibrate` writes it from a log's
    # all-to-all / send/recv rows (as p2p_factor for their bandwidth). Every engine reads it through
    # collectives.base.p2p_latency_s (switch tiers, torus, DeepEP's hops; the estimate and simulator through them).
    p2p_latency_s: float | None = None
    # The hop latency of NCCL's LL and LL128 protocols over this level, read as latency_s is (the level's reference
    # hop: a protocol's hops are NCCL's table row of that protocol x this / nccl_tuning.toml [reference_hop_us]), for
    # the collectives NCCL's tuner prices (all-reduce, all-gather, reduce-scatter); None = latency_s. NCCL prices a hop
    # per link, algorithm and protocol (tuning.cc hwLat). Calibration fits them from a log's LL / LL128 latency-bound
    # rows only on request (fit_profile(latency_per_protocol=True): evaluated in session 8, not the default).
    ll_latency_s: float | None = None
    ll128_latency_s: float | None = None
    # Session 10 (calpairs): the reference hop of every NCCL algorithm but ring (tree, NVLS, NVLSTree, CollNet, PAT),
    # read as latency_s is; None = latency_s (then latency_s is every algorithm's). NCCL prices a hop per algorithm
    # (tuning.cc hwLat); ll_latency_s / ll128_latency_s, where set, still win for their protocol. `moesim calibrate
    # --transfer machinery` writes it.
    nonring_latency_s: float | None = None
    # The pipeline ramp's S_fill over this level (nccl.fill_factor: the bounding transfer x (1 + S_fill / (S + S_fill))),
    # bytes, for the ring / tree / PAT / CollNet collectives whose outermost level this is (and NVLSTree's network
    # part); None = nccl_tuning.toml [pipeline] (16 MiB inside one node, 64 MiB across nodes). `moesim calibrate`
    # writes it where a log's ramp rows set it (calibrate/fill_fit.py).
    fill_bytes: float | None = None
    nccl_arch: str = ""  # GPU architecture whose NCCL per-protocol caps apply (NCCL_ARCHS); "" = none
    # In-network reduction (InfiniBand SHARP) on this fabric's switches: NCCL's CollNet algorithms can run
    # over it when NCCL_COLLNET_ENABLE=1 (NCCL env.rst; moesim: TopologyModel(collnet=True)).
    sharp: bool = False
    # The hosts' CPU as NCCL classes it (HOST_CPUS), on a network level: NCCL's per-step network post overhead and
    # the LL cap on several nodes are read by CPU ("" = not stated: NCCL's default, the Intel figures).
    host_cpu: str = ""
    # PCIe path from a GPU to its NIC on this network level, as nvidia-smi topo -m / NCCL name it (GPU_NIC_PATHS):
    # NCCL enables LL128 across nodes and GPUDirect RDMA by it ("" = not stated: LL128 and GDR on, as before).
    gpu_nic_path: str = ""
    # Fixed software cost of one collective on this level (runtime launch and synchronisation), paid once per
    # collective before its hops; priced on torus (TPU ICI) levels. 0 = none.
    collective_overhead_s: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        check_ranges(self, prefix=f"interconnect.{self.name}.")
        path = f"interconnect.{self.name}"
        if self.topology not in TOPOLOGIES:
            raise SpecError(f"unknown topology '{self.topology}'", field=f"{path}.topology",
                            value=self.topology, allowed=TOPOLOGIES)
        if self.wraparound not in WRAPAROUND_RULES:
            raise SpecError(f"unknown wraparound rule '{self.wraparound}'", field=f"{path}.wraparound",
                            value=self.wraparound, allowed=WRAPAROUND_RULES)
        if self.domain_devices < 1:
            raise SpecError("domain_devices must be >= 1", field=f"{path}.domain_devices", value=self.domain_devices)
        if self.link_bw_bytes_per_s <= 0:
            raise SpecError("link bandwidth must be > 0", field=f"{path}.link_gb_per_s_unidir")
        if self.latency_s < 0:
            raise SpecError("latency must be >= 0", field=f"{path}.latency_us", value=self.latency_s)
        if self.collective_overhead_s < 0:
            raise SpecError("collective overhead must be >= 0", field=f"{path}.collective_overhead_us",
                            value=self.collective_overhead_s)
        if self.topology == "torus":
            if not self.dims or any(d < 1 for d in self.dims):
                raise SpecError("a torus needs dims, e.g. [32, 32]", field=f"{path}.dims", value=self.dims)
            if self.links_per_chip == 0:
                object.__setattr__(self, "links_per_chip", 2 * len(self.dims))
        if self.oversubscription < 1:
            raise SpecError("oversubscription is >= 1 (1 = full bisection)", field=f"{path}.oversubscription",
                            value=self.oversubscription)
        if self.nccl_arch not in NCCL_ARCHS:
            raise SpecError(f"unknown nccl_arch '{self.nccl_arch}'", field=f"{path}.nccl_arch", value=self.nccl_arch,
                            allowed=(*NCCL_ARCHS[1:], '"" (none)'))
        if self.host_cpu not in HOST_CPUS:
            raise SpecError(f"unknown host_cpu '{self.host_cpu}'", field=f"{path}.host_cpu", value=self.host_cpu,
                            allowed=HOST_CPUS[1:])
        if self.gpu_nic_path not in GPU_NIC_PATHS:
            raise SpecError(f"unknown gpu_nic_path '{self.gpu_nic_path}'", field=f"{path}.gpu_nic_path",
                            value=self.gpu_nic_path, allowed=GPU_NIC_PATHS[1:])
        if (self.host_cpu or self.gpu_nic_path) and self.topology not in NETWORK_TOPOLOGIES:
            raise SpecError("host_cpu and gpu_nic_path describe a network level (topology fat_tree or "
                            "rail_optimized)", field=f"{path}.{'host_cpu' if self.host_cpu else 'gpu_nic_path'}",
                            value=self.topology, allowed=NETWORK_TOPOLOGIES)
        if not 0 <= self.nvls_efficiency <= 1:
            raise SpecError("nvls_efficiency is a fraction of the usable bandwidth in [0, 1] (0 = no NVLink SHARP)",
                            field=f"{path}.nvls_efficiency", value=self.nvls_efficiency, allowed="0..1")
        if self.nvlstree_net_factor is not None and not 0 < self.nvlstree_net_factor <= MAX_NVLSTREE_NET_FACTOR:
            raise SpecError("nvlstree_net_factor is NVLSTree's inter-node line over the usable bandwidth, in "
                            f"(0, {MAX_NVLSTREE_NET_FACTOR:g}]", field=f"{path}.nvlstree_net_factor",
                            value=self.nvlstree_net_factor, allowed=f"0..{MAX_NVLSTREE_NET_FACTOR:g}")
        if self.p2p_factor is not None and not 0 < self.p2p_factor <= MAX_NVLSTREE_NET_FACTOR:
            raise SpecError("p2p_factor is send/recv's line over the usable bandwidth, in "
                            f"(0, {MAX_NVLSTREE_NET_FACTOR:g}]", field=f"{path}.p2p_factor", value=self.p2p_factor,
                            allowed=f"0..{MAX_NVLSTREE_NET_FACTOR:g}")
        if self.alltoall_p2p_factor is not None and not 0 < self.alltoall_p2p_factor <= MAX_NVLSTREE_NET_FACTOR:
            raise SpecError("alltoall_p2p_factor is the all-to-all's send/recv line over the usable bandwidth, in "
                            f"(0, {MAX_NVLSTREE_NET_FACTOR:g}]", field=f"{path}.alltoall_p2p_factor",
                            value=self.alltoall_p2p_factor, allowed=f"0..{MAX_NVLSTREE_NET_FACTOR:g}")
        if self.nvlstree_efficiency is not None and not (0 < self.nvlstree_efficiency <= 1 and self.nvls_efficiency > 0):
            raise SpecError("nvlstree_efficiency is a fraction of the usable bandwidth in (0, 1], on a level with "
                            "nvls_efficiency > 0", field=f"{path}.nvlstree_efficiency", value=self.nvlstree_efficiency,
                            allowed="0..1")



@dataclass(frozen=True, kw_only=True)
class HardwareProfile:
    """A system: device kind, chip, compute efficiency and interconnect levels."""

    name: str
    description: str
    device_kind: str
    max_devices: int
    chip: ChipSpec
    efficiency: ComputeEfficiency
    interconnect: tuple[InterconnectLevel, ...]
    memory_reserved_bytes: float = 0.0  # runtime / framework / communication buffers, per device
    price_per_device_hour_usd: float | None = None
    price_source: str = ""
    calibrated_from: str = ""
    # the levels NCCL's tuner ranks (algorithm, protocol) by where they differ from the priced ones: the prior's,
    # written by `calibrate --transfer pick-as-nccl` (collectives/nccl_pick.py); () = rank by `interconnect`
    pick_interconnect: tuple[InterconnectLevel, ...] = ()

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.device_kind not in DEVICE_KINDS:
            raise SpecError(f"unknown device kind '{self.device_kind}'", field="device_kind",
                            value=self.device_kind, allowed=DEVICE_KINDS)
        if self.max_devices < 1:
            raise SpecError("max_devices must be >= 1", field="max_devices", value=self.max_devices)
        if not self.interconnect:
            raise SpecError("at least one interconnect level is needed", field="interconnect")
        if self.memory_reserved_bytes >= self.chip.hbm_bytes:
            raise SpecError(f"{self.memory_reserved_bytes / 2**30:g} GiB reserved is not below the "
                            f"{self.chip.hbm_bytes / 2**30:g} GiB of a device", field="memory_reserved_gib",
                            value=self.memory_reserved_bytes, allowed="0 <= memory_reserved_gib < HBM per device")
        domains = [level.domain_devices for level in self.interconnect]
        for inner, outer in zip(domains, domains[1:]):
            if outer % inner:
                raise SpecError(f"interconnect domains must nest: {outer} devices is not a multiple of {inner}",
                                field="interconnect", value=domains)
        picks = [level.domain_devices for level in self.pick_interconnect]
        if picks and picks != domains:
            raise SpecError(f"pick_interconnect's domains {picks} are not interconnect's {domains}",
                            field="pick_interconnect", value=picks, allowed=f"the same levels as interconnect: {domains}")
        if domains[-1] < self.max_devices:
            raise SpecError(f"the outermost interconnect level joins {domains[-1]} devices but max_devices is "
                            f"{self.max_devices}", field="interconnect", value=domains)

    @property
    def gpu_arch(self) -> str:
        """The GPU architecture (NCCL_ARCHS) the profile's levels state as nccl_arch (NCCL's tuner indexes its tables by
        it); "" where no level states one."""
        return next((level.nccl_arch for level in self.interconnect if level.nccl_arch), "")

    def check_devices(self, devices: int) -> None:
        """Raise unless `devices` is a device count this system can hold."""
        if devices < 1 or devices > self.max_devices:
            cap = (f" (the profile's max_devices = {self.max_devices}: the largest system it describes; a copy "
                   "of the profile with a larger max_devices lifts it)") if devices > self.max_devices else ""
            raise SpecError(f"{devices} devices is outside 1..{self.max_devices} for hardware profile "
                            f"'{self.name}'{cap}", field="devices", value=devices, allowed=f"1..{self.max_devices}")
        per_chip = self.chip.devices_per_chip
        if devices % per_chip:
            raise SpecError(f"{self.name} has {per_chip} devices per chip; {devices} is not a multiple",
                            field="devices", value=devices)

    def level_for_span(self, span_devices: int) -> int:
        """Index of the innermost level whose domain holds `span_devices` consecutive devices."""
        for i, level in enumerate(self.interconnect):
            if span_devices <= level.domain_devices:
                return i
        return len(self.interconnect) - 1
