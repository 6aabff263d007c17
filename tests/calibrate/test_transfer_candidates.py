"""Session 12 (heldout): `calibrate --transfer lines / identified / lines-identified`, each carrying a fitted figure
only where its definition says (docs/collectives-history.md "Session 12 (heldout)"; moesim/calibrate/transfer.py)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from moesim.calibrate import calibrate
from moesim.calibrate.transfer import IDENTIFIED_SE, TRANSFER_RULES, unidentified
from moesim.specs.load import load_hardware

from calibrate_synth import HELDOUT_MATRIX

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl"


_FITS: dict = {}  # (log, hardware, rule, keywords) -> (result, written levels): each fit made once for the module


def _fit(tmp_path, log: str, hardware: str, rule: str, **kw):
    """A fit two tests ask is made once (the xxrjun `lines` and qoofyk `identified` fits; session 17, citime)."""
    key = (log, hardware, rule, tuple(sorted(kw.items())))
    if key not in _FITS:
        out = tmp_path / f"{rule}.toml"
        result = calibrate([str(DATA / log)], hardware, out, bootstrap=0, holdout_fraction=0.0, transfer_rule=rule, **kw)
        _FITS[key] = result, tomllib.loads(out.read_text())["interconnect"]
    return _FITS[key]


def _figures(raw: list[dict]) -> list[dict]:
    """The pricing keys of each level (the `source` text aside: it names the rule)."""
    return [{k: v for k, v in lv.items() if k != "source"} for lv in raw]


def test_rules_are_added_not_renamed():
    assert TRANSFER_RULES[:2] == ("shared", "machinery")
    assert {"lines", "identified", "lines-identified"} <= set(TRANSFER_RULES)


def test_lines_splits_the_send_recv_line_and_shares_the_hop(tmp_path):
    """xxrjun 2 nodes, all-to-all rows set the network P: `lines` writes it to alltoall_p2p_factor and keeps the
    one-peer line (p2p_factor) at the prior, as machinery does. Voltage Park 4-node all-reduce, tree rows set the
    network hop: `lines` writes it as shared (latency_us, no nonring_latency_us), where machinery kept ring at the
    prior."""
    prior = load_hardware("h100-sxm").interconnect[1]
    result, raw = _fit(tmp_path, "h100-xxrjun-2node_alltoall_perf.log", "h100-sxm", "lines")
    assert raw[1]["alltoall_p2p_factor"] > 1.02 and raw[1]["p2p_factor"] == pytest.approx(prior.p2p_factor or 1.0)
    assert "all-to-all only" in result.transfer_notes[0]
    _, machinery = _fit(tmp_path, "h100-xxrjun-2node_alltoall_perf.log", "h100-sxm", "machinery")
    assert _figures(raw) == _figures(machinery)  # no hop moved on this log: lines and machinery write the same
    _, shared = _fit(tmp_path, "h100-voltagepark-4node_all_reduce_perf.log", "h100-sxm", "shared")
    result, raw = _fit(tmp_path, "h100-voltagepark-4node_all_reduce_perf.log", "h100-sxm", "lines")
    assert raw[1]["latency_us"] < 12.0 and "nonring_latency_us" not in raw[1]
    assert _figures(raw) == _figures(shared) and not result.transfer_notes  # no line set here: exactly shared


def _value(profile, name: str) -> float:
    """A figure of a written profile by its fit name (the ones these logs move)."""
    level, figure = name.split(".", 1)
    lv = next(x for x in profile.interconnect if x.name == level)
    usable = lv.link_bw_bytes_per_s * max(p[1] for p in lv.bw_efficiency.points)
    return {"latency": lambda: lv.latency_s, "bandwidth": lambda: usable,
            "nvlstree_bandwidth": lambda: usable * (lv.nvlstree_net_factor or 1.0),
            "p2p_bandwidth": lambda: usable * (lv.p2p_factor or 1.0),
            "nvls_bandwidth": lambda: usable * lv.nvls_efficiency}[figure]()


@pytest.mark.parametrize("log", ["h100-vm-4node-qoofyk_all_reduce_perf.log",
                                 "h100-voltagepark-4node_all_reduce_perf.log"])
def test_identified_writes_at_the_prior_only_what_moved_within_two_standard_errors(tmp_path, log):
    """qoofyk 4 nodes: U +6.9 % at 1.9 standard errors (not identified: the prior's line written), the network hop
    -28.5 % at 3.4 (identified: written as shared). Voltage Park: U within 0.01 standard errors, the hop at 3.5."""
    shared, _ = _fit(tmp_path, log, "h100-sxm", "shared")
    result, _ = _fit(tmp_path, log, "h100-sxm", "identified")
    prior = load_hardware("h100-sxm")
    kept = {p.name for p in unidentified(result.fit)}
    assert kept and "infiniband.nvlstree_bandwidth" in kept and "infiniband.latency" not in kept
    for p in result.fit.parameters:
        if not p.fitted or p.name not in ("infiniband.latency", "infiniband.nvlstree_bandwidth"):
            continue
        moved = abs(np.log(p.value / p.prior))
        assert (p.name in kept) == (moved <= IDENTIFIED_SE * p.rel_std)
        want = _value(prior, p.name) if p.name in kept else _value(shared.profile, p.name)
        assert _value(result.profile, p.name) == pytest.approx(want, rel=1e-4), p.name
    assert any("prior kept" in note for note in result.transfer_notes)


def test_lines_identified_is_both(tmp_path, capsys):
    """On the xxrjun all-to-all every moved figure is identified (P +4.5 %), so lines-identified writes what lines
    does; on qoofyk (no send/recv rows) it writes what identified does. JSON names the rule, the default's does not."""
    from moesim.cli import main

    log = "h100-xxrjun-2node_alltoall_perf.log"
    both, raw = _fit(tmp_path, log, "h100-sxm", "lines-identified")
    _, lines = _fit(tmp_path, log, "h100-sxm", "lines")
    assert not unidentified(both.fit) and _figures(raw) == _figures(lines)
    _, raw = _fit(tmp_path, "h100-vm-4node-qoofyk_all_reduce_perf.log", "h100-sxm", "lines-identified")
    _, ident = _fit(tmp_path, "h100-vm-4node-qoofyk_all_reduce_perf.log", "h100-sxm", "identified")
    assert _figures(raw) == _figures(ident)
    assert main(["calibrate", str(DATA / log), "--hardware", "h100-sxm", "-o", str(tmp_path / "j.toml"),
                 "--bootstrap", "0", "--json", "--transfer", "lines-identified"]) == 0
    assert json.loads(capsys.readouterr().out)["fit"]["transfer_rule"] == "lines-identified"


def test_bad_transfer_is_one_line(tmp_path, capsys):
    from moesim.cli import main

    code = main(["calibrate", str(DATA / "h100-xxrjun-2node_alltoall_perf.log"), "--hardware", "h100-sxm", "-o",
                 str(tmp_path / "x.toml"), "--transfer", "everything"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--transfer" in err and "lines-identified" in err


def test_lines_takes_both_cross_line_pairs_to_the_prior(tmp_path):
    """The held-out pairs of the xxrjun 2-node alltoall and sendrecv (shared: each worse by > 1 pt, KNOWN_WORSE):
    under `lines` each fitted line goes to its own key and the other log prices exactly as under the prior."""
    from moesim.calibrate.nccl_table import calibration_matrix

    manifest = tmp_path / "logs.toml"
    entries = "".join(f'[[log]]\nfile = "{DATA / f"h100-xxrjun-2node_{op}_perf.log"}"\nhardware = "h100-sxm"\n'
                      f'cluster = "x"\nhealthy = true\nshape = false\nnote = ""\n\n' for op in ("alltoall", "sendrecv"))
    manifest.write_text("schema_version = 1\n\n" + entries)
    pairs = calibration_matrix(manifest, transfer_rule="lines", fixed_weight=False)
    assert len(pairs) == 2
    for p in pairs:
        assert p.calibrated_mape == pytest.approx(p.prior_mape, abs=1e-9)


def _pair(cluster, name, prior, cal, prior_small=None, cal_small=None):
    from moesim.calibrate.nccl_table import HeldOutPair

    return HeldOutPair(cluster, f"{name}_a", f"{name}_b", 1.0, prior, cal, float("nan"), prior_small, cal_small)


def test_the_rule_reads_every_check_strictly(load_script):
    """scripts/heldout_rule.verdict: (i) worse falls >= 1 MiB and does not rise below, (ii) better does not fall,
    (iii) no band's sum rises (by any amount), (iv) no cluster's mean turns positive."""
    rule = load_script("scripts/heldout_rule.py")
    base = [_pair("c", "w", 0.10, 0.12, 0.20, 0.21), _pair("c", "b", 0.10, 0.05), _pair("d", "x", 0.10, 0.101)]
    good = [_pair("c", "w", 0.10, 0.10, 0.20, 0.21), _pair("c", "b", 0.10, 0.05), _pair("d", "x", 0.10, 0.101)]
    assert rule.verdict(base, good, "good")[0]
    tiny = [_pair("c", "w", 0.10, 0.10, 0.20, 0.21 + 1e-9), _pair("c", "b", 0.10, 0.05), _pair("d", "x", 0.10, 0.101)]
    ok, lines = rule.verdict(base, tiny, "tiny")
    assert not ok and any("(iii)" in line and "fails" in line for line in lines)
    fewer = [_pair("c", "w", 0.10, 0.10, 0.20, 0.21), _pair("c", "b", 0.10, 0.099), _pair("d", "x", 0.10, 0.101)]
    assert any("(ii)" in line and "fails" in line for line in rule.verdict(base, fewer, "fewer")[1])
    assert rule.cluster_means(base)["d"] > 0  # already positive: (iv) asks only that none *becomes* positive
    was = [_pair("c", "w", 0.10, 0.10, 0.20, 0.21), _pair("c", "b", 0.10, 0.05), _pair("d", "x", 0.10, 0.098)]
    now = was[:2] + [_pair("d", "x", 0.10, 0.1001)]  # d's mean change -0.2 -> +0.01 pt
    ok, lines = rule.verdict(was, now, "turned")
    assert not ok and any("(iv)" in line and "fails" in line and "turned: d" in line for line in lines)


def test_the_diagnosis_names_the_figure_the_rows_and_the_machinery(load_script):
    """scripts/heldout_pairs.py on the xxrjun 2-node pair: the all-to-all's fit moves the network send/recv line,
    set by its pairwise all-to-all rows; the sendrecv's 4-16 GiB rows (one peer, direct) lose: different machinery."""
    diag = load_script("scripts/heldout_pairs.py")
    entries = {e["file"]: e for e in diag.read_manifest(diag.MANIFEST)}
    fit_on, held = entries["h100-xxrjun-2node_alltoall_perf.log"], entries["h100-xxrjun-2node_sendrecv_perf.log"]
    assert fit_on["hardware"] == "h100-sxm"
    result = diag.matrix_fit(diag.MANIFEST, fit_on["file"])  # the matrix's fit, as the script's diagnosis reads it
    figures = diag.fit_figures(result)
    assert [(name, kinds) for name, _, kinds in figures] == [("infiniband.p2p_bandwidth", {"A2A pairwise/Simple net"})]
    rows = diag.losing_rows(held, load_hardware("h100-sxm"), result.profile, 0)
    assert rows and all(r[2] == "SR direct/Simple net" and abs(r[4]) > abs(r[3]) for r in rows)
    assert diag._same(rows, figures) == "different"
    assert diag._same(rows, [("x", 0.1, {"A2A direct/Simple net"})]) == "same"  # the collective aside


@HELDOUT_MATRIX
def test_the_diagnosis_block_is_current(load_script):
    """docs/collectives-history.md "Session 12 (heldout)": the worse pairs' table is what scripts/heldout_pairs.py
    renders now (it reuses the matrix test_calibration_matrix.py prices, lru-cached in one pytest process)."""
    diag = load_script("scripts/heldout_pairs.py")
    doc = diag.DOC.read_text(encoding="utf-8")
    block = doc.split(diag.BEGIN, 1)[1].split(diag.END, 1)[0].strip("\n")
    assert block == diag.render(None), "stale: run python scripts/heldout_pairs.py --write"
