"""`--hardware` as a newcomer types it (session 15, newuser): the suggestion for a short name is the profile that
name starts ('h100' -> 'h100-sxm', not difflib's 'h800'), and every command names the option the user typed
('--hardware', not the library's 'hardware_profile'), a missing file or a folder included."""

from __future__ import annotations

import pytest

from moesim.cli import main
from moesim.specs.data_files import closest_name

LOG = "tests/data/nccl/h100-xxrjun-2node_alltoall_perf.log"


def commands(hardware: str, tmp_path) -> list[list[str]]:
    return [["collective", "all_reduce", "--hardware", hardware, "--devices", "8", "--bytes", "1MiB"],
            ["calibrate", LOG, "--hardware", hardware, "-o", str(tmp_path / "out.toml"), "-q"],
            ["estimate", "mixtral-8x7b-h100", "--hardware", hardware]]


@pytest.mark.parametrize("typed, meant", [("h100", "h100-sxm"), ("gb200", "gb200-nvl72"), ("a100", "a100-80gb"),
                                          ("tpu-v33", "tpu-v3")])
def test_an_unknown_profile_suggests_the_one_its_name_starts(typed, meant, tmp_path, capsys):
    for argv in commands(typed, tmp_path):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0
        assert f"field '--hardware': unknown hardware profile '{typed}' (did you mean '{meant}'?)" in err, argv[0]
    assert not (tmp_path / "out.toml").exists()


def test_closest_name_prefers_a_name_the_text_starts():
    names = ["a100-80gb", "b200", "gb200-nvl72", "h100-sxm", "h800", "tpu-v3", "tpu-v4"]
    assert closest_name("h100", names) == ["h100-sxm"]
    assert closest_name("H100", names) == ["h100-sxm"]
    assert closest_name("tpu-v", names) == ["tpu-v3"]  # the shortest, then alphabetical
    assert closest_name("tpu-v6", names) == ["tpu-v3"] or closest_name("tpu-v6", names) == ["tpu-v4"]  # difflib's
    assert closest_name("zzzz", names) == []


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_a_bad_profile_path_names_the_option(kind, tmp_path, capsys):
    path = tmp_path / "nope.toml" if kind == "missing" else tmp_path
    for argv in commands(str(path), tmp_path):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"moesim: error: {path}: field '--hardware': "), (argv[0], err)
