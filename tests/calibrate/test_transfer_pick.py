"""Session 14 (pick): a calibrated model ranks each call's (algorithm, protocol) on the prior's figures, as NCCL's
tuner ranks on its own constants and detected links (src/graph/tuning.cc ncclTopoTuneModel, NVIDIA/nccl v2.28.9-1),
and prices the pick with the fitted figures (HardwareProfile.pick_interconnect, moesim/collectives/nccl_pick.py,
`calibrate --transfer pick-as-nccl / pick-protocol-hops`; docs/collectives-history.md "Session 14 (pick)")."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from moesim.calibrate import calibrate
from moesim.calibrate.nccl_table import matrix_fit_args, read_manifest
from moesim.calibrate.records import read_measurements
from moesim.calibrate.transfer import PICK_RULES, TRANSFER_RULES
from moesim.collectives.base import Group
from moesim.collectives.select import default_model
from moesim.errors import SpecError
from moesim.specs.load import load_hardware
from moesim.specs.system_facts import with_system_facts

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl"
ENTRIES = {e["file"]: e for e in read_manifest(DATA / "logs.toml")}
SIZES = [2.0 ** k for k in range(3, 35)]
US = 1e-6


def _fitted_hops(hw, simple_us: float, ll_us: float):
    """`hw` with its NVLink level's Simple and LL hops set to fitted figures NCCL's tuner never sees."""
    first = replace(hw.interconnect[0], latency_s=simple_us * US, ll_latency_s=ll_us * US)
    return replace(hw, interconnect=(first,) + hw.interconnect[1:])


def test_rules_are_added_not_renamed():
    assert TRANSFER_RULES[:7] == ("shared", "machinery", "lines", "identified", "lines-identified", "protocol-hops",
                                  "p2p-ops")
    assert set(PICK_RULES) <= set(TRANSFER_RULES)


def test_a_fitted_hop_that_would_move_the_pick_keeps_nccls_pick():
    """Constructed: B200, 8 GPUs, all_gather, the NVLink hops session 13's protocol-hops fit on the Vultr 1-node
    all_gather wrote (Simple 1.72 us, LL 4.33 us; prior 3.4 us). The Simple hop scales NCCL's own hop table in the
    model's ranking (nccl._hop_tables), so the model that ranks by it moves ring/LL -> NVLS at 2-4 MiB; with the prior's
    levels as pick_interconnect the calibrated model keeps the prior's pick at every size, priced with the fitted hops."""
    prior = with_system_facts(load_hardware("b200"), {"host_cpu": "amd"})
    fitted = _fitted_hops(prior, 1.72, 4.33)
    kept = replace(fitted, pick_interconnect=prior.interconnect)
    group = Group(8)
    m_prior, m_fitted, m_kept = default_model(prior), default_model(fitted), default_model(kept)
    moved = 0
    for size in SIZES:
        want = m_prior.cost("all_gather", size, group).algorithm
        own = m_fitted.cost("all_gather", size, group)
        got = m_kept.cost("all_gather", size, group)
        moved += own.algorithm != want
        assert got.algorithm == want, size
        # priced with the fitted figures: the fitted model's own candidate of that label
        same = next(c for c in m_fitted.candidates("all_gather", size, group) if c.label == want)
        assert got.time_s == pytest.approx(same.time_s, rel=1e-12), size
    assert moved >= 2  # the case is real: ranked by the fitted hops, the pick moves (2 and 4 MiB)


@pytest.mark.parametrize("hardware", ["b200", "h100-sxm", "gb200-nvl72"])
@pytest.mark.parametrize("op", ["all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all"])
def test_a_prior_ranked_on_its_own_levels_prices_bit_for_bit_as_before(hardware, op):
    """Priors pick as before by construction: pick_interconnect = interconnect changes no price or label."""
    try:
        hw = load_hardware(hardware)
    except SpecError:
        pytest.skip(f"{hardware}: not a shipped profile")
    plain, ranked = default_model(hw), default_model(replace(hw, pick_interconnect=hw.interconnect))
    for n in (8, 16, 64):
        if n > hw.max_devices:
            continue
        for size in SIZES[::3]:
            a, b = plain.cost(op, size, Group(n)), ranked.cost(op, size, Group(n))
            assert (a.algorithm, a.time_s) == (b.algorithm, b.time_s), (n, size)


def test_pick_levels_must_match_the_interconnect():
    hw = load_hardware("b200")
    with pytest.raises(SpecError, match="pick_interconnect"):
        replace(hw, pick_interconnect=hw.interconnect[:1])


def test_system_facts_reach_the_pick_levels():
    hw = load_hardware("b200")
    ranked = with_system_facts(replace(hw, pick_interconnect=hw.interconnect), {"host_cpu": "amd"})
    nets = [lv for lv in ranked.pick_interconnect if lv.host_cpu]
    assert nets and all(lv.host_cpu == "amd" for lv in nets)


@pytest.mark.parametrize("rule", PICK_RULES)
def test_calibrate_writes_the_priors_levels_and_every_row_is_priced_on_the_priors_pick(tmp_path, rule):
    """The written profile carries the prior's levels (with the log's facts) as [[pick_interconnect]], and the fitted
    log's rows are priced on the prior's (algorithm, protocol): the fit and the written profile see NCCL's pick."""
    log = "b200-vultr-1node_all_gather_perf.log"
    entry = ENTRIES[log]
    out = tmp_path / "cal.toml"
    result = calibrate([str(DATA / log)], "b200", out, transfer_rule=rule, **matrix_fit_args(entry))
    raw = tomllib.loads(out.read_text())
    assert len(raw["pick_interconnect"]) == len(raw["interconnect"])
    facts = dict(matrix_fit_args(entry)["system"], **(result.facts.inferred if result.facts else {}))
    prior = with_system_facts(load_hardware("b200"), facts)
    assert result.profile.pick_interconnect == prior.interconnect
    measured = read_measurements([str(DATA / log)], nccl_op=entry.get("op"), nccl_ranks=entry.get("ranks"))
    m_prior, m_cal = default_model(prior), default_model(result.profile)
    m_free = default_model(replace(result.profile, pick_interconnect=()))
    free_moved = 0
    for point in measured.collectives:
        group = Group(point.group_size)
        want = m_prior.cost(point.op, point.size_bytes, group).algorithm
        assert m_cal.cost(point.op, point.size_bytes, group).algorithm == want, point.size_bytes
        free_moved += m_free.cost(point.op, point.size_bytes, group).algorithm != want
    if rule == "pick-protocol-hops":  # session 13: ranked by the fitted LL hop, NVLS won the 2-4 MiB rows
        assert free_moved > 0


def test_the_pick_trace_block_is_current_and_the_pick_rules_move_no_pick(load_script):
    """docs/collectives-history.md "Session 14 (pick)": the table is what scripts/pick_trace.py renders now; some
    fitted figure moves the model's own pick, none moves it with the prior's levels as pick_interconnect."""
    trace = load_script("scripts/pick_trace.py")
    rows = trace.rows()
    assert all(row[3] == "0" for row in rows)
    assert sum(int(row[2]) > 0 for row in rows) >= 5  # hops, lines, NVLS, fill move the model's own pick
    doc = trace.DOC.read_text(encoding="utf-8")
    block = doc.split(trace.BEGIN, 1)[1].split(trace.END, 1)[0].strip("\n")
    assert block == trace.render(), "stale: run python scripts/pick_trace.py --write"
