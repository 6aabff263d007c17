"""`-o` as an expert expects it (session 15, newuser): a path moesim cannot write is refused before the work is done
(the fit, not only the folder's existence: root ignores permission bits, /sys refuses root), and a failed write leaves
a profile already there as it was (before: it was truncated first, then written), naming '--output'."""

from __future__ import annotations

import errno
import os

from moesim.cli import main

LOG = "tests/data/nccl/h100-xxrjun-2node_alltoall_perf.log"


def calibrate(out, *extra) -> list[str]:
    return ["calibrate", LOG, "--hardware", "h100-sxm", "-o", str(out), "-q", "--bootstrap", "0", *extra]


def test_an_unwritable_output_is_refused_before_the_fit(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cal.toml"
    (tmp_path / f".cal.toml.probe-{os.getpid()}").mkdir()  # the probe cannot be made: as a read-only folder
    import moesim.calibrate.api as api

    def no_fit(*args, **kwargs):
        raise AssertionError("the measurements were read: the check came after the work")

    monkeypatch.setattr(api, "read_measurements", no_fit)
    assert main(calibrate(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"moesim: error: {out}: field '--output': cannot write: ") and "\n" not in err
    assert not out.exists()


def test_a_failed_write_keeps_the_profile_already_there(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cal.toml"
    assert main(calibrate(out)) == 0
    before = out.read_bytes()
    out.chmod(0o640)
    capsys.readouterr()

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(os, "replace", full_disk)
    assert main(calibrate(out, "--name", "second")) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"moesim: error: {out}: field '--output': cannot write: No space left on device"
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.toml"]  # no partial file left beside it
    monkeypatch.undo()
    assert main(calibrate(out, "--name", "second")) == 0
    assert 'name = "second"' in out.read_text(encoding="utf-8")
    assert out.stat().st_mode & 0o777 == 0o640  # a rewritten profile keeps its permissions


def test_a_pipe_or_device_output_is_written_in_place_never_replaced(tmp_path):
    """`-o /dev/null`, `-o /dev/stdout` or a named pipe: written through, the node itself never renamed over (the
    whole-or-nothing rename is for regular files only), nothing made beside it."""
    import stat
    import threading

    from moesim.paths import write_text_file

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text(encoding="utf-8")))
    reader.start()
    write_text_file(fifo, "a,b\n", field="--output")
    reader.join(timeout=10)
    assert got == ["a,b\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.csv"]
