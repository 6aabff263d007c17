"""Session 13 (heldout2): `calibrate --transfer protocol-hops / p2p-ops`, each writing a fitted figure only where its
definition says (docs/collectives-history.md "Session 13 (heldout2)"; moesim/calibrate/transfer.py protocol_hops,
moesim/calibrate/transfer_p2p.py), and session 13's matrix rule (scripts/heldout_rule.py verdict_session13)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from moesim.calibrate import calibrate
from moesim.calibrate.fit import fit_profile
from moesim.calibrate.nccl_table import HeldOutPair, matrix_fit_args, read_manifest
from moesim.calibrate.records import read_measurements
from moesim.calibrate.transfer import TRANSFER_RULES
from moesim.calibrate.transfer_p2p import AGREE_TOLERANCE, disagreeing_levels, op_count_groups
from moesim.errors import SpecError
from moesim.specs.load import load_hardware
from moesim.specs.system_facts import with_system_facts

from calibrate_synth import HELDOUT_MATRIX

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl"
US = 1e-6


ENTRIES = {e["file"]: e for e in read_manifest(DATA / "logs.toml")}


_FITS: dict = {}  # (log, hardware, rule, keywords) -> (result, written levels): each fit made once for the module


def _fit(tmp_path, log: str, hardware: str, rule: str, **kw):
    """calibrate on one manifest log as the held-out matrix fits it (its op, ranks, -g and stated facts); a fit two
    tests ask is made once (the qoofyk fits: ~10 s of CPU each; session 17, citime)."""
    key = (log, hardware, rule, tuple(sorted(kw.items())))
    if key not in _FITS:
        out = tmp_path / f"{rule}.toml"
        result = calibrate([str(DATA / log)], hardware, out, transfer_rule=rule, **matrix_fit_args(ENTRIES[log]), **kw)
        _FITS[key] = result, tomllib.loads(out.read_text())["interconnect"]
    return _FITS[key]


def _figures(raw: list[dict]) -> list[dict]:
    return [{k: v for k, v in lv.items() if k != "source"} for lv in raw]


def test_rules_are_added_not_renamed():
    assert TRANSFER_RULES[:5] == ("shared", "machinery", "lines", "identified", "lines-identified")
    assert {"protocol-hops", "p2p-ops"} <= set(TRANSFER_RULES)


@pytest.mark.parametrize("log", ["h100-hgx-2node-qoofyk_all_reduce_perf.log", "b200-vultr-1node_all_gather_perf.log"])
def test_protocol_hops_takes_each_hop_from_its_own_rows_else_shared(tmp_path, log):
    """Per level and protocol, the written hop is the per-protocol fit's where rows of that protocol set it (its
    design frees the figure) and the shared fit's written hop elsewhere; every other figure as shared writes it."""
    hardware = "h100-sxm" if log.startswith("h100") else "b200"
    result, raw = _fit(tmp_path, log, hardware, "protocol-hops")
    _, shared_raw = _fit(tmp_path, log, hardware, "shared")
    prior = with_system_facts(load_hardware(hardware), result.facts.inferred if result.facts else {})
    entry = ENTRIES[log]
    prior = with_system_facts(prior, {k: v for k, v in matrix_fit_args(entry)["system"].items()})
    measurements = read_measurements([str(DATA / log)], nccl_op=entry.get("op"), nccl_ranks=entry.get("ranks"))
    per_protocol = fit_profile(measurements, prior, fit_keys=set(), bootstrap=0, latency_per_protocol=True,
                               gpus_per_thread=entry.get("gpus_per_thread", 1))
    design = per_protocol.point[0]
    set_somewhere = unset_somewhere = False
    for j, (level, lv, sh) in enumerate(zip(prior.interconnect, raw, shared_raw)):
        shared_alpha = sh.get("latency_us", level.latency_s / US)
        simple = per_protocol.levels[j][1] / US if design.level_used[j, 0] else shared_alpha
        assert lv.get("latency_us", level.latency_s / US) == pytest.approx(simple, rel=1e-3)
        for q, (key, own) in enumerate((("ll_latency_us", level.ll_latency_s),
                                        ("ll128_latency_us", level.ll128_latency_s))):
            if design.protocol_latency_used[j, q]:
                want, set_somewhere = per_protocol.protocol_latencies[level.name][q] / US, True
            else:
                want, unset_somewhere = (own / US if own is not None else shared_alpha), True
            assert lv.get(key, lv.get("latency_us", level.latency_s / US)) == pytest.approx(want, rel=1e-3), (j, key)
        others = {k: v for k, v in lv.items() if k not in ("source", "latency_us", "ll_latency_us", "ll128_latency_us")}
        assert others == {k: v for k, v in sh.items()
                          if k not in ("source", "latency_us", "ll_latency_us", "ll128_latency_us")}
    assert set_somewhere and unset_somewhere  # both branches of the definition are exercised on these logs


def test_protocol_hops_mends_the_qoofyk_pair(tmp_path):
    """qoofyk 2 nodes: its tree/LL rows set the network LL hop (14 -> ~7 us) and its NVLSTree/Simple rows the Simple
    hop near the prior, so the Simple hop the other log's 2-8 MiB NVLSTree rows pay stays near 14 us (shared: 9.4)."""
    _, raw = _fit(tmp_path, "h100-hgx-2node-qoofyk_all_reduce_perf.log", "h100-sxm", "protocol-hops")
    _, shared = _fit(tmp_path, "h100-hgx-2node-qoofyk_all_reduce_perf.log", "h100-sxm", "shared")
    assert shared[1]["latency_us"] < 10.0
    assert raw[1]["latency_us"] > 12.5 and raw[1]["ll_latency_us"] < 8.5


def test_protocol_hops_needs_the_shared_hop_rule(tmp_path):
    with pytest.raises(SpecError, match="--hop-latency shared"):
        _fit(tmp_path, "h100-hgx-2node-qoofyk_all_reduce_perf.log", "h100-sxm", "protocol-hops",
             latency_per_protocol=True)


def test_p2p_ops_keeps_the_prior_latency_where_op_counts_disagree(tmp_path):
    """Together 2 nodes: its one-op rows (<= 64 KiB) ask π 14 -> ~20 us, its four-op rows (>= 1 MiB) refuse it:
    p2p-ops writes π at the prior, the send/recv line as shared writes it."""
    result, raw = _fit(tmp_path, "b200-together-2node_sendrecv_perf.log", "b200", "p2p-ops")
    _, shared = _fit(tmp_path, "b200-together-2node_sendrecv_perf.log", "b200", "shared")
    groups = op_count_groups(result.fit)
    assert {1, 4} <= set(groups)
    refused = disagreeing_levels(result.fit)
    assert [k for k, _, _ in refused["infiniband"]] == [4]
    assert all(a > b + AGREE_TOLERANCE for _, a, b in refused["infiniband"])
    prior = load_hardware("b200").interconnect[1]
    assert shared[1]["p2p_latency_us"] > 18.0
    assert raw[1].get("p2p_latency_us", prior.latency_s / US) == pytest.approx(
        (prior.p2p_latency_s or prior.latency_s) / US)
    assert raw[1]["p2p_factor"] == shared[1]["p2p_factor"]
    assert "refused by the rows of 4 ops" in result.transfer_notes[0]


def test_p2p_ops_is_shared_where_one_op_count(tmp_path):
    """xxrjun 2 nodes all-to-all: every network row posts the same op count, so nothing to disagree: as shared."""
    result, raw = _fit(tmp_path, "h100-xxrjun-2node_alltoall_perf.log", "h100-sxm", "p2p-ops")
    _, shared = _fit(tmp_path, "h100-xxrjun-2node_alltoall_perf.log", "h100-sxm", "shared")
    assert len(op_count_groups(result.fit)) == 1
    assert _figures(raw) == _figures(shared) and not result.transfer_notes


def _pair(cluster, a, b, prior, cal, prior_small=None, cal_small=None):
    return HeldOutPair(cluster, a, b, 1.0, prior, cal, float("nan"), prior_small, cal_small)


def test_session13_rule_checks(load_script):
    rule = load_script("scripts/heldout_rule.py")
    base = [_pair("x", "a", "b", 0.10, 0.09, 0.2, 0.1), _pair("y", "c", "d", 0.10, 0.12)]
    ok, _ = rule.verdict_session13(base, [_pair("x", "a", "b", 0.10, 0.09, 0.2, 0.1),
                                          _pair("y", "c", "d", 0.10, 0.10)], "cand")
    assert ok  # cluster y's mean 0.00, no worse pair added, sums fall
    ok, lines = rule.verdict_session13(base, base, "same")
    assert not ok and any("positive: y" in line for line in lines)  # (i): y's mean +2 pt
    worse_small = [_pair("x", "a", "b", 0.10, 0.09, 0.2, 0.2 + 0.004), _pair("y", "c", "d", 0.10, 0.10)]
    ok, lines = rule.verdict_session13(base, worse_small, "cand")
    assert not ok and any("(ii)" in line and "fails" in line for line in lines)
    slack = [_pair("x", "a", "b", 0.10, 0.09, 0.2, 0.1 + 0.0009), _pair("y", "c", "d", 0.10, 0.10)]
    assert rule.verdict_session13(base, slack, "cand")[0]  # +0.09 pt below 1 MiB: within (iii)'s 0.1 pt
    over = [_pair("x", "a", "b", 0.10, 0.09, 0.2, 0.1 + 0.0011), _pair("y", "c", "d", 0.10, 0.10)]
    assert not rule.verdict_session13(base, over, "cand")[0]
    assert np.isclose(rule.SUM_SLACK, 0.001)


def test_the_causes_table_says_what_nccl_runs(load_script):
    """scripts/heldout_causes.py on Together's 2-node sendrecv rows: one op (1 part, 1 network peer) at 1 KiB, four at
    1 MiB (NCCL splits a peer's bytes into 4 parts: nccl.p2p_channels); a qoofyk all-reduce row names its channels."""
    causes = load_script("scripts/heldout_causes.py")
    from moesim.collectives.select import default_model
    model = default_model(load_hardware("b200"))
    assert causes.nccl_runs(model, "send_recv", 1024, 16) == "direct/Simple net parts 1, 1 net peer, 1 op"
    assert causes.nccl_runs(model, "send_recv", 2**20, 16) == "direct/Simple net parts 4, 1 net peer, 4 ops"
    assert causes.nccl_runs(default_model(load_hardware("h100-sxm")), "all_reduce", 8, 16).startswith("tree/LL net ch ")


@HELDOUT_MATRIX
def test_the_causes_block_is_current(load_script):
    """docs/collectives-history.md "Session 13 (heldout2)": the table is what scripts/heldout_causes.py renders now (it
    reuses the matrix test_calibration_matrix.py prices, lru-cached in one pytest process)."""
    causes = load_script("scripts/heldout_causes.py")
    doc = causes.DOC.read_text(encoding="utf-8")
    block = doc.split(causes.BEGIN, 1)[1].split(causes.END, 1)[0].strip("\n")
    assert block == causes.render(None), "stale: run python scripts/heldout_causes.py --write"
