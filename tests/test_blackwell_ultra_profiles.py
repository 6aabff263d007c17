"""The GB300 NVL72 and DGX B300 profiles against NVIDIA's own figures (golden): each chip and link figure as the
vendor document gives it, the efficiency marked as borrowed, and a layout search that runs on GB300.

Sources (hardware_profiles/gb300-nvl72.toml, b300.toml): [BU] NVIDIA Technical Blog "Inside NVIDIA Blackwell
Ultra: The Chip Powering the AI Factory Era" (288 GB HBM3E, 8 TB/s, 160 SMs, NVLink 5 1.8 TB/s bidirectional,
15 PF dense NVFP4); [NVL] NVIDIA GB300 NVL72 spec table (rack: 360 PF dense FP8, 20 TB HBM at 576 TB/s, 130 TB/s
NVLink, 72 ConnectX-8); [DGX] NVIDIA DGX B300 datasheet (8 GPUs, 2.3 TB, 72 PF FP8 with sparsity, 14.4 TB/s
NVLink, 8x ConnectX-8 800 Gb/s)."""

from __future__ import annotations

import pytest
from pytest import approx

from moesim.cli import main
from moesim.specs.load import load_hardware


def test_gb300_nvl72_figures():
    hw = load_hardware("gb300-nvl72")
    nvlink, ib = hw.interconnect
    assert hw.chip.peak_for("float8") == approx(360e15 / 72)  # [NVL] 360 PF dense FP8 per rack
    assert hw.chip.peak_for("bfloat16") == approx(360e15 / 72 / 2)  # half the FP8 rate (NVIDIA's NVL72 tables)
    assert hw.chip.hbm_bytes == approx(288e9)  # [BU] 288 GB HBM3E
    assert 72 * hw.chip.hbm_bytes == approx(20e12, rel=0.04)  # [NVL] "20 TB" per rack (20.7)
    assert hw.chip.hbm_bw_bytes_per_s == approx(8e12) == approx(576e12 / 72)  # [BU] 8 TB/s; [NVL] 576 TB/s per rack
    assert hw.chip.sm_count == 160  # [BU]
    assert nvlink.domain_devices == 72 and nvlink.link_bw_bytes_per_s == approx(1.8e12 / 2)  # [BU] 1.8 TB/s bidi
    assert nvlink.domain_devices * 2 * nvlink.link_bw_bytes_per_s == approx(130e12, rel=0.01)  # [NVL] 130 TB/s
    assert ib.link_bw_bytes_per_s == approx(800e9 / 8)  # [NVL] one ConnectX-8 (800 Gb/s) per GPU


def test_b300_figures():
    hw = load_hardware("b300")
    nvlink, ib = hw.interconnect
    assert 8 * hw.chip.peak_for("float8") * 2 == approx(72e15)  # [DGX] 72 PF FP8 per system, with sparsity
    assert hw.chip.peak_for("bfloat16") == approx(hw.chip.peak_for("float8") / 2)
    assert 8 * hw.chip.hbm_bytes == approx(2.3e12, rel=0.01)  # [DGX] 2.3 TB per 8 GPUs (= 8 x 288 GB [BU])
    assert hw.chip.hbm_bw_bytes_per_s == approx(8e12)  # [BU]
    assert nvlink.domain_devices == 8  # [DGX]
    assert 8 * 2 * nvlink.link_bw_bytes_per_s == approx(14.4e12)  # [DGX] 14.4 TB/s aggregate NVLink
    assert ib.rails == 8 and ib.link_bw_bytes_per_s == approx(800e9 / 8)  # [DGX] 8x ConnectX-8, 800 Gb/s


@pytest.mark.parametrize("name", ["gb300-nvl72", "b300"])
def test_their_efficiency_is_borrowed_not_measured(name):
    """Nothing measured on Blackwell Ultra: b200's SimuMax tables borrowed (session 23, bwtables) as fractions of
    this chip's own peak, marked derived; the FLOP-keyed prior gb200-nvl72 carries for what no table covers."""
    hw, gb200, b200 = load_hardware(name), load_hardware("gb200-nvl72"), load_hardware("b200")
    assert hw.efficiency.op_tables_from == "b200"
    assert [t.points for t in hw.efficiency.op_tables] == [t.points for t in b200.efficiency.op_tables]
    assert {t.status for t in hw.efficiency.op_tables} == {"derived", "assumed"}  # b200's one assumed table stays so
    assert all(t.source.startswith("borrowed from b200") for t in hw.efficiency.op_tables)
    assert hw.efficiency.matmul == gb200.efficiency.matmul
    assert "derived" in hw.efficiency.source and "nothing measured" in hw.efficiency.source


def test_a_layout_search_runs_on_gb300(tmp_path, capsys):
    scenario = tmp_path / "qwen3-30b-gb300.toml"
    scenario.write_text('schema_version = 1\nname = "qwen3-30b-gb300"\ndescription = "Qwen3-30B-A3B on 8 GB300"\n'
                        'model = "qwen3-30b-a3b"\nhardware = "gb300-nvl72"\ndevices = 8\n\n[training]\n'
                        'global_batch_sequences = 512\nseq_len = 4096\nprecision_recipe = "mxfp8-blackwell"\n',
                        encoding="utf-8")
    assert main(["search", str(scenario), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "8 x gb300-nvl72" in out and "ranked" in out
