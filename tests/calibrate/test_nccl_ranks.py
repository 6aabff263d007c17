"""The group size a log's busbw/algbw digits imply, against the one its rows are read with (calibrate/nccl_ranks.py):
on synthetic logs, on the bundled logs (which ones it fires on) and through the CLI (one deferred warning line, and
records.rank_checks in the JSON)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from moesim.calibrate.nccl_ranks import RankCheck, fits_text, implied_ranks
from moesim.calibrate.nccl_table import read_manifest
from moesim.calibrate.nccl_tests import read_nccl_tests
from moesim.cli import main
from moesim.collectives.base import bus_bw_factor
from moesim.errors import SpecError

DATA = Path(__file__).resolve().parent.parent / "data" / "nccl"
MANIFEST = DATA / "logs.toml"
COLUMNS = ("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw "
           "#wrong\n#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)"
           "  (GB/s)\n")


def printed(op: str, n: int, algbw: float) -> tuple[float, float]:
    """(algbw, busbw) as nccl-tests prints them for n ranks: busbw from the unrounded algbw, both to 2 decimals."""
    return round(algbw, 2), round(algbw * bus_bw_factor(op, n), 2)


def synthetic_log(path: Path, rank_ids, rows_ranks: int, op: str = "all_reduce") -> Path:
    """An nccl-tests log listing `rank_ids` whose rows were computed over `rows_ranks` ranks (512 MiB - 8 GiB)."""
    lines = ["# nThread 1 nGpus 1 minBytes 536870912 maxBytes 8589934592 step: 2(factor) warmup iters: 5 iters: 20",
             "#", "# Using devices"]
    lines += [f"#  Rank {r:3d} Group  0 Pid {1000 + r:6d} on node-{r // 4:03d} device  {r % 4} [0x01] NVIDIA GB200"
              for r in rank_ids]
    text = "\n".join(lines) + "\n" + COLUMNS
    for k, size in enumerate(2**e for e in range(29, 34)):
        time_us = size / (250e9 + 40e9 * k) * 1e6
        a, b = printed(op, rows_ranks, size / time_us / 1e3)
        text += (f"{size:12d} {size // 4:12d}     float     sum      -1 {time_us:8.1f} {a:7.2f} {b:7.2f}      0 "
                 f"{time_us:8.1f} {a:7.2f} {b:7.2f}      0\n")
    path.write_text(text + "# Avg bus bandwidth    : 600\n")
    return path


def test_wide_rows_tell_128_from_144_and_narrow_rows_allow_a_span():
    wide = [printed("all_reduce", 128, a) for a in (248.917, 300.4, 399.65)]
    assert implied_ranks("all_reduce", wide) == (128, 128)
    narrow = [printed("all_reduce", 128, 1.234)]  # 2 decimals on ~2.5 GB/s: many n fit
    lo, hi = implied_ranks("all_reduce", narrow)
    assert lo < 128 and (hi is None or hi > 144)
    assert implied_ranks("all_gather", [printed("all_gather", 8, 300.0)]) == (8, 8)
    assert implied_ranks("send_recv", [(300.0, 300.0)]) is None  # factor 1 at every n: nothing to say
    assert implied_ranks("all_reduce", [(0.0, 0.0)]) is None  # no row wide enough to print a ratio
    lo, hi = implied_ranks("all_reduce", wide + [printed("all_reduce", 64, 300.0)])  # rows of two runs
    assert lo > hi and fits_text((lo, hi)) == "no N"


def test_fits_text():
    assert fits_text((128, 128)) == "N = 128"
    assert fits_text((16, 17)) == "N = 16 or 17"
    assert fits_text((120, 140)) == "N = 120 to 140"
    assert fits_text((300, None)) == "N >= 300"


def read(path, **kw):
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        got = read_nccl_tests(path, **kw)
    return got, [str(w.message) for w in said]


def test_a_cut_rank_list_whose_rows_say_128_warns_and_is_read_as_the_list_says(tmp_path):
    log = synthetic_log(tmp_path / "cut_all_reduce_perf.log", [143], rows_ranks=128)
    got, said = read(log)
    assert {p.group_size for p in got.collectives} == {144}  # read as the list says, priced so
    (check,) = got.rank_checks
    assert check.disagrees and check.fits == (128, 128) and check.ranks_from.startswith("largest rank id")
    assert said == [check.message()] and said[0].startswith(f"{log}: ")
    assert "fits N = 128 ranks of all_reduce, but they are read as 144 ranks" in said[0]


def test_ranks_below_the_listed_id_is_taken_where_the_rows_rule_the_listed_out(tmp_path):
    log = synthetic_log(tmp_path / "cut_all_reduce_perf.log", [143], rows_ranks=128)
    got, said = read(log, ranks=128)
    assert {p.group_size for p in got.collectives} == {128}
    assert not got.rank_checks[0].disagrees
    assert len(said) == 1 and "its rank lines list rank 143" in said[0] and "rules out 144" in said[0]
    with pytest.raises(SpecError, match="lists rank 143 but --ranks 130 was given"):  # the rows refuse 130
        read_nccl_tests(log, ranks=130)
    agree = synthetic_log(tmp_path / "full_all_reduce_perf.log", range(144), rows_ranks=144)
    with pytest.raises(SpecError, match="lists rank 143 but --ranks 128 was given"):  # the rows allow the list
        read_nccl_tests(agree, ranks=128)


def test_a_full_rank_list_and_its_own_rows_say_nothing(tmp_path):
    got, said = read(synthetic_log(tmp_path / "ok_all_gather_perf.log", range(16), 16, op="all_gather"))
    assert said == [] and got.rank_checks == (RankCheck(got.rank_checks[0].file, "all_gather", 16, "rank lines",
                                                         (16, 16), 10, 16),)


def test_ranks_given_against_the_rows_warns(tmp_path):
    log = synthetic_log(tmp_path / "norank_all_reduce_perf.log", [], rows_ranks=96)
    got, said = read(log, ranks=64)  # 2*95/96 vs 2*63/64: 0.5 %, inside the 2 % check that errs
    assert {p.group_size for p in got.collectives} == {64}
    assert len(said) == 1 and "fits N = 96 ranks" in said[0] and "read as 64 ranks (from --ranks)" in said[0]
    with pytest.raises(SpecError, match="fits N = 96"):  # no rank lines, no --ranks: still an error, with the hint
        read_nccl_tests(log)


def manifest_reads(with_ranks: bool) -> dict[str, list[str]]:
    out = {}
    for entry in read_manifest(MANIFEST):
        ranks = entry.get("ranks")
        if not with_ranks and "Rank" in (DATA / entry["file"]).read_text(encoding="utf-8", errors="replace"):
            ranks = None  # as the rank lines say
        try:
            _, said = read(DATA / entry["file"], op=entry.get("op"), ranks=ranks)
        except SpecError:
            continue
        out[entry["file"]] = said
    return out


def test_bundled_logs_it_fires_on():
    """With logs.toml's ranks only the GB200 2-rack log warns (its one rank line is the 1-rack block's, see
    SOURCES.md "Group sizes"); read as their rank lines say, that log fires the check itself; with the 64 ranks the
    SHARP log's job file names, that log fires it."""
    said = manifest_reads(with_ranks=True)
    assert len(said) == len(read_manifest(MANIFEST))
    assert {f for f, w in said.items() if w} == {"gb200-coreweave-2rack_all_reduce_perf.log"}
    assert "rules out 144" in said["gb200-coreweave-2rack_all_reduce_perf.log"][0]
    by_lines = manifest_reads(with_ranks=False)
    assert {f for f, w in by_lines.items() if w} == {"gb200-coreweave-2rack_all_reduce_perf.log"}
    assert "fits N = 128 ranks of all_reduce, but they are read as 144" in \
        by_lines["gb200-coreweave-2rack_all_reduce_perf.log"][0]
    _, sharp = read(DATA / "h100-coreweave-8node-sharp_all_reduce_perf.log", ranks=64)
    assert len(sharp) == 1 and "fits N = 96 ranks" in sharp[0]


def test_calibrate_says_it_once_after_success_and_in_the_json(tmp_path, capsys):
    log = DATA / "gb200-coreweave-2rack_all_reduce_perf.log"
    argv = ["calibrate", str(log), "--hardware", "gb200-nvl72", "-o", str(tmp_path / "c.toml"), "-q", "--bootstrap",
            "0", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"moesim: warning: {log}: busbw/algbw")
    (check,) = json.loads(out)["records"]["rank_checks"]
    assert check == {"file": str(log), "ranks": 144, "ranks_from": "largest rank id (the rank list is cut)",
                     "rows": 12, "implied_min": 128, "implied_max": 128, "agrees": False}
