"""Bugs a new user's walk through the README, the CLI and the docs found (session 9, lane newuser): each test failed
on the code before its fix. Bad input ends with exit 2 and one line naming the file, the field and the allowed
values (tests/_cli.py run_bad)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

import _cli
from moesim.paths import builtin_dir

PROFILES = builtin_dir("hardware_profiles")

run_bad = functools.partial(_cli.run_bad, timeout_s=20.0)


def profile_with(tmp_path, name: str, old: str, new: str):
    text = (PROFILES / f"{name}.toml").read_text()
    assert old in text, old
    path = tmp_path / f"{name}-edited.toml"
    path.write_text(text.replace(old, new, 1))
    return path


# An efficiency given as one number (a percentage typed for a fraction) was reported without its field or the
# allowed range ("efficiency point [1.0, 82.0] needs ..."): the scalar form skipped the loader's field naming.
@pytest.mark.parametrize("old,new,field", [
    ("bw_efficiency = 0.82", "bw_efficiency = 82", "interconnect[0].bw_efficiency"),
    ("matmul = [[1e8, 0.10], [1e9, 0.30], [1e10, 0.55], [1e11, 0.68], [1e12, 0.72]]", "matmul = 55", "efficiency.matmul"),
    ("bw_efficiency = 0.82", "bw_efficiency = 0", "interconnect[0].bw_efficiency"),
])
def test_scalar_efficiency_out_of_range_names_its_field(tmp_path, capsys, old, new, field):
    path = profile_with(tmp_path, "h100-sxm", old, new)
    line = run_bad(capsys, ["estimate", "mixtral-8x7b-h100", "--hardware", path], str(path), f"field '{field}'")
    assert "(allowed: " in line and "<= 1" in line, line


def test_efficiency_table_point_out_of_range_says_what_is_allowed(tmp_path, capsys):
    path = profile_with(tmp_path, "h100-sxm", "[1e8, 0.10]", "[1e8, 10]")
    line = run_bad(capsys, ["estimate", "mixtral-8x7b-h100", "--hardware", path], "field 'efficiency.matmul'")
    assert "(allowed: " in line, line


# --holdout-fraction: the help and the split (calibrate/records.py split_holdout) take [0, 1), 0 holding nothing out;
# the command line checked (0, 1] instead, so 0 was refused and 1 reached the split, whose error named no option.
def test_holdout_fraction_zero_holds_nothing_out(tmp_path, capsys):
    from moesim.cli import main

    out = tmp_path / "c.toml"
    code = main(["calibrate", "tests/calibrate/data/harness-cpu-clock-layers.jsonl", "--hardware", "cpu-localhost",
                 "-o", str(out), "--holdout-fraction", "0", "--bootstrap", "0", "--quiet"])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert out.exists() and "0 held out" in text, text[:400]


def test_holdout_fraction_one_is_refused_by_the_option(tmp_path, capsys):
    line = run_bad(capsys, ["calibrate", "tests/calibrate/data/harness-cpu-clock-layers.jsonl", "--hardware",
                            "cpu-localhost", "-o", tmp_path / "c.toml", "--holdout-fraction", "1"],
                   "field '--holdout-fraction'", ">= 0 and < 1")
    assert not (tmp_path / "c.toml").exists(), line


# A DeepEP scenario on a TPU profile (`--hardware tpu-v3`): the refusal named the field but not the scenario file that
# sets it. Session 25 (newuser8): the bundled file's FP8 recipe is now refused first on TPU v3 (no float8 peak, named
# with the file); its BF16 twin reaches the DeepEP refusal.
def test_deepep_on_a_tpu_profile_names_the_scenario_file(capsys, tmp_path):
    run_bad(capsys, ["estimate", "deepseek-v3-h800", "--hardware", "tpu-v3", "--devices", "1024"],
            "deepseek-v3-h800.toml: field 'training.precision_recipe'", "a peak on tpu-v3: bfloat16, float32)")
    text = (Path(__file__).resolve().parent.parent / "scenarios" / "deepseek-v3-h800.toml").read_text()
    assert 'precision_recipe = "deepseek-v3-fp8"' in text
    bf16 = tmp_path / "dsv3-bf16.toml"
    bf16.write_text(text.replace('precision_recipe = "deepseek-v3-fp8"', 'precision_recipe = "bf16"'))
    run_bad(capsys, ["estimate", bf16, "--hardware", "tpu-v3", "--devices", "1024"],
            "dsv3-bf16.toml: field 'training.dispatch_backend'", "(allowed: nccl, pairwise, hierarchical)")


# `nccl_arch = "Hopper"`: the allowed list began with the empty name, printed as "(allowed: , volta, ...".
def test_unknown_nccl_arch_lists_the_names_readably(tmp_path, capsys):
    path = profile_with(tmp_path, "h100-sxm", 'nccl_arch = "hopper"', 'nccl_arch = "Hopper"')
    run_bad(capsys, ["collective", "all_reduce", "--hardware", path, "--devices", "8"],
            "field 'interconnect[0].nccl_arch'", '(allowed: volta, ampere, hopper, blackwell, "" (none))')


# `--layout "dp=2048;ep=2048"` (a semicolon for a comma) said only "'dp=2048;ep=2048' is not an integer": it names the
# key and how pairs are separated now.
def test_layout_with_a_wrong_separator_says_how_pairs_are_separated(capsys):
    run_bad(capsys, ["estimate", "switch-c-2048-tpu-v3", "--layout", "dp=2048;ep=2048"],
            "field '--layout'", "dp is not an integer", "separated by commas or spaces")


# `--nccl-collnet` on a profile whose fabric cannot reduce in the network (a100-80gb: no level with sharp = true) changed
# nothing without a word; it warns now, as the NCCL options on point-to-point collectives do, and prices as without.
def test_collnet_on_a_profile_without_sharp_warns(capsys):
    from moesim.cli import main

    assert main(["collective", "all_reduce", "--hardware", "a100-80gb", "--devices", "16", "--bytes", "1GiB"]) == 0
    plain = capsys.readouterr().out
    assert main(["collective", "all_reduce", "--hardware", "a100-80gb", "--devices", "16", "--bytes", "1GiB",
                 "--nccl-collnet"]) == 0
    out, err = capsys.readouterr()
    assert "--nccl-collnet" in err and "sharp = true" in err and err.count("\n") == 1, err
    rows = lambda text: [line for line in text.splitlines() if not line.startswith("#")]  # noqa: E731
    assert rows(out) == rows(plain)
    assert main(["collective", "all_reduce", "--hardware", "h100-sxm", "--devices", "16", "--bytes", "1GiB",
                 "--nccl-collnet"]) == 0
    assert "sharp" not in capsys.readouterr().err  # h100-sxm's InfiniBand level has SHARP


# A data file given in another kind's place was refused by the first key it lacked, with a misleading hint: a model
# file as the scenario said "field 'model': required key is missing (is 'd_model' a misspelling?)". It says what the
# file is and where it goes now.
@pytest.mark.parametrize("argv,fragments", [
    (["estimate", "moesim/models/library/mixtral-8x7b.toml"], ["is a model file, not a scenario file"]),
    (["estimate", "hardware_profiles/h100-sxm.toml"], ["is a hardware profile file, not a scenario file", "--hardware"]),
    (["model", "scenarios/mixtral-8x7b-h100.toml"], ["is a scenario file, not a model file", "moesim estimate"]),
    (["model", "hardware_profiles/h100-sxm.toml"], ["is a hardware profile file, not a model file"]),
    (["collective", "all_reduce", "--hardware", "scenarios/mixtral-8x7b-h100.toml", "--devices", "8"],
     ["is a scenario file, not a hardware profile file"]),
    (["estimate", "mixtral-8x7b-h100", "--hardware", "moesim/models/library/mixtral-8x7b.toml"],
     ["mixtral-8x7b.toml: is a model file, not a hardware profile file", "(allowed: a hardware profile file"]),
])
def test_a_file_of_another_kind_says_what_it_is(capsys, argv, fragments):
    line = run_bad(capsys, argv, *fragments)
    assert "misspelling" not in line and "required key" not in line, line


# `moesim model CHECKPOINT_DIR` (the folder HuggingFace downloads) said only "is a directory, not a file".
def test_a_checkpoint_folder_points_at_its_config(capsys):
    run_bad(capsys, ["model", "tests/models/data/mixtral-8x7b-v0.1"], "is a directory, not a file",
            "give its config.json")


# `moesim calibrate ... -o hardware_profiles/h100-sxm.toml` with another prior (--hardware b200) overwrote a shipped
# profile: every later use of the name h100-sxm read the calibrated B200. Only the prior itself was refused.
# One guard (paths.check_output_path, session 10) refuses it on the CLI path and on the library call alike: tried on
# the shipped file itself, with no monkeypatching; a regression that writes it is undone before the test fails.
def test_calibrate_does_not_overwrite_a_shipped_profile(capsys):
    import re

    from moesim.calibrate import calibrate
    from moesim.errors import SpecError

    target = PROFILES / "h100-sxm.toml"
    log = "tests/data/nccl/b200-vultr-2node_all_gather_perf.log"
    said = "cannot write: is the shipped hardware profile 'h100-sxm'; name a new file"
    before = target.read_bytes()
    try:
        run_bad(capsys, ["calibrate", log, "--hardware", "b200", "--ranks", "16", "--bootstrap", "0", "-o", target],
                "field '--output'", said)
        with pytest.raises(SpecError, match=re.escape(said)) as err:
            calibrate([log], "b200", target, nccl_ranks=16, bootstrap=0)
        assert err.value.field == "--output"
    finally:
        after = target.read_bytes()
        if after != before:
            target.write_bytes(before)
    assert after == before


# A link to a shipped profile is the shipped profile: calibrate's own guard (before session 10) compared resolved
# paths; the one guard does too, for every output.
def test_a_link_to_a_shipped_profile_is_refused(tmp_path, capsys):
    target = PROFILES / "h100-sxm.toml"
    link = tmp_path / "mine.toml"
    link.symlink_to(target)
    before = target.read_bytes()
    try:
        run_bad(capsys, ["calibrate", "tests/data/nccl/b200-vultr-2node_all_gather_perf.log", "--hardware", "b200",
                         "--ranks", "16", "--bootstrap", "0", "-o", link],
                "field '--output'", "cannot write: is the shipped hardware profile 'h100-sxm'; name a new file")
        html = tmp_path / "report.html"
        html.symlink_to(target)
        run_bad(capsys, ["report", "switch-base-128-tpu-v3", "-q", "-o", html], "is the shipped hardware profile")
    finally:
        after = target.read_bytes()
        if after != before:
            target.write_bytes(before)
    assert after == before


# The other outputs (report -o, simulate --trace, sweep -o) wrote over shipped data files as readily: a report's HTML
# became scenarios/mixtral-8x7b-h100.toml. Checked before anything runs, so nothing is written.
@pytest.mark.parametrize("argv,target,kind", [
    (["report", "switch-base-128-tpu-v3", "-q", "-o"], "scenarios/mixtral-8x7b-h100.toml", "scenario"),
    (["simulate", "switch-base-128-tpu-v3", "--steps", "1", "-q", "--trace"], "hardware_profiles/tpu-v3.toml",
     "hardware profile"),
    (["sweep", "switch-base-128-tpu-v3", "--vary", "experts=64", "--workers", "1", "-q", "-o"],
     "moesim/models/library/t5-base.toml", "model"),
])
def test_no_output_overwrites_a_shipped_data_file(capsys, monkeypatch, tmp_path, argv, target, kind):
    from pathlib import Path

    import moesim.paths

    copy = tmp_path / Path(target).name  # a copy stands for the shipped folder: a regression writes there
    copy.write_bytes(Path(target).read_bytes())
    real = moesim.paths.builtin_dir
    folder = real(kind.replace(" ", "_") + "s")
    monkeypatch.setattr(moesim.paths, "builtin_dir", lambda k: tmp_path if real(k) == folder else real(k))
    run_bad(capsys, argv + [copy], "cannot write", f"is the shipped {kind} '{copy.stem}'")
    assert copy.read_bytes() == Path(target).read_bytes()


def test_a_profile_calibrate_wrote_into_the_profiles_folder_may_be_recalibrated(tmp_path, capsys, monkeypatch):
    import moesim.paths

    shipped = tmp_path / "hardware_profiles"
    shipped.mkdir()
    real = moesim.paths.builtin_dir
    monkeypatch.setattr(moesim.paths, "builtin_dir", lambda k: shipped if k == "hardware_profiles" else real(k))
    from moesim.cli import main

    argv = ["calibrate", "tests/data/nccl/b200-vultr-2node_all_gather_perf.log", "--hardware", "b200", "--ranks", "16",
            "--bootstrap", "0", "-q", "-o", str(shipped / "vultr.toml")]
    assert main(argv) == 0
    assert main(argv) == 0, capsys.readouterr().err  # again, over its own output


def test_a_report_beside_the_scenarios_may_be_rewritten(tmp_path, capsys, monkeypatch):
    import moesim.paths

    folder = tmp_path / "scenarios"  # stands for the shipped folder, holding a scenario and a report named after it
    folder.mkdir()
    (folder / "switch-base-128-tpu-v3.toml").write_text("schema_version = 1\n")
    (folder / "switch-base-128-tpu-v3.html").write_text("old report")
    real = moesim.paths.builtin_dir
    monkeypatch.setattr(moesim.paths, "builtin_dir", lambda k: folder if k == "scenarios" else real(k))
    moesim.paths.check_output_path(folder / "switch-base-128-tpu-v3.html", field="--output")  # no error
    run_bad(capsys, ["report", "switch-base-128-tpu-v3", "-q", "-o", folder / "switch-base-128-tpu-v3.toml"],
            "is the shipped scenario")
