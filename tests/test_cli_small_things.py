"""Issue #14 "small things": no Python None / n/a in output, no duplicated step-time column, the
profile's device cap named, the README sweep example runs, results/ ignored."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from moesim.cli import main
from moesim.cli.simulate_cmd import _dropped_text

ROOT = Path(__file__).resolve().parent.parent


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_no_python_none_in_text_output(capsys):
    code, out, _ = _run(capsys, "model", "mixtral-8x7b")
    assert code == 0 and "None" not in out and "dropless routing (no capacity factor)" in out
    code, out, _ = _run(capsys, "model", "switch-c-2048")
    assert "capacity factor 1 train / 2 eval, rule switch" in out
    code, out, _ = _run(capsys, "estimate", "mixtral-8x7b-h100")
    assert code == 0 and "None" not in out and "capacity factor / rule       none / dropless" in out


def test_simulate_drop_line_says_dropless_instead_of_n_a():
    assert _dropped_text({"dropped_token_fraction": 0.0, "expected_drop_fraction_uniform": None}) == \
        "0.000% (dropless routing: no capacity bound)"
    assert _dropped_text({"dropped_token_fraction": None, "expected_drop_fraction_uniform": None}) == \
        "none (no mixture-of-experts layers)"
    assert "n/a" not in _dropped_text({"dropped_token_fraction": 0.01, "expected_drop_fraction_uniform": 0.009})


def test_step_time_is_not_printed_twice(capsys):
    code, out, _ = _run(capsys, "search", "switch-base-128-tpu-v3", "--top", "2")
    header = next(line for line in out.splitlines() if line.startswith("rank  step time"))
    assert "step_time" not in header
    # another objective keeps its column (mfu, which the MFU column already shows, does not: session 10)
    code, out, _ = _run(capsys, "search", "switch-base-128-tpu-v3", "--top", "2", "--objective", "cost")
    assert "cost" in next(line for line in out.splitlines() if line.startswith("rank  step time"))


def test_device_cap_names_max_devices(capsys):
    code, _, err = _run(capsys, "search", "mixtral-8x7b-h100", "--devices", "4096")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "the profile's max_devices = 1024" in err and "'h100-sxm'" in err


def test_readme_sweep_example_runs(capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"`moesim (sweep [^`\[]+)", readme).group(1)
    code, out, err = _run(capsys, *shlex.split(command), "--workers", "1", "--json")
    assert code == 0, err
    points = json.loads(out)["points"]
    assert len(points) == 4 and all(p["status"] == "ok" for p in points)


def test_results_folder_is_ignored():
    assert "/results/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
