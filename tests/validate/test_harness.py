"""End-to-end harness runs at world size 2 via torch.multiprocessing (file:// rendezvous, no ports).

Checks the JSONL record structure, resume (finished keys are skipped, a line cut short by a crash
is tolerated), timing sanity (positive, layer >= every phase), world-size skipping, and that a peer
that stops answering ends the run with a clear error after --timeout-s.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from validate.config import load_sweep
from validate.records import append_record, config_key, read_records
from validate.run import launch_local

LAYER_A = """
[defaults]
world_size = 2
warmup = 1
repeats = 3
tokens_per_rank = 64
d_model = 16
d_ff = 32

[[layer]]
name = "a"
experts_per_rank = 2
capacity_factor = 1.25
"""

LAYER_B = """
[[layer]]
name = "b-drops"
experts_per_rank = 1
top_k = 2
capacity_factor = 0.5

[[layer]]
name = "needs-4"
world_size = 4
experts_per_rank = 1
"""

COLLECTIVE = """
[[collective]]
name = "c"
ops = ["all_to_all_single", "all_reduce", "all_gather", "reduce_scatter"]
sizes_bytes = [1024, 65536]
warmup = 1
repeats = 3
"""

LAYER_KEYS = {"schema_version", "kind", "key", "created_utc", "env", "config", "derived", "phases",
              "bytes", "tokens", "dropped_token_fraction", "expert_flops_per_rank_forward",
              "expert_flops_per_rank_forward_mean", "peak_memory_bytes", "peak_memory_kind",
              "status", "wall_s"}
PHASES = {"router", "router_matmul", "router_gating", "dispatch_permute", "dispatch_a2a", "expert_compute",
          "combine_a2a", "combine_unpermute", "backward", "layer", "layer_unsynced", "grad_sync"}
STATS = {"median_s", "p10_s", "p90_s", "min_s", "max_s", "mean_s", "n"}
ENV = {"torch_version", "backend", "device", "device_name", "world_size", "hostname", "num_threads"}


def _run(tmp_path, sweep_text, out, extra=()):
    sweep = tmp_path / f"sweep{len(list(tmp_path.glob('sweep*')))}.toml"
    sweep.write_text(sweep_text)
    launch_local(2, ["--sweep", str(sweep), "--out", str(out), "--timeout-s", "60", *extra],
                 str(tmp_path))


def _check_layer_record(rec):
    assert LAYER_KEYS <= rec.keys()
    assert rec["schema_version"] == 1 and rec["kind"] == "switch_layer" and rec["status"] == "ok"
    assert ENV <= rec["env"].keys()
    assert rec["env"]["world_size"] == 2 and rec["env"]["backend"] == "gloo"
    assert rec["env"]["num_threads"] == 1
    assert rec["phases"].keys() == PHASES
    for name, st in rec["phases"].items():
        assert st.keys() == STATS, name
        assert 0 < st["min_s"] <= st["p10_s"] <= st["median_s"] <= st["p90_s"] <= st["max_s"], name
        assert st["n"] == rec["config"]["repeats"]
    ph = rec["phases"]
    inner = PHASES - {"layer", "layer_unsynced", "grad_sync"}
    for key in ("median_s", "min_s", "max_s", "p10_s", "p90_s"):
        assert ph["layer"][key] >= max(ph[p][key] for p in inner)
        # per repeat, router = router_matmul + router_gating on each rank (then the max over ranks), so
        # every order statistic of router is at least that of either part
        assert ph["router"][key] >= max(ph["router_matmul"][key], ph["router_gating"][key])
    assert ph["router"]["max_s"] <= ph["router_matmul"]["max_s"] + ph["router_gating"]["max_s"] * (1 + 1e-12)
    b = rec["bytes"]
    d, elem = rec["config"]["d_model"], rec["derived"]["element_bytes"]
    assert 0 < b["dispatch_bytes_per_rank_mean"] <= b["dispatch_bytes_per_rank_max"]
    assert b["dispatch_bytes_per_rank_max"] % (d * elem) == 0
    assert b["dispatch_remote_bytes_per_rank_max"] <= b["dispatch_bytes_per_rank_max"]
    assert b["dispatch_bytes_per_rank_max"] <= b["dispatch_bytes_capacity_padded_per_rank"]
    t = rec["tokens"]
    assert t["assignments_total"] == 2 * rec["derived"]["assignments_per_rank"]
    assert rec["dropped_token_fraction"] == pytest.approx(
        1 - t["kept_assignments_total"] / t["assignments_total"])
    assert rec["expert_flops_per_rank_forward"] == 4 * t["received_rows_per_rank_max"] * d * rec["config"]["d_ff"]
    assert rec["peak_memory_bytes"] > 0 and rec["peak_memory_kind"] == "cpu_ru_maxrss_process_peak"


@pytest.mark.slow
def test_end_to_end_resume_and_structure(tmp_path):
    out = tmp_path / "results.jsonl"
    _run(tmp_path, LAYER_A + COLLECTIVE, out)
    first, bad = read_records(out)
    assert bad == 0
    assert [r["kind"] for r in first] == ["switch_layer"] + ["collective"] * 4
    _check_layer_record(first[0])
    assert first[0]["dropped_token_fraction"] < 0.5
    for rec in first[1:]:
        assert rec["status"] == "ok" and rec["schema_version"] == 1
        assert [p["bytes"] for p in rec["points"]] == [1024, 65536]
        for p in rec["points"]:
            assert 0 < p["min_s"] <= p["median_s"] <= p["max_s"]
            assert p["algbw_bytes_per_s"] == pytest.approx(p["bytes"] / p["median_s"])
        assert rec["fit"] is not None and {"alpha_s", "beta_s_per_byte"} <= rec["fit"].keys()
    assert {r["config"]["op"] for r in first[1:]} == {"all_to_all_single", "all_reduce",
                                                      "all_gather", "reduce_scatter"}

    # a writer killed mid-line leaves a partial record: resume must ignore it and start a new line
    with out.open("a") as f:
        f.write('{"schema_version": 1, "kind": "switch_la')
    _run(tmp_path, LAYER_A + LAYER_B + COLLECTIVE, out)
    second, bad = read_records(out)
    assert bad == 1
    added = second[len(first):]
    assert [r["config"]["name"] for r in added] == ["b-drops"]   # a + collectives resumed, needs-4 skipped
    _check_layer_record(added[0])
    assert added[0]["dropped_token_fraction"] > 0.2
    assert len({r["key"] for r in second}) == len(second)

    # a third run has nothing to do
    _run(tmp_path, LAYER_A + LAYER_B + COLLECTIVE, out)
    assert len(read_records(out)[0]) == len(second)
    for line in out.read_text().splitlines()[-1:]:
        json.loads(line)


@pytest.mark.slow
def test_error_records_are_retried_unless_skip_errored(tmp_path):
    out = tmp_path / "results.jsonl"
    cfg = load_sweep_text(tmp_path, LAYER_A).layers[0]
    key = config_key("switch_layer", asdict(cfg), 2, "gloo")
    append_record(out, {"schema_version": 1, "kind": "switch_layer", "key": key,
                        "config": asdict(cfg), "status": "error", "error": "earlier failure"})
    _run(tmp_path, LAYER_A, out, ["--skip-errored"])
    assert [r["status"] for r in read_records(out)[0]] == ["error"]
    _run(tmp_path, LAYER_A, out)
    assert [r["status"] for r in read_records(out)[0]] == ["error", "ok"]


def load_sweep_text(tmp_path, text):
    path = tmp_path / "parse.toml"
    path.write_text(text)
    return load_sweep(path)


@pytest.mark.slow
def test_hung_peer_ends_with_clear_error_after_timeout(tmp_path):
    out = tmp_path / "results.jsonl"
    mine = tmp_path / "mine.toml"
    mine.write_text(LAYER_A)
    other = tmp_path / "other.toml"   # rank 1 has nothing to run, then idles without collectives
    other.write_text(LAYER_A.replace("world_size = 2", "world_size = 3"))
    argv = lambda p: ["--sweep", str(p), "--out", str(out), "--timeout-s", "2"]  # noqa: E731
    start = time.monotonic()
    with pytest.raises(mp.ProcessRaisedException) as info:
        launch_local(2, [argv(mine), argv(other)], str(tmp_path), linger_s=[0.0, 60.0])
    # the 2 s timeout ended it, not rank 1's 60 s linger; the bound leaves room for spawning two torch processes
    # on a loaded box (15 s, against a 20 s linger, was exceeded at load average 8: 15.3 s)
    assert time.monotonic() - start < 45
    text = str(info.value)
    assert "HarnessError" in text and "config 'a'" in text and "--timeout-s=2" in text
    recs = read_records(out)[0]
    assert [r["status"] for r in recs] == ["error"] and "--timeout-s=2" in recs[0]["error"]


def test_append_is_keyed_and_a_key_is_never_written_twice(tmp_path):
    out = tmp_path / "results.jsonl"
    rec = {"schema_version": 1, "kind": "collective", "key": "k1", "status": "ok"}
    assert append_record(out, rec) is True
    assert append_record(out, dict(rec, note="a second writer")) is False   # same key, already ok
    assert append_record(out, dict(rec, key="k2", status="error")) is True
    assert append_record(out, dict(rec, key="k2")) is True                   # an error may be retried
    assert append_record(out, dict(rec, key="k2")) is False
    assert [(r["key"], r["status"]) for r in read_records(out)[0]] == [("k1", "ok"), ("k2", "error"), ("k2", "ok")]


def test_corrupt_lines_are_skipped_with_a_warning_naming_file_and_line(tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    good = json.dumps({"key": "k1", "status": "ok"})
    out.write_bytes(good.encode() + b"\n\xff\xfe not utf-8\n{\"key\": \n[1, 2]\n" + good.encode()[:-3])
    records, bad = read_records(out)
    assert [r["key"] for r in records] == ["k1"] and bad == 4
    err = capsys.readouterr().err
    for line, why in ((2, "that is not UTF-8"), (3, "not valid JSON"), (4, "that is not a JSON object"),
                      (5, "cut short")):
        assert f"{out}:{line}: skipped a line {why}" in err


SLOW_SWEEP = """
[defaults]
world_size = 2
warmup = 1
repeats = {repeats}

[[layer]]
name = "k"
tokens_per_rank = [128, 192, 256, 320, 384, 448, 512, 576]
d_model = 64
d_ff = 128
experts_per_rank = 1
capacity_factor = 1.0
"""


def _workers_of(out) -> list[int]:
    """Pids of processes (that this test started) whose command line names `out`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(out).encode() in cmdline and int(proc.name) != os.getpid():
                pids.append(int(proc.name))
    return pids


def _torchrun(sweep, out):
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "validate.run", "--sweep", str(sweep), "--out", str(out), "--timeout-s", "30"],
                            cwd=root, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


@pytest.mark.slow
def test_killing_torchruns_group_mid_sweep_leaves_each_record_once(tmp_path):
    # issue #14: killing torchrun's process group left both ranks running (torchrun starts workers in
    # new sessions) and appending; a rerun then wrote 29 ok records for 17 configurations
    sweep = tmp_path / "slow.toml"
    sweep.write_text(SLOW_SWEEP.format(repeats=20))
    out = tmp_path / "results.jsonl"
    first = _torchrun(sweep, out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_records(out)[0]) < 1:
        time.sleep(0.2)
    assert read_records(out)[0], first.stderr.read().decode()[-2000:] if first.poll() is not None else "no record"
    os.killpg(first.pid, signal.SIGKILL)   # the launcher's whole group, as a scheduler's cancel does
    first.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _workers_of(out):
        time.sleep(0.2)
    assert not _workers_of(out), "ranks outlived their launcher"
    written = len(read_records(out)[0])
    time.sleep(1.0)
    assert len(read_records(out)[0]) == written          # nobody writes after the kill
    assert written < 8                                    # and the kill did land mid-sweep

    second = _torchrun(sweep, out)
    assert second.wait(timeout=300) == 0, second.stderr.read().decode()[-2000:]
    records = read_records(out)[0]
    keys = [r["key"] for r in records if r["status"] == "ok"]
    assert len(keys) == 8 and len(set(keys)) == 8        # each configuration exactly once


@pytest.mark.parametrize("extra,fragment", [
    (["--timeout-s", "inf"], "--timeout-s must be a number of seconds"),
    (["--timeout-s", "nan"], "--timeout-s must be a number of seconds"),
    (["--timeout-s", "-1"], "--timeout-s must be a number of seconds"),
])
def test_bad_harness_options_exit_2_with_one_line(tmp_path, capsys, extra, fragment):
    from validate.run import main

    sweep = tmp_path / "s.toml"
    sweep.write_text(LAYER_A)
    assert main(["--sweep", str(sweep), "--out", str(tmp_path / "o.jsonl"), *extra]) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("[validate] RANK not set")]
    assert len(errors) == 1 and errors[0].startswith("validate.run: error:") and fragment in errors[0]


def test_non_utf8_sweep_names_the_file(tmp_path, capsys):
    from validate.run import main

    sweep = tmp_path / "s.toml"
    sweep.write_bytes(b"[defaults]\nname = '\xff'\n")
    assert main(["--sweep", str(sweep), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert f"{sweep}: sweep file is not UTF-8" in capsys.readouterr().err


def test_harness_and_moesim_readers_skip_the_same_lines_with_the_same_words():
    from moesim.jsonl import parse_jsonl_bytes
    from validate.records import parse_jsonl_lines

    data = (b'{"key": "a"}\n\xff\n{"key": \n[1]\n' + b"[" * 5000 + b"]" * 5000 + b'\n{"key": "b"}\n{"cut')
    objects, warnings = parse_jsonl_lines(data, "f.jsonl")
    theirs = parse_jsonl_bytes(data, "f.jsonl")
    assert objects == list(theirs.objects) and warnings == list(theirs.warnings)
    assert [n for n, _ in objects] == [1, 6] and len(warnings) == 5


def test_cpu_clock_records_say_which_clock_timed_each_phase_and_get_their_own_key(tmp_path, capsys):
    """`--clock cpu` (world size 1 here): compute phases, backward and the layer by CPU time, collective phases
    wall-clock; the record says so, and the same configuration measured by the wall clock is another record."""
    from validate.run import main

    sweep = tmp_path / "one.toml"
    sweep.write_text(LAYER_A.replace("world_size = 2", "world_size = 1"))
    out = tmp_path / "o.jsonl"
    assert main(["--sweep", str(sweep), "--out", str(out), "--clock", "cpu", "--only", "layers"]) == 0
    assert main(["--sweep", str(sweep), "--out", str(out), "--only", "layers"]) == 0
    cpu, wall = read_records(out)[0]
    assert cpu["clock"] == "cpu" and wall["clock"] == "wall" and cpu["key"] != wall["key"]
    clocks = cpu["phase_clocks"]
    assert clocks["expert_compute"] == clocks["backward"] == clocks["layer_unsynced"] == "cpu"
    assert clocks["dispatch_a2a"] == clocks["combine_a2a"] == clocks["grad_sync"] == "wall"
    assert set(wall["phase_clocks"].values()) == {"wall"}


def test_world_size_skips_say_what_to_do(tmp_path, capsys):
    """Session 21 (newuser4): the bundled CPU sweep at --nproc-per-node 4 ran its 4 collectives and skipped its 13
    layer cases ("needs world_size=2, running 4") without saying how to run them at 4; the harness now says so."""
    from validate.run import main

    sweep = tmp_path / "two.toml"
    sweep.write_text(LAYER_A)  # world_size 2; this test's run has world size 1
    assert main(["--sweep", str(sweep), "--out", str(tmp_path / "o.jsonl"), "--only", "layers"]) == 0
    err = capsys.readouterr().err
    assert ("1 of 1 configurations were not run: the sweep gives them world_size 2, this run has 1 rank; run with "
            f"--nproc-per-node 2, or set world_size = [2, 1] in {sweep} ([defaults] or the entry; a list runs each "
            "size") in err
    assert not (tmp_path / "o.jsonl").exists() or not (tmp_path / "o.jsonl").read_text().strip()
