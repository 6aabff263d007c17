"""calibrate's speed work (calspeed, session 9) changes no result: the bootstrap drawn on an existing fit is the
bootstrap fit_profile draws, calibrate draws it on the fit facts inference made instead of refitting, a log is read
once, and a probe repeated inside a priced_once scope prices nothing again. The speed itself is measured by
benchmarks/bench_calibrate.py (benchmarks/RESULTS.md), which also checks the outputs of all bundled logs byte for
byte."""

from __future__ import annotations

import builtins
import io
from pathlib import Path

import numpy as np
import pytest

from moesim.calibrate import api, linearise
from moesim.calibrate.design import Design
from moesim.calibrate.fit import fit_profile, observations_for, with_bootstrap
from moesim.calibrate.linearise import priced_once
from moesim.calibrate.nccl_tests import read_nccl_tests
from moesim.calibrate.profile_io import file_digest
from moesim.specs.load import load_hardware

LOG = Path(__file__).resolve().parent.parent / "data" / "nccl" / "h200-oci-2node_all_reduce_perf.log"  # 2 nodes


@pytest.fixture(scope="module")
def measurements():
    return read_nccl_tests(LOG)


def test_a_bootstrap_on_an_existing_fit_is_the_one_fit_profile_draws(measurements):
    prior = load_hardware("h200")
    plain = fit_profile(measurements, prior, fit_keys=set(), bootstrap=0, seed=3)
    drawn = with_bootstrap(plain, 8, 3)
    assert drawn == fit_profile(measurements, prior, fit_keys=set(), bootstrap=8, seed=3)
    assert drawn.bootstrap == 8 and any(p.interval for p in drawn.parameters if p.fitted)
    assert not any(p.interval for p in plain.parameters)  # plain itself is left as it was


def test_calibrate_draws_its_bootstrap_on_the_fit_facts_inference_made(tmp_path, monkeypatch):
    def refit(*args, **kwargs):
        raise AssertionError("calibrate fitted again what facts inference had fitted")

    with monkeypatch.context() as patched:
        patched.setattr(api, "fit_profile", refit)
        reused = api.calibrate([str(LOG)], "h200", tmp_path / "a.toml", bootstrap=5, holdout_fraction=0.0)
    assert len(reused.facts.candidates) >= 2 and reused.facts.chosen == 0  # inferred: NCCL's default kept
    direct = api.calibrate([str(LOG)], "h200", tmp_path / "b.toml", bootstrap=5, holdout_fraction=0.0,
                           infer_facts=False)  # the same prior, fitted by calibrate itself
    assert reused.fit.parameters == direct.fit.parameters
    assert any(p.interval for p in reused.fit.parameters if p.fitted)


def test_calibrate_reads_a_log_once(tmp_path, monkeypatch):
    log = tmp_path / LOG.name
    log.write_bytes(LOG.read_bytes())
    opened, real_open = [], io.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and Path(file) == log:
            opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)  # pathlib's read_bytes
    result = api.calibrate([str(log)], "h200", tmp_path / "c.toml", bootstrap=0, holdout_fraction=0.0)
    monkeypatch.undo()
    assert len(opened) == 1
    assert f"{log}@sha256:{file_digest(log)}" in (tmp_path / "c.toml").read_text(encoding="utf-8")
    assert result.measurements.file(log).header_gpus == (1,)  # its header: "nThread 1 nGpus 1"


def test_a_probe_repeated_in_a_scope_prices_nothing_again(measurements, monkeypatch):
    prior = load_hardware("h200")
    design = Design(observations_for(measurements, set(), prior), prior, ())
    theta = design.initial()
    calls, real = [], linearise.collective_time_s

    def counting(*args):
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(linearise, "collective_time_s", counting)
    plain = design.probe(theta)
    outside = len(calls)
    with priced_once():
        first = design.probe(theta)
        inside = len(calls) - outside
        again = design.probe(theta)
        assert len(calls) == outside + inside  # the repeat priced nothing
        assert linearise._memo
    assert 0 < inside <= outside and not linearise._memo  # dropped when the scope closes
    for x, y, z in zip(plain, first, again):
        assert np.array_equal(x, y) and np.array_equal(y, z)
