"""Range errors in hardware profiles name the file's own key and range in the file's unit (issue #14, item 10)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from moesim.cli import main
from moesim.errors import SpecError
from moesim.paths import builtin_dir, builtin_names
from moesim.specs.file_units import HARDWARE_FILE_KEYS, _get
from moesim.specs.load import load_hardware, read_data_file

H100 = builtin_dir("hardware_profiles") / "h100-sxm.toml"
TPU_V3 = builtin_dir("hardware_profiles") / "tpu-v3.toml"  # 2 devices (cores) per chip


def bad_profile(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text(encoding="utf-8")
    assert text.count(old) >= 1, old
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize("old,new,field,fragments", [
    ("hbm_gb_per_chip = 80 ", "hbm_gb_per_chip = 2e6 ", "chip.hbm_gb_per_chip",
     ["2000000.0 is out of range", "<= 1.1259e+06 GB per chip"]),  # 2^50 bytes = 1.1259e6 GB
    ("link_gb_per_s_unidir = 450 ", "link_gb_per_s_unidir = 2e6 ", "interconnect[0].link_gb_per_s_unidir",
     ["> 0 and <= 1000000 GB/s, one direction"]),
    ("link_gbit_per_s_unidir = 400 ", "link_gbit_per_s_unidir = 0 ", "interconnect[1].link_gbit_per_s_unidir",
     ["0 is out of range", "> 0 and <= 8000000 Gbit/s, one direction"]),  # 1e15 B/s × 8 / 1e9
    ("latency_us = 14.0 ", "latency_us = 2e6 ", "interconnect[1].latency_us", [">= 0 and <= 1000000 us"]),
    ("bfloat16 = 989 ", "bfloat16 = 2e6 ", "chip.peak_tflops_per_chip.bfloat16",
     ["<= 1000000 TFLOP/s per chip"]),
    ("memory_reserved_gib = 3.0", "memory_reserved_gib = -1", "memory_reserved_gib", [">= 0", "GiB per device"]),
])
def test_range_error_names_file_key_and_unit(tmp_path, capsys, old, new, field, fragments):
    path = bad_profile(tmp_path, H100, old, new)
    with pytest.raises(SpecError) as info:
        load_hardware(str(path))
    assert info.value.field == field
    assert info.value.file == str(path)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    for si_name in ("hbm_bytes", "bytes_per_s", "latency_s", "flops_per_s", "memory_reserved_bytes"):
        assert si_name not in message, message
    # The CLI: exit 2 and one line naming the file and the key (a scenario using the bad profile).
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'schema_version = 1\nname = "x"\nmodel = "switch-base-8"\nhardware = "{path}"\n'
                        'devices = 8\n[training]\nglobal_batch_sequences = 8\n', encoding="utf-8")
    assert main(["estimate", str(scenario)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and f"field '{field}'" in err, err


def test_per_chip_range_scales_with_devices_per_chip(tmp_path):
    """TPU v3: 2 cores per chip; the per-device limit 2^50 bytes is 2^21 GiB per chip, so 2^20.5 GiB passes."""
    path = bad_profile(tmp_path, TPU_V3, "hbm_gib_per_chip = 32", "hbm_gib_per_chip = 1500000")
    assert load_hardware(str(path)).chip.hbm_bytes == pytest.approx(1500000 * 2**30 / 2)
    path = bad_profile(tmp_path, TPU_V3, "hbm_gib_per_chip = 32", "hbm_gib_per_chip = 3000000")
    with pytest.raises(SpecError, match=r"field 'chip.hbm_gib_per_chip': .*<= 2097152 GiB per chip"):
        load_hardware(str(path))


def test_specs_built_in_python_keep_the_si_message():
    hw = load_hardware("h100-sxm")
    with pytest.raises(SpecError, match=r"field 'chip.hbm_bytes'.*bytes per device"):
        dataclasses.replace(hw.chip, hbm_bytes=-1.0)
    level = hw.interconnect[0]
    with pytest.raises(SpecError, match=r"latency_s.*<= 1 s"):
        dataclasses.replace(level, latency_s=5.0)


def _concrete(pattern: str, index: int, star: str) -> str:
    return pattern.replace("[]", f"[{index}]").replace("*", star)


def test_table_converts_as_the_loader_does():
    """Each FileKey's factor reproduces the SI value the loader computed, on every shipped profile that uses it."""
    used = set()
    for name in builtin_names("hardware_profiles"):
        path = builtin_dir("hardware_profiles") / f"{name}.toml"
        data = read_data_file(path)
        hw = load_hardware(name)
        per_chip = hw.chip.devices_per_chip
        for key in HARDWARE_FILE_KEYS:
            stars = list(_get(data, "chip.peak_tflops_per_chip") or {}) if "*" in key.file_key else [""]
            n_levels = len(hw.interconnect) if "[]" in key.file_key else 1
            for i in range(n_levels):
                for star in stars:
                    raw = _get(data, _concrete(key.file_key, i, star))
                    if raw is None:
                        continue
                    si_path = _concrete(key.si_field, i, star).replace("interconnect[", "").split(".")
                    obj = hw.interconnect[i] if "[]" in key.si_field else hw
                    for part in (si_path[1:] if "[]" in key.si_field else si_path):
                        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
                    assert obj == pytest.approx(raw * key.to_si * per_chip ** key.per_chip_power), (name, key)
                    used.add(key.file_key)
    assert {"chip.hbm_gib_per_chip", "chip.hbm_gb_per_chip", "interconnect[].latency_us",
            "interconnect[].link_gb_per_s_unidir", "chip.peak_tflops_per_chip.*"} <= used


def test_key_reference_lists_ranges_in_file_units():
    """docs/keys.md's range column: hardware keys in their own unit, spec keys from RANGES."""
    rows = {}
    for line in (Path(__file__).resolve().parent.parent / "docs" / "keys.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 5 and cells[1].startswith("`"):
            rows.setdefault(cells[1].strip("`"), cells[4])
    assert rows["chip.hbm_gib_per_chip"] == "(0, 1048576·n]"  # 2^50 bytes per device = 2^20 GiB
    assert rows["interconnect.latency_us"] == "[0, 1000000]"  # 1 s
    assert rows["interconnect.link_gbit_per_s_unidir"] == "(0, 8000000]"  # 1e15 bytes/s × 8 bits / 1e9
    assert rows["chip.peak_tflops_per_chip.bfloat16"] == "(0, 1000000·n]"  # 1e18 FLOP/s
    assert rows["training.zero_stage"] == "[0, 3] integer"
    assert rows["moe.top_k"] == "[1, 1024] integer"
    for key in HARDWARE_FILE_KEYS:
        if "*" not in key.file_key:
            assert rows[key.file_key.replace("[]", "")], key.file_key


@pytest.mark.parametrize("bad", ["inf", "nan"])
def test_op_table_shape_must_be_finite(tmp_path, bad):
    """A non-finite op_table coordinate is a SpecError at load (it reached scipy's KD-tree before)."""
    a100 = builtin_dir("hardware_profiles") / "a100-80gb.toml"
    data = read_data_file(a100)
    first = data["efficiency"]["op_table"][0]["points"][0][0]
    text = a100.read_text(encoding="utf-8")
    old = f"[[{first:g}, " if f"[[{first:g}, " in text else f"[{first:g}, "
    path = bad_profile(tmp_path, a100, old, old.replace(f"{first:g}", bad))
    with pytest.raises(SpecError, match="must be finite"):
        load_hardware(str(path))
