"""A scenario file's [layout] options are named as the file wrote them (session 16, polish): `zero = 5` said
field 'layout.zero_stage' (the TrainingSpec field), which the file does not contain; `--layout zero=5` was fixed in
review (moesim/specs/layout.py _check_option). Now the [layout] table checks its options at read time
(layout_options.layout_from_table) and the contradiction check names the key as written too."""

from __future__ import annotations

from pathlib import Path

import pytest

from moesim.cli import main

ROOT = Path(__file__).resolve().parent.parent.parent
BASE = (ROOT / "scenarios" / "switch-base-128-tpu-v3.toml").read_text(encoding="utf-8")
UNSET = ("micro_batches", "zero_stage", "recompute", "pipeline_schedule", "capacity_factor")


def scenario(tmp_path: Path, layout: str, training: str = "") -> Path:
    base = "\n".join(line for line in BASE.splitlines() if not line.startswith(UNSET))
    head = base.split("[layout]")[0].replace("[training]", "[training]\n" + training if training else "[training]")
    path = tmp_path / "s.toml"
    path.write_text(head + "[layout]\ndp = 32\n" + layout + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("layout, training, field, fragment", [
    ("zero = 5", "", "layout.zero", "5 is out of range (allowed: an integer >= 0 and <= 3)"),
    ("zero_stage = 5", "", "layout.zero_stage", "5 is out of range"),
    ("mb = 0", "", "layout.mb", "0 is out of range"),
    ("cf = -1", "", "layout.cf", "is out of range"),
    ('recompute = "bogus"', "", "layout.recompute", "'bogus' is not allowed (allowed: none, selective, full)"),
    ('schedule = "x"', "", "layout.schedule", "'x' is not allowed"),
    ("mb = 2", "micro_batches = 4", "layout.mb", "'mb' = 2 contradicts training.micro_batches = 4"),
    ("zero = 2", "zero_stage = 1", "layout.zero", "'zero' = 2 contradicts training.zero_stage = 1"),
])
def test_a_layout_option_error_names_the_key_as_written(capsys, tmp_path, layout, training, field, fragment):
    path = scenario(tmp_path, layout, training)
    assert main(["estimate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{path}: field '{field}': " in err and fragment in err and "\n" not in err


def test_good_options_still_read(capsys, tmp_path):
    path = scenario(tmp_path, 'mb = 2\nzero = 2\nrecompute = "selective"\ncf = 1.25')
    assert main(["estimate", str(path)]) == 0
