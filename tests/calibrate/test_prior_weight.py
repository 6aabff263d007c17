"""A figure moves only through rows it binds (linearise.binding_terms), and the prior's weight comes from each figure's
stated uncertainty and the fitted log's effective number of rows (prior_weight.py, prior_sigma.toml)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moesim.calibrate import calibrate
from moesim.calibrate.design import Observation
from moesim.calibrate.linearise import binding_terms
from moesim.calibrate.prior_weight import FIGURE_KINDS, SIGMA_FILE, bayes_weights, effective_rows, rel_sigmas
from moesim.errors import SpecError

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl"


def test_the_largest_term_of_a_row_binds_it_and_the_rest_binds_nothing():
    ring = np.array([0.6, 0.2, 0.1, 0.0])
    p2p = np.zeros(4)
    bandwidth = np.array([[0.1, 0.0], [0.7, 0.0], [0.1, 0.2], [0.0, 0.0]])
    lines = np.array([[0.0], [0.0], [0.0], [0.0]])
    rest = np.array([0.3, 0.1, 0.6, 0.0])
    ring_b, p2p_b, bw_b, line_b = binding_terms(ring, p2p, bandwidth, lines, rest)
    assert ring_b.tolist() == [True, False, False, False]
    assert bw_b.tolist() == [[False, False], [True, False], [False, False], [False, False]]
    assert not p2p_b.any() and not line_b.any()  # row 2: the rest C binds; row 3: nothing at all


def test_effective_rows_count_runs_not_rows():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=400)
    assert effective_rows(iid) == pytest.approx(400, rel=0.2)
    smooth = np.sin(np.linspace(0, 3, 400))  # one slow swing: a misfit of shape, a handful of rows' worth
    assert effective_rows(smooth) < 10
    pairs = np.repeat(rng.normal(size=200), 2)  # in-place and out-of-place rows of one size: ~one row each
    assert effective_rows(pairs) < 400 / 2
    spiked = smooth.copy()
    spiked[::40] += 50.0  # single-row spikes do not make the runs look independent
    assert effective_rows(spiked) < 40
    assert effective_rows(np.array([0.1, -0.1])) == 2


def test_sigma_file_gives_every_figure_kind_a_reason():
    sigmas = rel_sigmas()
    assert set(sigmas) == set(FIGURE_KINDS)
    assert sigmas["latency"] > sigmas["bandwidth"]  # floors miss more than lines on the healthy logs


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace("[latency]", "[latency]\nextra = 1", 1), "latency"),
    (lambda t: t.replace("rel_sigma = 0.3", "rel_sigma = -0.3", 1), "latency.rel_sigma"),
    (lambda t: t + "\n[ring_latency]\nrel_sigma = 0.1\nreason = \"x\"\n", "ring_latency"),
])
def test_sigma_file_is_strict(tmp_path, edit, field):
    bad = tmp_path / "prior_sigma.toml"
    bad.write_text(edit(SIGMA_FILE.read_text()))
    with pytest.raises(SpecError, match="prior_sigma.toml") as err:
        rel_sigmas.__wrapped__(bad)
    assert field in str(err.value) or "unknown keys" in str(err.value)


def test_a_figure_no_row_binds_keeps_its_prior(tmp_path):
    """The B200 Vultr 1-node sendrecv: below 512 MiB its rows are mostly send/recv's fixed per-message costs (the
    send/recv latency is 2-26 % of their time), so the send/recv latency stays at the prior, and only the NVLink
    send/recv line P, which binds the rows from 512 MiB up, is fitted."""
    result = calibrate([str(DATA / "b200-vultr-1node_sendrecv_perf.log")], "b200", tmp_path / "sr.toml", bootstrap=0,
                       holdout_fraction=0.0)
    fitted = {p.name for p in result.fit.parameters if p.fitted}
    assert fitted == {"nvlink.p2p_bandwidth"}


def test_a_ring_latency_bound_log_moves_the_hop_latency_and_nvls_its_line(tmp_path):
    """The B200 Vultr 1-node all-reduce: ring/LL rows up to 1 MiB bind the NVLink hop latency, NVLS rows from 8 MiB
    bind the NVLS line; the ring's W binds no row (NVLS wins every large size), so it keeps its prior."""
    result = calibrate([str(DATA / "b200-vultr-1node_all_reduce_perf.log")], "b200", tmp_path / "ar.toml",
                       bootstrap=0, holdout_fraction=0.0)
    fitted = {p.name: p for p in result.fit.parameters if p.fitted}
    assert set(fitted) == {"nvlink.latency", "nvlink.nvls_bandwidth"}
    assert fitted["nvlink.latency"].value > fitted["nvlink.latency"].prior  # its ring/LL rows are 8-33 % slow
    assert result.fit.effective_rows < result.fit.overall.n / 4  # long same-sign runs: few independent rows
    assert result.fit.level_prior_weight == pytest.approx(np.sqrt(result.fit.overall.n / result.fit.effective_rows))


def test_a_log_whose_rows_no_figure_binds_writes_the_prior(tmp_path, capsys):
    """The same sendrecv log cut at 256 MiB: every row is mostly fixed cost, nothing is fitted, and the CLI says so
    in one line (no traceback, exit 0)."""
    from moesim.cli import main

    lines = (DATA / "b200-vultr-1node_sendrecv_perf.log").read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.log"
    cut.write_text("".join(line for line in lines if not line[:12].strip().isdigit() or int(line.split()[0]) <= 2**28))
    code = main(["calibrate", str(cut), "--hardware", "b200", "-o", str(tmp_path / "c.toml"), "--bootstrap", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "no figure is fitted" in out


class _Stub:
    """The little of a Design that bayes_weights reads: one latency figure, residuals the test sets per fit."""

    names = ["nvlink.latency"]
    departures: dict = {}  # no hierarchical per-protocol hops (design.py)

    def __init__(self, residuals):
        self.calls, self.residuals = 0, residuals
        self.measured = np.ones(len(residuals))
        self.row_weights = np.ones(len(residuals))  # every row 1 (row_weight.py's default; session 16)
        self.observations = [Observation("collective:all_reduce", (), 1.0, str(i)) for i in range(len(residuals))]

    def level_slice(self):
        return slice(0, 1)

    def unpriored(self):
        return np.zeros(0, dtype=int)

    def initial(self):
        return np.zeros(1)

    def probe(self, theta):
        return None

    def predict(self, theta, coef=None):
        return np.exp(self.residuals)


def test_a_cycling_effective_row_count_takes_the_smaller():
    """Fit and n_eff are iterated; where the residuals flip between two patterns (n_eff 100 and 20 here) and never
    settle, the cycle's smaller n_eff is the one used (the prior holds where independence is in doubt)."""
    rng = np.random.default_rng(1)
    noisy = rng.normal(size=200)  # ~200 effective rows
    runs = np.repeat(rng.normal(size=20), 10)  # ~20 runs of 10
    stub = _Stub(noisy)
    patterns = [runs, noisy]

    def fit(design, loss, weights):
        design.residuals = patterns[design.calls % 2]
        design.calls += 1
        return (np.zeros(1),)

    weights, n_eff, rounds = bayes_weights(stub, "soft_l1", fit)
    assert len(rounds) < 8 and n_eff == min(rounds) < 60  # without the cycle rule: 8 rounds, the last one kept
    assert weights[0] == pytest.approx(np.sqrt(200 / n_eff) / rel_sigmas()["latency"])
