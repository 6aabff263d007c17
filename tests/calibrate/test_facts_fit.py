"""Inferring a log's unstated system facts (moesim/calibrate/facts_fit.py): NCCL's classes, recovery from logs the
model made under a known class (both ways), the logs left alone, stated facts winning, and what calibrate writes."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from moesim.calibrate import calibrate
from moesim.calibrate.api import INFER_FACTS
from moesim.calibrate.bench_cost import benchmark_cost
from moesim.calibrate.facts_fit import EVIDENCE_THRESHOLD, fact_classes, infer_system_facts
from moesim.calibrate.nccl_tests import read_nccl_tests
from moesim.calibrate.records import CollectivePoint, Measurements
from moesim.collectives.base import Group
from moesim.collectives.select import default_model
from moesim.specs.hardware import EfficiencyTable
from moesim.specs.load import load_hardware
from moesim.specs.system_facts import with_system_facts

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl"
AMD = {"host_cpu": "amd"}


def truth(path: str = ""):
    """B200, two nodes of 8 over AMD hosts, with network figures away from the prior's (and the given path)."""
    prior = with_system_facts(load_hardware("b200"), AMD)
    nv, ib = prior.interconnect
    ib = dataclasses.replace(ib, latency_s=1.3 * ib.latency_s, bw_efficiency=EfficiencyTable.constant(0.8))
    return with_system_facts(dataclasses.replace(prior, interconnect=(nv, ib)), {"gpu_nic_path": path} if path else {})


def synthetic_rows(hardware, op: str = "all_gather", seed: int = 0, noise: float = 0.03):
    """Two rows per size (in and out of place), 1 KiB - 4 GiB over 16 ranks, priced by the model of `hardware`, with
    independent log-normal noise of `noise` (seeded)."""
    model, group = default_model(hardware), Group(size=16, devices=16)
    rng = np.random.default_rng(seed)
    return tuple(CollectivePoint(op=op, size_bytes=2.0**e, group_size=16, source=f"synthetic:{e}:{k}",
                                 time_s=benchmark_cost(model, op, 2.0**e, group)[0] * rng.lognormal(0.0, noise),
                                 nccl_tests=True)
                 for e in range(10, 33) for k in range(2))


def test_classes_are_what_nccls_rules_tell_apart():
    b200, a100 = load_hardware("b200"), load_hardware("a100-80gb")
    assert fact_classes(b200, "gpu_nic_path") == [("", "PIX", "PXB", "P2C", "PXN"), ("PHB", "NODE", "SYS")]
    # before Hopper LL128 stops after PXB, while GPUDirect RDMA still reaches P2C and PXN
    assert fact_classes(a100, "gpu_nic_path") == [("", "PIX", "PXB"), ("P2C", "PXN"), ("PHB", "NODE", "SYS")]
    assert fact_classes(b200, "host_cpu") == [("", "intel", "arm"), ("amd",), ("mixed",)]


@pytest.mark.parametrize("path", ["PHB", ""])
def test_a_class_is_recovered_from_rows_the_model_made_under_it(path):
    """Both ways: rows made through the CPU (no LL128 across nodes, no GPUDirect RDMA) pick that class with strong
    evidence; rows made with NCCL's default path keep the default."""
    prior = with_system_facts(load_hardware("b200"), AMD)
    got = infer_system_facts(Measurements(collectives=synthetic_rows(truth(path))), prior, AMD)
    assert got.stated == AMD and len(got.candidates) == 2
    default, through_cpu = got.candidates
    assert through_cpu.members == {"gpu_nic_path": ("PHB", "NODE", "SYS")} and default.evidence_ratio == 1.0
    if path:
        assert got.inferred == {"gpu_nic_path": "PHB"} and got.chosen == 1
        assert through_cpu.evidence_ratio > EVIDENCE_THRESHOLD and through_cpu.loss < default.loss
        assert through_cpu.mape_ge_1mib < 0.05 < default.mape_ge_1mib
    else:
        assert got.inferred == {} and got.chosen == 0
        assert through_cpu.evidence_ratio < 1.0 and default.mape_ge_1mib < 0.05


def test_the_host_cpu_is_recovered_where_its_rules_bind():
    """AMD hosts' 2 us network post overhead and their LL row: an all-reduce over 2 Hopper nodes made on AMD hosts
    picks {amd} among the CPU classes (the path stated, so the CPU alone is open)."""
    prior = load_hardware("h100-sxm")
    nv, ib = prior.interconnect
    made = with_system_facts(dataclasses.replace(prior, interconnect=(
        nv, dataclasses.replace(ib, latency_s=0.8 * ib.latency_s))), {"host_cpu": "amd", "gpu_nic_path": "PXB"})
    rows = synthetic_rows(made, op="all_reduce", seed=1, noise=0.02)
    got = infer_system_facts(Measurements(collectives=rows), prior, {"gpu_nic_path": "PXB"})
    assert got.inferred == {"host_cpu": "amd"}, [(c.members, c.evidence_ratio) for c in got.candidates]
    assert [c.members["host_cpu"] for c in got.candidates][:1] == [("", "intel", "arm")]


def test_stated_facts_win_and_are_not_candidates():
    rows = Measurements(collectives=synthetic_rows(truth("PHB")))
    prior = with_system_facts(load_hardware("b200"), AMD)
    stated = infer_system_facts(rows, prior, {**AMD, "gpu_nic_path": "PXB"})
    assert stated.candidates == () and stated.inferred == {} and "stated" in stated.note
    # a fact the prior profile states counts as stated too
    in_profile = infer_system_facts(rows, with_system_facts(prior, {"gpu_nic_path": "PXN"}), AMD)
    assert in_profile.stated == {**AMD, "gpu_nic_path": "PXN"} and in_profile.candidates == ()


def test_a_one_node_log_is_left_alone(tmp_path):
    result = calibrate([str(DATA / "b200-vultr-1node_all_gather_perf.log")], "b200", tmp_path / "c.toml",
                       bootstrap=0, holdout_fraction=0.0, nccl_ranks=8, system=AMD)
    assert result.facts is not None and result.facts.candidates == () and result.facts.inferred == {}
    assert "no row spans more than one nvlink domain" in result.facts.note
    assert "gpu_nic_path" not in tomllib.loads((tmp_path / "c.toml").read_text())["interconnect"][1]


def test_rows_no_class_prices_apart_are_left_alone(tmp_path):
    """H200 two nodes with the path stated: NVLSTree runs every size, which the host CPU's rules (the ring's network
    post overhead, the LL cap) do not move. (The path does, since NCCL's GDR-less legs are priced on NVLSTree too.)"""
    log = str(DATA / "h200-oci-2node_all_reduce_perf.log")
    how = dict(bootstrap=0, holdout_fraction=0.0)
    result = calibrate([log], "h200", tmp_path / "c.toml", system={"gpu_nic_path": "PXB"}, **how)
    assert result.facts.candidates == () and "prices every row alike" in result.facts.note
    assert len(calibrate([log], "h200", tmp_path / "d.toml", system={"host_cpu": "intel"}, **how).facts.candidates) == 2


def _write_log(path: Path, rows: tuple[CollectivePoint, ...], op: str = "all_gather") -> None:
    """An nccl-tests all_gather_perf (or all_reduce_perf) output of `rows` (pairs of out-of-place / in-place times per
    size, 16 ranks)."""
    factor, redop = {"all_gather": (15 / 16, "none"), "all_reduce": (2 * 15 / 16, "sum")}[op]
    lines = [f"# Collective test starting: {op}_perf",
             "#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw"
             "   busbw  #wrong",
             "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)             (us)  (GB/s)"
             "  (GB/s)"]
    for out, inp in zip(rows[::2], rows[1::2]):
        size = int(out.size_bytes)
        cols = [f"{size:12d}", f"{size // 4:13d}", "    float", f"{redop:>8s}", "     -1"]
        for p in (out, inp):
            algbw = size / p.time_s / 1e9
            cols += [f"{p.time_s * 1e6:8.2f}", f"{algbw:7.2f}", f"{algbw * factor:7.2f}", "      0"]
        lines.append(" ".join(cols))
    path.write_text("\n".join(lines) + "\n")


def test_calibrate_writes_the_inferred_fact_marked_as_such(tmp_path, capsys):
    """End to end on a log file the model made through the CPU: the profile gets gpu_nic_path PHB, its provenance
    says inferred (and host_cpu stated), the JSON lists both classes, and --no-infer-facts writes the default."""
    from moesim.cli import main

    log = tmp_path / "all_gather_perf.log"
    _write_log(log, synthetic_rows(truth("PHB")))
    assert {p.group_size for p in read_nccl_tests(log, ranks=16).collectives} == {16}
    base = ["calibrate", str(log), "--hardware", "b200", "--ranks", "16", "--host-cpu", "amd", "--bootstrap", "0",
            "-q", "--json"]
    assert main(base + ["-o", str(tmp_path / "on.toml")]) == 0
    out = json.loads(capsys.readouterr().out)["fit"]["system_facts"]
    assert [(f["fact"], f["value"], f["source"]) for f in out["facts"]] == [("host_cpu", "amd", "stated"),
                                                                           ("gpu_nic_path", "PHB", "inferred")]
    assert [c["class"]["gpu_nic_path"] for c in out["candidates"]] == [["", "PIX", "PXB", "P2C", "PXN"],
                                                                       ["PHB", "NODE", "SYS"]]
    assert [c["chosen"] for c in out["candidates"]] == [False, True]
    written = tomllib.loads((tmp_path / "on.toml").read_text())
    assert written["interconnect"][1]["gpu_nic_path"] == "PHB" and written["interconnect"][1]["host_cpu"] == "amd"
    assert "gpu_nic_path=PHB (inferred" in written["calibrated_from"]
    assert "host_cpu=amd (stated)" in written["calibrated_from"]
    assert main(base + ["-o", str(tmp_path / "off.toml"), "--no-infer-facts"]) == 0
    assert json.loads(capsys.readouterr().out)["fit"]["system_facts"] is None
    assert "gpu_nic_path" not in tomllib.loads((tmp_path / "off.toml").read_text())["interconnect"][1]


def test_keeping_the_default_fits_as_without_inference(tmp_path):
    """Where the default is kept the written figures are those of a calibration without inference, bit for bit."""
    how = dict(bootstrap=0, holdout_fraction=0.0, nccl_ranks=16, system=AMD)
    log = str(DATA / "b200-vultr-2node_all_gather_perf.log")
    on = calibrate([log], "b200", tmp_path / "on.toml", infer_facts=True, **how)
    off = calibrate([log], "b200", tmp_path / "off.toml", infer_facts=False, **how)
    assert on.facts.inferred == {} and len(on.facts.candidates) == 2 and off.facts is None
    assert [(p.name, p.value) for p in on.fit.parameters] == [(p.name, p.value) for p in off.fit.parameters]
    def levels(result):  # the `source` line holds the time of writing
        return [dataclasses.replace(level, source="") for level in result.profile.interconnect]

    assert levels(on) == levels(off)


def test_help_states_the_option_and_its_default(capsys):
    from moesim.cli import main

    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--infer-facts, --no-infer-facts" in text
    assert f"default: {'on' if INFER_FACTS else 'off'})" in text


# calorder (session 9): facts first, under the shared hop rule, then the requested rule with the chosen class fixed
RULES = (("per-protocol", True), ("hierarchical", "hierarchical"))


def _final_mapes(fit) -> tuple[float, float]:
    """In-sample busbw MAPE of a calibration's own fit at >= 1 MiB and below (facts_fit's Candidate figures)."""
    from moesim.calibrate.facts_fit import _mapes

    return _mapes(fit, {o.unit for o in fit.observations})


@pytest.mark.parametrize("rule,mode", RULES)
@pytest.mark.parametrize("path", ["PHB", ""])
def test_facts_are_recovered_under_the_per_protocol_hop_rules(tmp_path, path, rule, mode):
    """The recovery test above through calibrate under --hop-latency per-protocol / hierarchical: the classes are
    compared under the shared rule, so the path is recovered exactly (PHB with strong evidence, the default kept),
    and the requested rule's fit, made with that class fixed, is within the recovery test's 5 % at >= 1 MiB. Where the
    rows bind the network LL128 hop (the default path: the ring runs LL128 across nodes) that hop is within 5 % of
    the one the rows were made with (1.3x the prior); through the CPU no row binds a network hop and it stays put."""
    made = truth(path)
    log = tmp_path / "all_gather_perf.log"
    _write_log(log, synthetic_rows(made))
    got = calibrate([str(log)], "b200", tmp_path / "c.toml", bootstrap=0, holdout_fraction=0.0, nccl_ranks=16,
                    system=AMD, latency_per_protocol=mode)
    assert got.facts.inferred == ({"gpu_nic_path": "PHB"} if path else {}) and got.facts.chosen == (1 if path else 0)
    assert got.facts.candidates[1].evidence_ratio > EVIDENCE_THRESHOLD if path else \
        got.facts.candidates[1].evidence_ratio < 1.0
    assert got.fit.latency_per_protocol == mode and got.as_dict()["fit"]["hop_latency_rule"] == rule
    assert _final_mapes(got.fit)[0] < 0.05
    assert got.profile.interconnect[1].gpu_nic_path == (path or "")
    truth_hop_s, prior_hop_s = made.interconnect[1].latency_s, load_hardware("b200").interconnect[1].latency_s
    ll128_hop_s = got.fit.protocol_latencies["infiniband"][1]
    if path:
        assert ll128_hop_s == pytest.approx(prior_hop_s, rel=1e-9)
    else:
        assert abs(ll128_hop_s / truth_hop_s - 1) < 0.05, ll128_hop_s / truth_hop_s


@pytest.mark.slow  # about 10 s on the shared two-core machine
@pytest.mark.parametrize("rule,mode", RULES)
def test_the_host_cpu_is_recovered_under_the_per_protocol_hop_rules(tmp_path, rule, mode):
    """The host CPU test above through calibrate under each per-protocol rule: {amd} is chosen, written, and the fit
    under the rule is within 5 % at >= 1 MiB."""
    prior = load_hardware("h100-sxm")
    nv, ib = prior.interconnect
    made = with_system_facts(dataclasses.replace(prior, interconnect=(
        nv, dataclasses.replace(ib, latency_s=0.8 * ib.latency_s))), {"host_cpu": "amd", "gpu_nic_path": "PXB"})
    log = tmp_path / "all_reduce_perf.log"
    _write_log(log, synthetic_rows(made, op="all_reduce", seed=1, noise=0.02), op="all_reduce")
    got = calibrate([str(log)], "h100-sxm", tmp_path / "c.toml", bootstrap=0, holdout_fraction=0.0, nccl_ranks=16,
                    system={"gpu_nic_path": "PXB"}, latency_per_protocol=mode)
    assert got.facts.inferred == {"host_cpu": "amd"}, [(c.members, c.evidence_ratio) for c in got.facts.candidates]
    assert got.profile.interconnect[1].host_cpu == "amd" and got.fit.latency_per_protocol == mode
    assert _final_mapes(got.fit)[0] < 0.05


@pytest.mark.slow  # about 10 s on the shared two-core machine
def test_the_cli_fits_the_hop_rule_after_the_facts(tmp_path, capsys):
    """`--hop-latency hierarchical`: the same facts as the shared rule (inferred under it), the rule in JSON
    fit.hop_latency_rule and in the written profile's header; the default is shared; a bad value is one line."""
    from _cli import run_bad

    from moesim.cli import main

    log = tmp_path / "all_gather_perf.log"
    _write_log(log, synthetic_rows(truth("PHB")))
    base = ["calibrate", str(log), "--hardware", "b200", "--ranks", "16", "--host-cpu", "amd", "--bootstrap", "0",
            "-q", "--json"]
    facts = {}
    for flag, rule in (([], "shared"), (["--hop-latency", "hierarchical"], "hierarchical")):
        assert main(base + ["-o", str(tmp_path / f"{rule}.toml")] + flag) == 0
        fit = json.loads(capsys.readouterr().out)["fit"]
        assert fit["hop_latency_rule"] == rule
        facts[rule] = fit["system_facts"]["facts"]
        assert f"Hop latency rule: {rule} (" in (tmp_path / f"{rule}.toml").read_text()
    assert facts["hierarchical"] == facts["shared"] and facts["shared"][1]["value"] == "PHB"
    run_bad(capsys, base + ["-o", str(tmp_path / "x.toml"), "--hop-latency", "ll"], "--hop-latency", "hierarchical")


def test_an_unknown_hop_rule_is_refused_before_any_fit(tmp_path):
    from moesim.errors import SpecError

    with pytest.raises(SpecError, match="unknown latency_per_protocol 'll'"):
        calibrate([str(tmp_path / "missing.log")], "b200", tmp_path / "c.toml", latency_per_protocol="ll")
    assert not (tmp_path / "c.toml").exists()
