"""The TPU ICI model against published TPU collective measurements (tests/data/tpu/measurements.toml).

Errors are predicted / measured - 1 (ratios for growth entries, times for points); the figures and their
sources are in the data file, quoted next to each assertion here."""

from __future__ import annotations

from pathlib import Path

import pytest

from moesim.collectives.base import Group
from moesim.collectives.topo_model import TopologyModel
from moesim.collectives.tpu_published import MANIFEST, compare, gshard_estimate, probes
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def rows():
    return compare()


def _errors(rows, name):
    return [r.error for r in rows if r.name == name]


def test_gshard_all_to_all_growth_16_to_2048_is_a_known_miss(rows):
    """GShard (arXiv 2006.16668) §5.3, Fig. 9, TPU v3, 8 and 32 MB per partition: 'while D grows by 128 times,
    the execution time of AllToAll only increases by 9 times'. moesim's torus model grows x4.0: -55 %.
    KNOWN MISS (not fitted): were the slices' wraparound links unused, the model would give x8.0 (see probe test)."""
    errs = _errors(rows, "gshard-fig9-all-to-all")
    assert len(errs) == 2
    assert all(-0.60 < e < -0.50 for e in errs)


def test_gshard_dispatch_combine_growth_128_to_2048_is_a_known_miss(rows):
    """GShard §5.2, Fig. 8: MoE dispatch and combine (AllToAll) time 'increases by about 3.75x' from 128 to
    2048 experts (one per TPU v3 core, constant bytes per core). moesim x2.0: -47 %. KNOWN MISS."""
    errs = _errors(rows, "gshard-fig8-dispatch-combine")
    assert all(-0.52 < e < -0.42 for e in errs)


def test_gshard_all_reduce_roughly_flat_in_partitions(rows):
    """GShard §5.3: 'AllReduce on TPU has an execution time independent from the number of devices'
    (Fig. 9's spread put down to square vs rectangular, torus vs mesh). moesim: x1.03 at 8 MB; x0.60 at 32 MB,
    where the full 32x32 pod's wraparound halves the ring time against the 2x4 mesh of 16 cores."""
    small, large = _errors(rows, "gshard-fig9-all-reduce")
    assert abs(small) < 0.10
    assert -0.45 < large < -0.35


def test_v5p_one_hop_ppermute_within_10_percent(rows):
    """marin-community/marin issue 6736, v5p-8 lax.ppermute: 1-16 KiB ~4.5-5.5 us, 1 MiB 16.94 us,
    64 MiB 781.98 us. The 3.5 us per-collective overhead comes from this sweep's intercept (fitted: yes)."""
    errs = _errors(rows, "v5p-ppermute-1hop")
    assert len(errs) == 4
    assert all(-0.10 <= e < 0.0 for e in errs)


def test_no_wraparound_probe_matches_both_gshard_all_to_all_figures_and_per_peer_cost_cannot(rows):
    """Diagnosis, not shipped: without wraparound links the model grows x8.0 (16 -> 2048) and x4.0
    (128 -> 2048), within 12 % of GShard's x9 and x3.75 at both sizes; a per-destination cost would need
    0.46 us at 8 MB but 1.77 us at 32 MB, so no single constant explains both sizes."""
    found = [p for p in probes(rows) if p.collective == "all_to_all"]
    assert len(found) == 4
    assert all(abs(p.without_wraparound / p.measured - 1) < 0.12 for p in found)
    fig9 = {p.size_bytes: p.per_peer_s for p in found if p.name == "gshard-fig9-all-to-all"}
    assert fig9[32 * 2**20] > 3 * fig9[8 * 2**20] > 0


def test_uniform_wraparound_fits_the_all_to_all_but_breaks_the_all_reduce_claim(rows):
    """Diagnosis, not shipped: with the same wraparound on every slice (all meshes or all tori) the all-to-all
    grows x7.8-8.0 and x3.9-4.0 (GShard x9 / x3.75, within 14 %), but the all-reduce then grows x1.9-2.0 at
    8 MB, against GShard §5.3 'AllReduce on TPU has an execution time independent from the number of devices'
    (shipped: x1.03). No one wraparound assignment fits both collectives' published growth."""
    found = probes(rows)
    a2a = [p for p in found if p.collective == "all_to_all"]
    assert all(abs(p.wraparound_everywhere / p.measured - 1) < 0.14 for p in a2a)
    ar8 = next(p for p in found if p.collective == "all_reduce" and p.size_bytes == 8 * 2**20)
    assert ar8.without_wraparound > 1.8 and ar8.wraparound_everywhere > 1.8
    assert abs(ar8.shipped - 1) < 0.10


def test_pod_all_to_all_matches_gshards_own_bandwidth_formula():
    """GShard §5.3 t = dh/l, evaluated with moesim's v3 link rate (1e11 B/s one way, SB tpus.md) on the full
    32x32 pod: d = 2048 partitions x S, h = 16 mean hops, l = 4096 directed links -> 0.671 ms (8 MiB) and
    2.684 ms (32 MiB). moesim (worst link + 32 hops x 1 us + 3.5 us overhead): 0.707 / 2.720 ms (+5.3 %, +1.3 %).
    On the 16-core 2x4 mesh moesim is 44-49 % above the formula (worst link 1.0 M_c/b against the mean 0.7)."""
    hw = load_hardware("tpu-v3")
    b = hw.interconnect[0].link_bw_bytes_per_s
    model = TopologyModel(hw)
    for size in (8 * 2**20, 32 * 2**20):
        formula = gshard_estimate(hw, 2048) * size / b
        got = model.cost("all_to_all", size, Group(size=2048, devices=2048)).time_s
        assert 0 < got / formula - 1 < 0.06
        small = model.cost("all_to_all", size, Group(size=16, devices=16)).time_s
        assert 0.40 < small / (gshard_estimate(hw, 16) * size / b) - 1 < 0.55


def test_the_all_to_all_gap_is_a_size_independent_factor(rows):
    """measured / shipped = 2.23 (8 MB) and 2.25 (32 MB) for Fig. 9, 1.87 at both sizes for Fig. 8: the same
    factor at 4x the bytes, i.e. a bandwidth effect, not a fixed or per-piece cost (docs/collectives.md)."""
    for name, lo, hi in (("gshard-fig9-all-to-all", 2.2, 2.3), ("gshard-fig8-dispatch-combine", 1.85, 1.9)):
        small, large = (r.measured / r.predicted for r in rows if r.name == name)
        assert lo < small < hi and lo < large < hi
        assert abs(large / small - 1) < 0.01


def test_axes_in_turn_and_gshards_own_estimate_stay_short_of_the_measured_growth(rows):
    """A per-dimension (axes one after another) all-to-all grows x5.3 / x2.0, and GShard's own t = dh/l
    (§5.3) on moesim's 2x4 mesh -> 32x32 torus x5.7 (8x8 mesh -> torus x2.7): both > 25 % short of x9 / x3.75,
    so neither explains the gap. GShard's estimate: 16 cores = 8 chips, mean hops 1.75 over 20 directed
    links; 2048 cores = 1024 chips, 16 hops over 4096 links: (2048·16/4096) / (16·1.75/20) = 8 / 1.4."""
    a2a = [p for p in probes(rows) if p.collective == "all_to_all"]
    assert all(p.axes_in_sequence / p.measured - 1 < -0.25 for p in a2a)
    assert all(p.gshard_estimate / p.measured - 1 < -0.25 for p in a2a)
    fig9 = next(p for p in a2a if p.name == "gshard-fig9-all-to-all")
    assert fig9.gshard_estimate == pytest.approx((2048 * 16 / 4096) / (16 * 1.75 / 20))


@pytest.mark.parametrize("profile", ["tpu-v2", "tpu-v3", "tpu-v4", "tpu-v5p"])
def test_small_torus_collective_floor_is_overhead_plus_hops(profile):
    """A 16-byte all-reduce on a 4-chip line is latency-bound: the runtime's 3.5 us (collective_overhead_us)
    plus 2 passes x the ring's hops x 1 us, plus a negligible transfer."""
    hw = load_hardware(profile)
    per_chip = hw.chip.devices_per_chip
    model = TopologyModel(hw)
    n = 4 * per_chip
    cost = model.cost("all_reduce", 16.0, Group(size=n, devices=n))
    assert hw.interconnect[0].collective_overhead_s == pytest.approx(3.5e-6)
    assert 3.5e-6 + 2e-6 < cost.time_s < 3.5e-6 + 2 * 3 * 1e-6 + 1e-6


def test_negative_collective_overhead_is_a_spec_error(tmp_path):
    text = (Path(__file__).resolve().parents[2] / "hardware_profiles" / "tpu-v4.toml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("collective_overhead_us = 3.5", "collective_overhead_us = -1.0"), encoding="utf-8")
    with pytest.raises(SpecError, match="collective_overhead"):
        load_hardware(str(bad))


def test_manifest_keys_are_strict(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text(MANIFEST.read_text(encoding="utf-8").replace('read_from = "text"', 'read_from = "text"\nrate = 1', 1),
                   encoding="utf-8")
    with pytest.raises(SpecError, match="rate"):
        compare(bad)


def test_docs_tpu_table_is_current(load_script):
    mod = load_script("docs/make_tpu_table.py")
    text = (DOCS / "collectives.md").read_text(encoding="utf-8")
    assert mod.updated(text) == text, "run python docs/make_tpu_table.py"
