"""Session 16 (calreport): calibrate reports what its fit did to the user's own logs per size band (prior | fitted),
notes a fit that made the >= 1 MiB band worse (with what --row-weight band-loss gives), warns of a -g N run across
nodes, and writes the same profile as before (moesim/calibrate/insample_report.py; docs/collectives-history.md
"Session 16 (calreport)")."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from pathlib import Path

import pytest

from moesim.calibrate import calibrate, render_calibration
from moesim.calibrate.insample_report import NOISE, InSample, multinode_g_warnings, worse_notes
from moesim.calibrate.nccl_tests import hosts_in_rank_lines
from moesim.calibrate.records import read_measurements
from moesim.cli import main

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "nccl"
GOLDEN = Path(__file__).with_name("data") / "calreport_main_profiles.json"
TOGETHER = DATA / "b200-together-2node_sendrecv_perf.log"  # one process per GPU, 2 hosts; the row fit is worse >= 1 MiB
ENGAGING_2 = DATA / "b200-engaging-2node_all_gather_perf.log"  # -g 8, node5500 + node5501
ENGAGING_1 = DATA / "b200-engaging-1node_all_gather_perf.log"  # -g 8, node5500 only
VULTR = DATA / "b200-vultr-2node_all_gather_perf.log"  # the walk-through's log: the fit is not worse at >= 1 MiB

_RUNS: dict = {}  # (log, keywords) -> calibrate's result, made once for the module (each fit is seconds)


def _calibrate(tmp_path: Path, log: Path, **kw):
    key = (log, repr(sorted(kw.items())))
    if key not in _RUNS:
        _RUNS[key] = calibrate([str(log)], "b200", tmp_path / f"cal{len(_RUNS)}.toml", bootstrap=0, **kw)
    return _RUNS[key]


def _normalised(text: str) -> str:
    """As the golden file was made: every UTC timestamp blanked, the checkout's root prefix removed."""
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", "-", text).replace(str(ROOT) + "/", "")


@pytest.mark.parametrize("case", sorted(json.loads(GOLDEN.read_text())["cases"]))
def test_written_profile_is_mains_bit_for_bit(tmp_path, monkeypatch, case):
    """The report is read after the profile is written: default, --row-weight band-loss, --transfer band-guard and a
    -g 8 log write exactly what main @ 751bbe2 wrote (--json too: the output format does not touch the profile)."""
    golden = json.loads(GOLDEN.read_text())["cases"][case]
    monkeypatch.chdir(ROOT)  # the golden's paths are relative to the checkout
    out = tmp_path / "cal.toml"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["calibrate", *golden["args"], "-o", str(out), "-q", "--json"]) == 0
    assert json.loads(printed.getvalue())["in_sample"]  # the report ran
    assert hashlib.sha256(_normalised(out.read_text()).encode()).hexdigest() == golden["sha256"]


def test_together_table_and_note(tmp_path):
    """Together 2-node sendrecv on b200: the row fit takes the log's own >= 1 MiB band from 3.79 to 5.13 % (bandfit's
    in-sample table), so the note names the figures and band-loss's (2.67 | 18.72 %)."""
    result = _calibrate(tmp_path, TOGETHER)
    (row,) = result.in_sample
    assert (row.op, row.ranks) == ("send_recv", 16)
    assert row.prior == pytest.approx((0.0379, 0.2347), abs=5e-5)
    assert row.fitted == pytest.approx((0.0513, 0.0810), abs=5e-5)
    assert row.worse_large
    assert row.band_loss == pytest.approx((0.0267, 0.1872), abs=5e-5)
    assert row.band_loss[0] < row.prior[0] < row.fitted[0]
    text = render_calibration(result)
    assert "your log, in-sample busbw MAPE per band: prior | fitted" in text
    table_line = next(line for line in text.splitlines() if line.startswith(str(TOGETHER)))
    assert table_line.split()[1:] == ["send_recv", "16", "3.79", "%", "5.13", "%", "23.47", "%", "8.10", "%"]
    (note,) = [line for line in text.splitlines() if line.startswith("note: ")]
    assert "3.79 % -> 5.13 %" in note and "--row-weight band-loss" in note and "< 1 MiB gain" in note
    assert "2.67 % at >= 1 MiB and 18.72 % below" in note
    assert not [line for line in text.splitlines() if line.startswith("warning: ")]  # one process per GPU


def test_together_json_keys(tmp_path):
    d = _calibrate(tmp_path, TOGETHER).as_dict()
    (row,) = d["in_sample"]
    assert set(row) == {"log", "op", "ranks", "busbw_mape_ge_1mib_prior", "busbw_mape_ge_1mib_fitted",
                        "busbw_mape_lt_1mib_prior", "busbw_mape_lt_1mib_fitted", "fit_worse_ge_1mib",
                        "busbw_mape_ge_1mib_band_loss", "busbw_mape_lt_1mib_band_loss"}
    assert row["log"] == str(TOGETHER) and row["fit_worse_ge_1mib"] is True
    assert row["busbw_mape_ge_1mib_fitted"] - row["busbw_mape_ge_1mib_prior"] > NOISE
    (warning,) = d["warnings"]
    assert "--row-weight band-loss" in warning
    json.dumps(d)  # every new value is JSON


def test_no_note_under_band_loss_itself(tmp_path):
    """With --row-weight band-loss the fit is not worse at >= 1 MiB (2.67 < 3.79 %): no note, no second fit."""
    result = _calibrate(tmp_path, TOGETHER, row_weight="band-loss")
    (row,) = result.in_sample
    assert row.fitted[0] == pytest.approx(0.0267, abs=5e-5) and not row.worse_large and row.band_loss is None
    assert result.warnings == ()


def test_no_note_where_the_fit_is_not_worse(tmp_path):
    """The walk-through's Vultr log: the fit takes >= 1 MiB 31.10 -> 30.38 %: the table, no note, no warning."""
    result = _calibrate(tmp_path, VULTR, nccl_ranks=16, system={"host_cpu": "amd"})
    (row,) = result.in_sample
    assert row.fitted[0] < row.prior[0] and not row.worse_large and row.band_loss is None
    assert result.warnings == () and result.as_dict()["warnings"] == []
    text = render_calibration(result)
    assert "your log, in-sample busbw MAPE per band" in text and "note: " not in text and "warning: " not in text


def test_g_warning_on_a_two_node_g8_log(tmp_path):
    result = _calibrate(tmp_path, ENGAGING_2, gpus_per_thread=8)
    (warning,) = result.warnings
    assert warning.startswith(f"{ENGAGING_2}: one process drove 8 GPUs (nccl-tests -g 8) on 2 nodes "
                              "(node5500, node5501)")
    assert "1 MiB: 183-861 us" in warning and "Session 14 (g8)" in warning and "Session 15 (newlogs6)" in warning
    assert "absorb" in warning
    assert f"warning: {warning}" in render_calibration(result).splitlines()
    assert result.as_dict()["warnings"] == [warning]


@pytest.mark.parametrize("log, gpus, expected", [(ENGAGING_2, 8, 1), (ENGAGING_2, 1, 1),  # the header's nGpus 8 counts
                                                 (ENGAGING_1, 8, 0),  # -g 8 on one node
                                                 (TOGETHER, 1, 0)])  # one process per GPU on two nodes
def test_g_warning_only_across_nodes(log, gpus, expected):
    m = read_measurements([str(log)])
    assert len(multinode_g_warnings(m, gpus)) == expected


def test_hosts_in_rank_lines_read_past_launcher_prefixes():
    data = (b"[1,0]<stdout>:#  Rank  0 Group  0 Pid  1 on   hostA device  0 [0x1b] NVIDIA B200\n"
            b" 1: #  Rank  1 Group  0 Pid  2 on hostB device  0 [0x1b] NVIDIA B200\n"
            b"#  Rank  2 Pid  3 on hostA device  1 [0x43] NVIDIA B200\n"
            b"#  Rank  3 Group  0 Pid  4 device  2 [0x52] NVIDIA B200\n")  # no host: not counted
    assert hosts_in_rank_lines(data) == ("hostA", "hostB")
    assert read_measurements([str(ENGAGING_2)]).files[0].hosts == ("node5500", "node5501")
    assert read_measurements([str(ENGAGING_1)]).files[0].hosts == ("node5500",)


@pytest.mark.parametrize("fitted, worse", [(0.0379 + NOISE + 0.0002, True), (0.0379 + NOISE - 0.0002, False),
                                           (0.0300, False)])
def test_note_threshold_is_the_noise(fitted, worse):
    row = InSample("x.log", "send_recv", 16, (0.0379, 0.2347), (fitted, 0.0810))
    assert row.worse_large is worse
    assert len(worse_notes((row,), "row")) == int(worse)
    assert InSample("x.log", "all_gather", 16, (None, 0.2), (None, 0.3)).worse_large is False  # no >= 1 MiB rows


def test_one_band_log_is_not_told_band_loss():
    """A log with no rows below 1 MiB (e.g. gb200-coreweave-1rack all_reduce, 3.28 -> 4.17 % in calreport_survey.py):
    every row weight is 1 there, so the note points at --transfer band-guard, not at band-loss."""
    row = InSample("x.log", "all_reduce", 72, (0.0328, None), (0.0417, None))
    (note,) = worse_notes((row,), "row")
    assert "3.28 % -> 4.17 %" in note and "no rows below 1 MiB" in note and "--transfer band-guard" in note
    assert "Try --row-weight band-loss" not in note
