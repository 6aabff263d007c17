"""The shipped hardware profiles: they load, their figures match their sources, and the loader is strict.

Golden figures are per device and SI (bytes, bytes/s, FLOP/s, s), as the loader returns them. Each
number cites its source beside it; SB = jax-ml/scaling-book (tpus.md @54e2c439, gpus.md), GCP =
the Google Cloud TPU system-architecture pages, REF = ../shared/reference/hardware.md.
"""

from __future__ import annotations

import copy
import math
import re
import tempfile
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moesim.errors import SpecError
from moesim.paths import builtin_dir, builtin_names
from moesim.specs.hardware import DEVICE_KINDS, TOPOLOGIES
from moesim.specs.load import load_hardware

REQUIRED_PROFILES = (
    "tpu-v2", "tpu-v3", "tpu-v4", "tpu-v5p", "a100-80gb", "h100-sxm", "h800", "h200", "b200",
    "gb200-nvl72", "cpu-localhost",
)
PROFILE_DIR = builtin_dir("hardware_profiles")
ALL_PROFILES = builtin_names("hardware_profiles")

GIB = 2**30
GB = 1e9


def profile_path(name: str) -> Path:
    return PROFILE_DIR / f"{name}.toml"


def raw(name: str) -> dict:
    return tomllib.loads(profile_path(name).read_text(encoding="utf-8"))


# --- every shipped profile ----------------------------------------------------------------

def test_required_profiles_are_shipped():
    missing = sorted(set(REQUIRED_PROFILES) - set(ALL_PROFILES))
    assert not missing, f"missing hardware profiles: {missing}"


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_profile_loads(name):
    hw = load_hardware(name)
    assert hw.name == name  # the file stem is the profile's name
    assert hw.device_kind in DEVICE_KINDS
    assert all(level.topology in TOPOLOGIES for level in hw.interconnect)


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_every_chip_efficiency_and_level_has_a_source(name):
    hw = load_hardware(name)
    assert hw.chip.source.strip(), f"{name}: [chip] has no source"
    assert hw.efficiency.source.strip(), f"{name}: [efficiency] has no source"
    for level in hw.interconnect:
        assert level.source.strip(), f"{name}: interconnect level {level.name} has no source"
    if hw.price_per_device_hour_usd is not None:  # a price only with a public list-price source
        assert hw.price_source.strip(), f"{name}: price without price_source"


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_domains_nest(name):
    hw = load_hardware(name)
    domains = [level.domain_devices for level in hw.interconnect]
    for inner, outer in zip(domains, domains[1:]):
        assert outer % inner == 0, f"{name}: {outer} is not a multiple of {inner}"
    assert domains[-1] >= hw.max_devices
    assert hw.max_devices % hw.chip.devices_per_chip == 0


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_torus_dims_match_the_domain(name):
    hw = load_hardware(name)
    for level in hw.interconnect:
        if level.topology == "torus":
            assert math.prod(level.dims) * hw.chip.devices_per_chip == level.domain_devices
            assert level.links_per_chip == 2 * len(level.dims)


# Keys holding a published or derived figure: each needs a comment on its line or a comment
# block right above it saying where the number comes from.
_FIGURE_KEYS = re.compile(
    r"^\s*(hbm_gib_per_chip|hbm_gb_per_chip|hbm_bw_gb_per_s_per_chip|float32|tfloat32|bfloat16|float16|float8"
    r"|link_gb_per_s_unidir|link_gbit_per_s_unidir|latency_us|memory_bandwidth|layer_overhead_us)\s*="
)


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_every_figure_line_has_a_source_comment(name):
    lines = profile_path(name).read_text(encoding="utf-8").splitlines()
    bare = []
    for i, line in enumerate(lines):
        if not _FIGURE_KEYS.match(line):
            continue
        above = lines[i - 1].strip() if i else ""
        if "#" not in line and not above.startswith("#"):
            bare.append(f"line {i + 1}: {line.strip()}")
    assert not bare, f"{name}: figures without a source comment: {bare}"


# --- device semantics ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tpu-v2", "tpu-v3"])
def test_tpu_v2_v3_device_is_a_tensorcore(name):
    hw = load_hardware(name)
    assert hw.device_kind == "tpu_core"
    assert hw.chip.devices_per_chip == 2  # two TensorCores per chip (GCP v3 page; v2 UNCONFIRMED)


@pytest.mark.parametrize("name", ["tpu-v4", "tpu-v5p"])
def test_tpu_v4_v5p_device_is_a_megacore_chip(name):
    hw = load_hardware(name)
    assert hw.device_kind == "tpu_chip"
    assert hw.chip.devices_per_chip == 1
    (ici,) = hw.interconnect
    assert ici.wraparound == "multiple_of_4"  # SB tpus.md; GCP v4 page
    assert ici.links_per_chip == 6


def test_gpu_and_cpu_kinds():
    for name in ("a100-80gb", "h100-sxm", "h800", "h200", "b200", "gb200-nvl72"):
        assert load_hardware(name).device_kind == "gpu"
    cpu = load_hardware("cpu-localhost")
    assert cpu.device_kind == "cpu"
    assert [level.topology for level in cpu.interconnect] == ["loopback"]
    assert "calibrate" in cpu.description  # its figures are priors


@pytest.mark.parametrize("name", ["tpu-v2", "h800"])
def test_unconfirmed_figures_say_so(name):
    # REF marks TPU v2's chip figures and H800's compute/HBM as UNCONFIRMED; the profile must too.
    assert "UNCONFIRMED" in load_hardware(name).chip.source


# --- golden per-device figures --------------------------------------------------------------

def approx(value: float, rel: float = 1e-9):
    return pytest.approx(value, rel=rel)


def test_tpu_v2_figures():
    hw = load_hardware("tpu-v2")
    # UNCONFIRMED (REF): commonly quoted 45 TFLOPS bf16, 16 GiB, 600 GB/s per chip; 2 cores per chip
    assert hw.chip.peak_for("bfloat16") == approx(45e12 / 2)
    assert hw.chip.hbm_bytes == approx(16 * GIB / 2)
    assert hw.chip.hbm_bw_bytes_per_s == approx(600 * GB / 2)
    (ici,) = hw.interconnect
    assert ici.dims == (16, 16) and ici.domain_devices == 512  # 256-chip pod (REF: UNCONFIRMED shape)
    assert ici.wraparound == "full_axis"


def test_tpu_v3_figures():
    hw = load_hardware("tpu-v3")
    assert hw.chip.peak_for("bfloat16") == approx(123e12 / 2)  # 123 TFLOPS per chip, 2 cores (GCP v3)
    assert hw.chip.hbm_bytes == approx(32 * GIB / 2)  # 32 GiB per chip (GCP v3)
    assert hw.chip.hbm_bw_bytes_per_s == approx(900 * GB / 2)  # 900 GBps per chip (GCP v3)
    (ici,) = hw.interconnect
    assert ici.link_bw_bytes_per_s == approx(1e11)  # one-way per link (SB tpus.md)
    assert ici.dims == (32, 32) and ici.domain_devices == 2048  # 1024-chip pod (GCP v3; SB 32x32)
    assert ici.latency_s == approx(1e-6)  # "typically around 1us" per hop (SB sharding.md)


def test_tpu_v4_figures():
    hw = load_hardware("tpu-v4")
    assert hw.chip.peak_for("bfloat16") == approx(275e12)  # 275 TFLOPS bf16 per chip (GCP v4; SB 2.75e14)
    assert hw.chip.hbm_bytes == approx(32 * GIB)  # 32 GiB (GCP v4)
    assert hw.chip.hbm_bw_bytes_per_s == approx(1.2e12)  # 1200 GBps (GCP v4; SB 1.2e12)
    (ici,) = hw.interconnect
    assert ici.link_bw_bytes_per_s == approx(4.5e10)  # one-way per link (SB tpus.md, "TPU v4p")
    assert ici.dims == (16, 16, 16) and ici.domain_devices == 4096  # SB tpus.md; 4096 chips (GCP v4)


def test_tpu_v5p_figures():
    hw = load_hardware("tpu-v5p")
    assert hw.chip.peak_for("bfloat16") == approx(459e12)  # 459 TFLOPS (GCP v5p; SB 4.59e14)
    assert hw.chip.hbm_bytes == approx(95e9)  # "95 GB" (GCP v5p-training)
    assert hw.chip.hbm_bw_bytes_per_s == approx(2765e9)  # 2765 GBps (GCP v5p-training)
    (ici,) = hw.interconnect
    assert ici.link_bw_bytes_per_s == approx(9e10)  # one-way per link (SB tpus.md @54e2c439; older 1e11)
    assert ici.dims == (16, 20, 28) and ici.domain_devices == 8960  # SB tpus.md; 8960 chips (GCP v5p)
    # Google's 1200 GBps bidirectional per chip over 6 links = 100 GB/s one way: SB's figure is within 10%.
    assert ici.link_bw_bytes_per_s == pytest.approx(1200e9 / 2 / 6, rel=0.1)


def test_a100_figures():
    hw = load_hardware("a100-80gb")
    assert hw.chip.peak_for("bfloat16") == pytest.approx(3.1e14, rel=0.01)  # SB gpus.md 3.1e14 dense
    assert hw.chip.hbm_bytes == approx(80e9)  # 80 GB (SB gpus.md)
    assert hw.chip.hbm_bw_bytes_per_s == pytest.approx(2.0e12, rel=0.02)  # SB gpus.md 2.0e12
    assert "float8" not in hw.chip.peak_flops_per_s  # Ampere has no FP8 tensor cores
    nvlink, ib = hw.interconnect
    assert nvlink.domain_devices == 8
    assert nvlink.link_bw_bytes_per_s == approx(300e9)  # 12 x 25 GB/s per direction (SB gpus.md)
    assert nvlink.link_bw_bytes_per_s * nvlink.bw_efficiency.at(1e9) == pytest.approx(235e9, rel=0.03)  # ~230-240 (nccl-tests#149)
    assert ib.link_bw_bytes_per_s == approx(200e9 / 8)  # HDR 200 Gb/s per GPU (REF; NIC count UNCONFIRMED)


def test_h100_figures():
    hw = load_hardware("h100-sxm")
    assert hw.chip.peak_for("bfloat16") == pytest.approx(9.9e14, rel=0.01)  # SB gpus.md 9.9e14 dense
    assert hw.chip.peak_for("float8") == pytest.approx(2.0e15, rel=0.02)  # SB gpus.md 2.0e15
    assert hw.chip.hbm_bytes == approx(80e9)  # 80 GB (SB gpus.md)
    assert hw.chip.hbm_bw_bytes_per_s == approx(3.35e12)  # SB gpus.md
    nvlink, ib = hw.interconnect
    assert nvlink.link_bw_bytes_per_s == approx(450e9)  # 18 x 25 GB/s per direction (SB gpus.md)
    assert ib.link_bw_bytes_per_s == approx(50e9)  # 400 Gb/s NDR per GPU (SB gpus.md)
    assert ib.domain_devices == 1024  # DGX H100 SuperPod (SB gpus.md)
    # node egress 400 GB/s (SB gpus.md): 8 GPUs x one NIC each
    assert nvlink.domain_devices * ib.link_bw_bytes_per_s == approx(400e9)


def test_h800_figures():
    hw = load_hardware("h800")
    assert hw.max_devices == 2048  # "2048 NVIDIA H800 GPUs" (DeepSeek-V3, arXiv 2412.19437, 3.1)
    assert hw.chip.peak_for("bfloat16") == pytest.approx(9.9e14, rel=0.01)  # UNCONFIRMED, = H100 (REF)
    nvlink, ib = hw.interconnect
    assert nvlink.domain_devices == 8  # 8 GPUs per node (DeepSeek-V3, 3.1)
    assert nvlink.link_bw_bytes_per_s == approx(160e9)  # "NVLink offers a bandwidth of 160 GB/s" (DeepSeek-V3, 3.2.2)
    assert nvlink.bw_efficiency.at(1e9) == 1.0  # 160 is already achievable bandwidth
    assert ib.link_bw_bytes_per_s == approx(50e9)  # CX7 400 Gb/s, "~50 GB/s" (deepseek-ai/DeepEP README)


def test_h200_figures():
    hw = load_hardware("h200")
    assert hw.chip.peak_for("bfloat16") == pytest.approx(9.9e14, rel=0.01)  # SB gpus.md 9.9e14
    assert hw.chip.hbm_bytes == approx(141e9)  # 141 GB (SB gpus.md; MLPerf H200 system JSON)
    assert hw.chip.hbm_bw_bytes_per_s == approx(4.8e12)  # SB gpus.md
    nvlink, ib = hw.interconnect
    assert nvlink.link_bw_bytes_per_s == approx(900e9 / 2)  # "18x 4th Gen NVLink, 900GB/s" bidi (MLPerf JSON)
    assert ib.link_bw_bytes_per_s == approx(400e9 / 8)  # 400 Gb/s IB (REF)


def test_b200_figures():
    hw = load_hardware("b200")
    assert hw.chip.peak_for("bfloat16") == pytest.approx(2.3e15, rel=0.03)  # SB gpus.md 2.3e15 (2250e12 in text)
    assert hw.chip.peak_for("float8") == approx(4.5e15)  # SB gpus.md
    assert hw.chip.hbm_bytes == approx(180e9)  # B200-SXM-180GB (MLPerf v6.0 Nebius JSON); SB: 192GB physical
    assert hw.chip.hbm_bw_bytes_per_s == approx(8.0e12)  # SB gpus.md
    nvlink, ib = hw.interconnect
    assert nvlink.link_bw_bytes_per_s == approx(900e9)  # 18 x 50 GB/s per direction (SB gpus.md)
    # node egress 400e9 B/s for an 8xB200 node (SB gpus.md)
    assert nvlink.domain_devices * ib.link_bw_bytes_per_s == approx(400e9)


def test_gb200_nvl72_figures():
    hw = load_hardware("gb200-nvl72")
    nvlink, ib = hw.interconnect
    assert nvlink.domain_devices == 72  # NVL72 (SB gpus.md)
    assert nvlink.link_bw_bytes_per_s == approx(900e9)  # GPU egress 900e9 (SB gpus.md)
    # rack egress 4 x 18 x 400 Gb/s / 8 = 3.6 TB/s per 72 GPUs (SB gpus.md)
    assert nvlink.domain_devices * ib.link_bw_bytes_per_s == approx(4 * 18 * 400e9 / 8)
    assert hw.chip.hbm_bytes == pytest.approx(13.4e12 / 72, rel=0.01)  # 13.4 TB per rack (secondary); 186 GB (MLPerf JSON)
    assert hw.chip.hbm_bw_bytes_per_s == approx(576e12 / 72)  # 576 TB/s per rack (secondary)
    assert hw.chip.peak_for("bfloat16") == approx(360e15 / 72 / 2)  # 360 PFLOPS sparse per rack, dense = 1/2
    assert hw.max_devices == 576  # GB200 SuperPod of 576 GPUs (SB gpus.md)


def test_cpu_localhost_figures():
    hw = load_hardware("cpu-localhost")
    # derived: 2 FMA units x 8 AVX2 fp32 lanes x 2 FLOP x 3.0 GHz (a prior, not a measurement)
    assert hw.chip.peak_for("float32") == approx(2 * 8 * 2 * 3.0e9)
    (loopback,) = hw.interconnect
    assert 10e-6 <= loopback.latency_s <= 100e-6  # "tens of us" for gloo over loopback (assumption)


# --- the loader is strict on a real profile ------------------------------------------------

BASE_PROFILE = "h100-sxm"


def write_variant(directory: Path, data: dict, stem: str = "variant") -> Path:
    path = directory / f"{stem}.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def load_error(tmp_path: Path, mutate) -> tuple[SpecError, Path]:
    data = copy.deepcopy(raw(BASE_PROFILE))
    mutate(data)
    path = write_variant(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_hardware(path)
    return info.value, path


def test_unchanged_copy_loads(tmp_path):
    assert load_hardware(write_variant(tmp_path, raw(BASE_PROFILE))) == load_hardware(BASE_PROFILE)


def test_unknown_top_level_key(tmp_path):
    err, path = load_error(tmp_path, lambda d: d.update(peak_pflops=1))
    assert str(path) in str(err)
    assert err.field == "peak_pflops"
    assert "unknown key" in str(err) and "max_devices" in str(err)  # lists the keys that are known


def test_unknown_key_in_an_interconnect_level(tmp_path):
    err, path = load_error(tmp_path, lambda d: d["interconnect"][1].update(bandwidth_gbps=400))
    assert str(path) in str(err)
    assert err.field == "interconnect[1].bandwidth_gbps"
    assert "link_gbit_per_s_unidir" in str(err)  # the allowed keys include the right one


def test_misspelt_optional_key(tmp_path):
    def misspell(d):
        d["memory_reserved_gb"] = d.pop("memory_reserved_gib")

    err, path = load_error(tmp_path, misspell)
    assert str(path) in str(err)
    assert err.field == "memory_reserved_gb"
    assert "memory_reserved_gib" in str(err)  # the correct spelling is among the allowed keys


def test_misspelt_required_key(tmp_path):
    def misspell(d):
        d["interconnect"][0]["latency_usec"] = d["interconnect"][0].pop("latency_us")

    err, path = load_error(tmp_path, misspell)
    assert str(path) in str(err)
    assert err.field == "interconnect[0].latency_us"
    assert "required key is missing" in str(err)


def test_missing_required_key(tmp_path):
    err, path = load_error(tmp_path, lambda d: d["chip"].pop("hbm_bw_gb_per_s_per_chip"))
    assert str(path) in str(err)
    assert err.field == "chip.hbm_bw_gb_per_s_per_chip"
    assert "required key is missing" in str(err)


@pytest.mark.parametrize(("where", "key", "value", "field"), [
    ((), "max_devices", "lots", "max_devices"),
    (("chip",), "hbm_gb_per_chip", "80GB", "chip.hbm_gb_per_chip"),
    (("interconnect", 0), "latency_us", "3us", "interconnect[0].latency_us"),
    ((), "max_devices", True, "max_devices"),  # a boolean is not an integer
])
def test_wrong_type(tmp_path, where, key, value, field):
    def set_value(d):
        table = d
        for step in where:
            table = table[step]
        table[key] = value

    err, path = load_error(tmp_path, set_value)
    assert str(path) in str(err)
    assert err.field == field
    assert "expected" in str(err)


def test_bad_topology_lists_the_allowed_ones(tmp_path):
    err, path = load_error(tmp_path, lambda d: d["interconnect"][0].update(topology="hypercube"))
    assert str(path) in str(err)
    assert err.field == "interconnect[0].topology"
    assert "hypercube" in str(err)
    for topology in TOPOLOGIES:
        assert topology in str(err)


def test_bad_device_kind_lists_the_allowed_ones(tmp_path):
    err, path = load_error(tmp_path, lambda d: d.update(device_kind="fpga"))
    assert str(path) in str(err) and err.field == "device_kind"
    assert all(kind in str(err) for kind in DEVICE_KINDS)


def test_domains_that_do_not_nest(tmp_path):
    err, path = load_error(tmp_path, lambda d: d["interconnect"][1].update(domain_devices=1020))
    assert str(path) in str(err)
    assert err.field == "interconnect"
    assert "nest" in str(err)


def test_both_hbm_units(tmp_path):
    err, path = load_error(tmp_path, lambda d: d["chip"].update(hbm_gib_per_chip=80))
    assert str(path) in str(err)
    assert "exactly one" in str(err)


def test_layer_overhead_defaults_to_zero_and_reads_microseconds(tmp_path):
    assert all(load_hardware(name).efficiency.layer_overhead_s == 0.0 for name in ALL_PROFILES)
    data = copy.deepcopy(raw(BASE_PROFILE))
    data["efficiency"]["layer_overhead_us"] = 250
    hw = load_hardware(write_variant(tmp_path, data))
    assert hw.efficiency.layer_overhead_s == pytest.approx(250e-6, rel=1e-12)
    assert hw.efficiency.matmul == load_hardware(BASE_PROFILE).efficiency.matmul


@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan")])
def test_layer_overhead_must_be_finite_and_not_negative(tmp_path, value):
    err, path = load_error(tmp_path, lambda d: d["efficiency"].update(layer_overhead_us=value))
    assert str(path) in str(err)
    assert err.field == "efficiency.layer_overhead_us"
    assert ">= 0" in str(err)


def test_layer_overhead_in_seconds_is_validated_by_the_spec():
    from moesim.specs.hardware import ComputeEfficiency, EfficiencyTable

    with pytest.raises(SpecError, match="out of range") as info:
        ComputeEfficiency(matmul=EfficiencyTable.constant(0.5), memory_bandwidth=0.8, layer_overhead_s=-1e-6)
    assert info.value.field == "efficiency.layer_overhead_s"


# --- property: dropping keys yields a SpecError, never another exception --------------------

def _key_paths(data: dict) -> list[tuple]:
    """Every removable key of a profile, as a path of dict keys and list indices."""
    paths = []
    for key, value in data.items():
        paths.append((key,))
        if isinstance(value, dict):
            paths.extend((key, *sub) for sub in _key_paths(value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                paths.extend((key, i, *sub) for sub in _key_paths(item))
    return paths


def _required(data: dict, path: tuple) -> bool:
    """Whether the loader must reject a profile without the key at `path`."""
    top = {"schema_version", "name", "description", "device_kind", "max_devices", "chip", "efficiency",
           "interconnect"}
    if len(path) == 1:
        return path[0] in top
    if path[0] == "chip" and len(path) == 2:
        # whichever of hbm_gib/hbm_gb is given is the only one
        return path[1] in {"name", "source", "peak_tflops_per_chip", "hbm_bw_gb_per_s_per_chip",
                           "hbm_gib_per_chip", "hbm_gb_per_chip"}
    if path[0] == "efficiency":
        return path[1] in {"matmul", "memory_bandwidth", "source"}
    if path[0] == "interconnect" and len(path) == 3:
        level = data["interconnect"][path[1]]
        needed = {"name", "topology", "latency_us", "source", "link_gb_per_s_unidir", "link_gbit_per_s_unidir",
                  "domain_devices", "domain_chips"}
        if level.get("topology") == "torus":
            needed.add("dims")
        return path[2] in needed
    return False  # one peak dtype among several, or a sub-key of an optional table


def _remove(data: dict, path: tuple) -> None:
    table = data
    for step in path[:-1]:
        table = table[step]
    table.pop(path[-1], None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(REQUIRED_PROFILES))
def test_removing_keys_raises_spec_error_never_another_exception(data, name):
    original = raw(name)
    paths = _key_paths(original)
    removed = sorted(data.draw(st.sets(st.sampled_from(paths), min_size=1, max_size=4), label="removed"), key=str)
    variant = copy.deepcopy(original)
    for path in sorted(removed, key=len, reverse=True):
        _remove(variant, path)
    must_fail = any(_required(original, path) for path in removed)
    with tempfile.TemporaryDirectory() as tmp:
        file = write_variant(Path(tmp), variant, stem=name)
        try:
            load_hardware(file)
        except SpecError as err:
            assert str(file) in str(err), f"error does not name the file: {err}"
        else:
            assert not must_fail, f"removing {removed} from {name} should have been rejected"
