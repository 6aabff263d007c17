"""Session 18 (heldout3): `calibrate --transfer cv-gate` (a fitted figure kept only where its move beats the prior on
the log's own sizes held out of the fit; moesim/calibrate/transfer_cv.py) and `--transfer boot-shrink` (each fitted
figure moved toward its prior by its bootstrap spread; moesim/calibrate/transfer_shrink.py), docs/collectives-history.md
"Session 18 (heldout3)"."""

from __future__ import annotations

import dataclasses
import json
import tomllib

import numpy as np
import pytest

from calibrate_synth import HELDOUT_MATRIX, collective_record_dict, write_jsonl
from moesim.calibrate import calibrate
from moesim.calibrate.transfer import TRANSFER_RULES, at_prior, at_values
from moesim.calibrate.transfer_band import moved_figures
from moesim.calibrate.transfer_cv import CV_FOLDS, band_score, size_folds, size_keys
from moesim.calibrate.transfer_shrink import shrink_weight, shrunk
from moesim.specs.load import load_hardware

SIZES = [2**i for i in range(6, 26)]  # 20 sizes, 64 B - 32 MiB: both bands


def _log(tmp_path, name: str, true=None, scale_at: dict | None = None):
    """A synthetic all-to-all log over 2 ranks priced by `true` (default the cpu-localhost prior), the rows of the
    sizes in `scale_at` measured that many times slower."""
    rec = collective_record_dict(true or load_hardware("cpu-localhost"), sizes=SIZES)
    for p in rec["points"]:
        for key in ("median_s", "p10_s", "p90_s", "min_s", "max_s"):
            p[key] *= (scale_at or {}).get(p["bytes"], 1.0)
    return write_jsonl(tmp_path / f"{name}.jsonl", [rec])


def _calibrate(tmp_path, log, rule: str, seed: int = 0):
    out = tmp_path / f"{log.stem}-{rule}-{seed}.toml"
    result = calibrate([str(log)], "cpu-localhost", out, transfer_rule=rule, bootstrap=0, holdout_fraction=0.0,
                       seed=seed)
    # the written levels without their `source` text (it carries the time of writing)
    levels = tomllib.loads(out.read_text())["interconnect"]
    return result, [{k: v for k, v in lv.items() if k != "source"} for lv in levels]


def _pi(result) -> float:
    """The written profile's send/recv latency π (p2p_latency_us; unset: the hop latency)."""
    level = result.profile.interconnect[0]
    return level.p2p_latency_s or level.latency_s


def test_rules_are_added_not_renamed():
    assert TRANSFER_RULES[:13] == ("shared", "machinery", "lines", "identified", "lines-identified", "protocol-hops",
                                   "p2p-ops", "pick-as-nccl", "pick-protocol-hops", "band-guard", "pareto-guard",
                                   "band-split", "hop-split")
    assert TRANSFER_RULES[13:] == ("cv-gate", "boot-shrink")


def test_folds_are_by_size_and_seeded():
    """Every row of a size in one fold, the sizes dealt round-robin (fold sizes differ by at most one), the same seed
    the same folds, a row without a collective term in none."""
    keys = [("log", "all_reduce", 8, s) for s in SIZES for _ in range(2)] + [None]
    folds = size_folds(keys, 0)
    assert len(folds) == CV_FOLDS
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(keys) - 1))
    for rows in folds:
        assert {keys[i][3] for i in rows} == {keys[i][3] for i in rows if i % 2 == 0}  # both rows of a size
        assert len(rows) == 8  # 20 sizes, 5 folds: 4 sizes x 2 rows each
    assert all((a == b).all() for a, b in zip(folds, size_folds(keys, 0)))
    assert any((a != b).any() for a, b in zip(folds, size_folds(keys, 1)))
    assert len(size_folds(keys[:6], 0)) == 3  # fewer sizes than folds: one fold per size


def test_band_score_is_the_matrixs_per_band_mean_on_the_faster_row():
    keys = [("l", "op", 2, 2**10)] * 2 + [("l", "op", 2, 2**21)] * 2
    measured = np.array([1.0, 2.0, 10.0, 9.0])  # faster rows: 1.0 (small), 9.0 (large)
    predicted = np.array([0.5, 2.0, 10.0, 10.0])
    assert band_score(keys, measured, predicted) == pytest.approx((1.0 + 0.1) / 2)


def test_cv_gate_writes_a_figure_the_folds_cannot_confirm_at_the_prior(tmp_path):
    """One 256 B size measured 3x slow: the shared fit moves π for it; out of fold, the fits that see it price the
    other small sizes worse than the prior does and the fit that does not see it stays at the prior, so cv-gate writes
    π at the prior."""
    log = _log(tmp_path, "outlier", scale_at={2**8: 3.0})
    shared, _ = _calibrate(tmp_path, log, "shared")
    gated, _ = _calibrate(tmp_path, log, "cv-gate")
    prior_pi = load_hardware("cpu-localhost").interconnect[0].p2p_latency_s or 30e-6
    assert _pi(shared) > prior_pi * 1.0001
    assert _pi(gated) == pytest.approx(prior_pi, rel=1e-6)
    note = next(n for n in gated.transfer_notes if n.startswith("loopback.p2p_latency"))
    assert note.endswith("written at the prior")


def test_cv_gate_keeps_a_figure_every_fold_confirms(tmp_path):
    """Every size measured with π twice the prior's: every fold's fit finds it, and cv-gate keeps it."""
    prior = load_hardware("cpu-localhost")
    level = prior.interconnect[0]
    true = dataclasses.replace(prior, interconnect=(dataclasses.replace(
        level, latency_s=2 * level.latency_s, p2p_latency_s=2 * (level.p2p_latency_s or level.latency_s)),))
    log = _log(tmp_path, "doubled", true=true)
    gated, _ = _calibrate(tmp_path, log, "cv-gate")
    assert _pi(gated) == pytest.approx(2 * (level.p2p_latency_s or level.latency_s), rel=1e-3)
    assert any(n.startswith("loopback.p2p_latency") and n.endswith("kept") for n in gated.transfer_notes)


@pytest.mark.parametrize("rule", ["cv-gate", "boot-shrink"])
def test_the_same_seed_gives_the_same_profile(tmp_path, rule):
    log = _log(tmp_path, "outlier", scale_at={2**8: 3.0, 2**20: 1.2})
    (a, first), (b, second) = _calibrate(tmp_path, log, rule), _calibrate(tmp_path, log, rule)
    assert first == second and a.transfer_notes == b.transfer_notes and a.transfer_notes


def test_shrink_weight_is_the_normal_posterior_means():
    """w = σ_prior² / (σ_prior² + s_boot²): 1 where the bootstrap pins the figure, 1/2 where it spreads it as widely as
    the prior, toward 0 beyond; the written figure is the prior moved w of the way in ln."""
    assert shrink_weight(0.3, 0.0) == 1.0
    assert shrink_weight(0.3, 0.3) == pytest.approx(0.5)
    assert shrink_weight(0.15, 1.5) == pytest.approx(1 / 101)
    assert shrunk(14e-6, 20e-6, 1.0) == pytest.approx(20e-6)
    assert shrunk(14e-6, 20e-6, 0.0) == pytest.approx(14e-6)
    assert shrunk(14e-6, 20e-6, 0.5) == pytest.approx(np.sqrt(14e-6 * 20e-6))


def test_boot_shrink_writes_between_the_prior_and_the_fit(tmp_path):
    """π fitted off the prior is written at prior x (fit / prior)^w with the w its note states, 0 < w <= 1."""
    log = _log(tmp_path, "outlier", scale_at={2**8: 3.0, 2**10: 2.0, 2**12: 1.5})
    shared, _ = _calibrate(tmp_path, log, "shared")
    shrunk_result, _ = _calibrate(tmp_path, log, "boot-shrink")
    prior_pi = load_hardware("cpu-localhost").interconnect[0].p2p_latency_s or 30e-6
    note = next(n for n in shrunk_result.transfer_notes if n.startswith("loopback.p2p_latency"))
    w = float(note.split("weight ")[1].split(":")[0])
    assert 0 < w <= 1
    assert _pi(shrunk_result) == pytest.approx(shrunk(prior_pi, _pi(shared), w), rel=2e-3)


def test_at_values_writes_each_figure_at_its_value_and_at_prior_is_its_none(tmp_path):
    log = _log(tmp_path, "doubled-a", scale_at={s: 1.5 for s in SIZES[:6]})
    fit = _calibrate(tmp_path, log, "shared")[0].fit
    pi = next(p for p in moved_figures(fit) if p.name.endswith(".p2p_latency"))
    written, done = at_values(fit, [(pi, 42e-6)])
    assert written.p2p_latencies["loopback"] == 42e-6 and done == [pi]
    assert at_prior(fit, [pi])[0].p2p_latencies["loopback"] == pi.prior
    assert size_keys(fit.observations)[0][1] == "all_to_all"


POSITIVE = ("b200-engaging-ubuntu", "b200-together", "h100-qoofyk")  # positive means at >= 1 MiB under shared
# (rule: per cluster, the mean change of the held-out busbw MAPE >= 1 MiB in pt; the three clusters' summed held-out
# MAPE >= 1 MiB | < 1 MiB in pt), as docs/collectives-history.md "Session 18 (heldout3)" reports them from the whole
# matrix (scripts/heldout_rule.py --rule session13 cv-gate boot-shrink)
REPORTED = {"shared": ({"b200-engaging-ubuntu": 0.2293, "b200-together": 0.8447, "h100-qoofyk": 1.4284},
                       (4107.903, 181.266)),
            "cv-gate": ({"b200-engaging-ubuntu": 0.2293, "b200-together": 0.7706, "h100-qoofyk": 1.4284},
                        (4107.013, 193.939)),
            "boot-shrink": ({"b200-engaging-ubuntu": 0.2246, "b200-together": 0.7938, "h100-qoofyk": 0.9809},
                            (4106.254, 183.060))}


@pytest.mark.parametrize("rule", ["shared", "cv-gate", "boot-shrink"])
def test_the_positive_clusters_held_out_figures_are_the_reported_ones(rule):
    """The three clusters whose mean is positive under the default, priced as the held-out matrix prices them: the
    figures the history reports. Neither candidate turns a mean to <= 0 (rule (i) fails for both); boot-shrink takes
    qoofyk +1.43 -> +0.98 pt, cv-gate Together +0.84 -> +0.77 pt and gives 12.7 pt back below 1 MiB."""
    from pathlib import Path

    from moesim.calibrate.nccl_table import calibration_matrix

    manifest = Path(__file__).resolve().parents[1] / "data" / "nccl" / "logs.toml"
    pairs = calibration_matrix(manifest, transfer_rule=rule, fixed_weight=False, clusters=POSITIVE)
    means, sums = REPORTED[rule]
    for cluster, mean_pt in means.items():
        changes = [p.change for p in pairs if p.cluster == cluster]
        assert 100 * sum(changes) / len(changes) == pytest.approx(mean_pt, abs=1e-3)
        assert mean_pt > 0
    large = sum(p.calibrated_mape for p in pairs)
    small = sum(p.calibrated_mape_small for p in pairs if p.calibrated_mape_small is not None)
    assert (100 * large, 100 * small) == pytest.approx(sums, abs=2e-3)


@HELDOUT_MATRIX
def test_the_diagnosis_block_is_current(load_script):
    """docs/collectives-history.md "Session 18 (heldout3)": the positive clusters' worse pairs are what
    scripts/heldout3_diag.py renders now (the matrix test_calibration_matrix.py prices, lru-cached in one process)."""
    diag = load_script("scripts/heldout3_diag.py")
    doc = diag.DOC.read_text(encoding="utf-8")
    block = doc.split(diag.BEGIN, 1)[1].split(diag.END, 1)[0].strip("\n")
    assert block == diag.render(None), "stale: run python scripts/heldout3_diag.py --write"


@pytest.mark.parametrize("rule", ["cv-gate", "boot-shrink"])
def test_the_cli_takes_the_rules_and_json_names_them(tmp_path, capsys, rule):
    from moesim.cli import main

    log = _log(tmp_path, "outlier", scale_at={2**8: 3.0})
    assert main(["calibrate", str(log), "--hardware", "cpu-localhost", "-o", str(tmp_path / "j.toml"),
                 "--bootstrap", "0", "--holdout-fraction", "0", "--json", "--transfer", rule]) == 0
    fit = json.loads(capsys.readouterr().out)["fit"]
    assert fit["transfer_rule"] == rule and any("p2p_latency" in n for n in fit["transfer_notes"])
    code = main(["calibrate", str(log), "--hardware", "cpu-localhost", "-o", str(tmp_path / "x.toml"),
                 "--transfer", "cv"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cv-gate" in err and "boot-shrink" in err
