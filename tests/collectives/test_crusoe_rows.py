"""Session 18 (crusoe): the Crusoe A100 2-node all_reduce size by size (scripts/crusoe_rows.py;
docs/collectives-history.md "Session 18 (crusoe)"): the figures the section quotes, from the shipped priors and
Crusoe's stated fabric."""

import tomllib
from pathlib import Path

import pytest

GB = 1e9
MiB = 2**20


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("scripts/crusoe_rows.py")


@pytest.fixture(scope="module")
def rows(script):
    return {r["size"]: r for r in script.rows()}


def test_crusoe_states_the_profiles_nic_line(script):
    hca, instance = script.stated_nic_line_bytes_per_s()
    assert hca == pytest.approx(25 * GB) and instance == pytest.approx(200 * GB)  # 1600 Gbps over 8 HCAs
    nic_node, nvlink = script.line_rates_bytes_per_s(script.crusoe_log().hardware)
    assert nic_node == pytest.approx(instance)  # the a100-80gb profile: 200 Gb/s per GPU, 8 per node
    assert nvlink == pytest.approx(300 * GB)


def test_busbw_reads_the_logs_column(rows, script):
    # the log's in-place 2 GiB row prints busbw 194.09 GB/s at 20745.7 us
    assert script.busbw_bytes_per_s(2**31, 20745.7e-6, 16) / GB == pytest.approx(194.09, abs=0.01)
    assert rows[2**31]["busbw"] / GB == pytest.approx(194.09, abs=0.01)


def test_the_picks_and_what_binds(rows):
    assert all(rows[s]["pick"] == "tree/LL" for s in rows if s <= 64 * 2**10)
    for s in (2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB, 32 * MiB):
        assert (rows[s]["pick"], rows[s]["channels"], rows[s]["bottleneck"]) == ("ring/LL128", 16, "nvlink")
    for s in (128 * MiB, 512 * MiB, 2**31):
        assert (rows[s]["pick"], rows[s]["channels"], rows[s]["bottleneck"]) == ("ring/Simple", 16, "infiniband")


def test_every_candidate_is_slower_than_measured_from_512_kib(rows):
    for s, r in rows.items():
        if s >= 512 * 2**10:
            assert r["measured_s"] < min(r["cands"].values()), s
    assert rows[16 * MiB]["measured_s"] / min(rows[16 * MiB]["cands"].values()) - 1 == pytest.approx(-0.39, abs=0.005)


def test_the_plateau_reaches_the_line_the_prior_cannot(rows, script):
    eff = script.crusoe_log().hardware.interconnect[1].bw_efficiency.at(2**31)
    assert eff == pytest.approx(0.9)
    top = rows[2**31]
    assert top["of_nic"] == pytest.approx(0.970, abs=0.001)  # measured 194.1 of 200 GB/s
    assert top["priced_of_nic"] == pytest.approx(0.865, abs=0.001)
    assert top["of_nic"] > eff > top["priced_of_nic"]
    assert top["error"] == pytest.approx(-0.108, abs=0.001)


def test_the_ar_threshold_moves_no_ring_message_from_2_mib(rows):
    toml = Path(__file__).parents[2] / "scripts" / "ring_message_rows.toml"
    ib = tomllib.loads(toml.read_text(encoding="utf-8"))["ib"]
    assert ib["ar_threshold_bytes"] == 8192  # NCCL's default (net_ib.cc NCCL_PARAM IbArThreshold)
    ring = [r for s, r in rows.items() if s >= 2 * MiB and r["pick"].startswith("ring/")]
    assert len(ring) == 11 and all(r["wire"] > ib["ar_threshold_bytes"] for r in ring)  # sent the same at 0


def test_without_the_caps(rows):
    assert rows[2**31]["nocap_pick"] == "tree/Simple" and rows[2**31]["nocap_error"] == pytest.approx(-0.02, abs=0.005)
    assert rows[16 * MiB]["nocap_error"] == pytest.approx(-0.34, abs=0.005)
    assert rows[16 * MiB]["error"] == pytest.approx(-0.39, abs=0.005)


def test_render_prints_every_size(script, rows):
    text = script.render()
    assert len(rows) == 29 and text.count("\n") == 29 + 3  # fence, head, rule, 29 rows, fence
