"""nccl-tests output: the sample logs parse exactly; bad logs give SpecErrors naming file and line.

The samples in data/ are SYNTHETIC (generated from alpha-beta models, marked in their headers) in
the layouts nccl-tests prints: the plain 2.x layout, and the >= 2.13 layout under mpirun with
"[1,0]<stdout>:" prefixes, NCCL INFO chatter and N/A in the in-place #wrong column. The format
matches published logs, e.g. a 16-rank 2-node H100 all_reduce_perf run in
lessizzmore/create-a3mega-ztan-fork: ztan-NCCL-test-result (commit 02dd8f45), whose last row is
checked in test_published_row_units.
"""

import pytest

from moesim.calibrate.nccl_tests import _check_bandwidths, op_from_name, read_nccl_tests
from moesim.calibrate.records import read_measurements
from moesim.errors import SpecError

from calibrate_synth import DATA

AR = DATA / "all_reduce_perf_16ranks_2nodes.synthetic.log"
A2A = DATA / "alltoall_perf_8ranks.synthetic.log"


def test_all_reduce_sample_parses_exactly():
    pts = read_nccl_tests(AR).collectives
    assert len(pts) == 22  # 11 sizes, out-of-place and in-place
    assert {(p.op, p.group_size) for p in pts} == {("all_reduce", 16)}
    assert [p.size_bytes for p in pts[::2]] == [1024 * 4**i for i in range(11)]
    first, first_in = pts[0], pts[1]
    assert (first.variant, first.time_s) == ("out_of_place", pytest.approx(120.0e-6, abs=1e-15))
    assert (first_in.variant, first_in.time_s) == ("in_place", pytest.approx(120.4e-6, abs=1e-15))
    assert (pts[-2].size_bytes, pts[-2].time_s, pts[-1].time_s) == (1073741824, pytest.approx(5607.2e-6),
                                                                     pytest.approx(5699.0e-6))
    assert pts[0].source == f"{AR}:28"


def test_alltoall_sample_under_mpirun_parses_exactly():
    pts = read_nccl_tests(A2A).collectives
    assert len(pts) == 14 and {(p.op, p.group_size) for p in pts} == {("all_to_all", 8)}
    assert (pts[0].size_bytes, pts[0].time_s, pts[1].time_s) == (8192, pytest.approx(27.67e-6), pytest.approx(28.10e-6))
    assert (pts[-2].size_bytes, pts[-2].time_s, pts[-1].time_s) == (2147483648, pytest.approx(6358.2e-6),
                                                                     pytest.approx(6240.7e-6))


def test_read_measurements_tells_logs_from_jsonl():
    m = read_measurements([AR, A2A])
    assert len(m.collectives) == 36 and not m.layers and m.sources == (str(AR), str(A2A))


def test_published_row_units():
    # 8 GiB all_reduce over 16 H100s: 47535 us, algbw 180.71, busbw 338.82 GB/s (create-a3mega-ztan-fork)
    _check_bandwidths("all_reduce", 16, 8589934592, 47535e-6, 180.71, 338.82, "published")
    with pytest.raises(SpecError, match="algbw 180.71 GB/s is not size/time"):  # time read as ms
        _check_bandwidths("all_reduce", 16, 8589934592, 47535e-3, 180.71, 338.82, "published")
    with pytest.raises(SpecError, match="wrong collective or rank count"):
        _check_bandwidths("all_gather", 16, 8589934592, 47535e-6, 180.71, 338.82, "published")


@pytest.mark.parametrize("name, op", [("all_reduce_perf.log", "all_reduce"), ("run-allgather-2n.txt", "all_gather"),
                                      ("alltoall_perf_mpi", "all_to_all"), ("reduce_scatter.out", "reduce_scatter"),
                                      ("sendrecv_perf", "send_recv"), ("results.txt", None)])
def test_op_from_name(name, op):
    assert op_from_name(name) == op


def _log(tmp_path, name, body_rows, ranks=2, extra_header=""):
    header = [extra_header, "# Using devices"] if extra_header else ["# Using devices"]
    header += [f"#  Rank {r:2d} Group  0 Pid  {100 + r} on host device {r} [0x1] GPU" for r in range(ranks)]
    header += ["#       size         count      type   redop    root     time   algbw   busbw #wrong     time   "
               "algbw   busbw #wrong",
               "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  "
               "(GB/s)"]
    path = tmp_path / name
    path.write_text("\n".join(header + body_rows) + "\n")
    return path


def _row(time="100.0", algbw="10.49", busbw="10.49", in_place=True):
    """A 1 MiB all_reduce result row; `in_place=False` drops the in-place columns."""
    row = f"     1048576        262144     float     sum      -1  {time:>7}  {algbw:>6}  {busbw:>6}      0"
    return row + ("    100.0   10.49   10.49      0" if in_place else "")


GOOD_ROW = _row()


def test_good_minimal_log(tmp_path):
    pts = read_nccl_tests(_log(tmp_path, "all_reduce_perf.log", [GOOD_ROW])).collectives
    assert [(p.size_bytes, p.time_s, p.group_size) for p in pts] == [(1048576, pytest.approx(1e-4), 2)] * 2


@pytest.mark.parametrize("row, message", [
    (_row(in_place=False), r":6: expected 13 columns"),
    (_row(time="fast"), r":6: field 'time': expected a number in column 'time', got 'fast'"),
    (_row(algbw="1.05", busbw="1.05"), r":6: field 'algbw': algbw 1.05 GB/s is not size/time"),
    (_row(busbw="5.24"), r":6: field 'busbw': busbw/algbw = 0.4995, but all_reduce over 2 ranks has factor 1"),
    (_row(time="0.0"), r":6: field 'time': time must be > 0"),
])
def test_bad_rows(tmp_path, row, message):
    path = _log(tmp_path, "all_reduce_perf.log", [row])
    with pytest.raises(SpecError, match=message) as info:
        read_nccl_tests(path)
    assert str(path) in str(info.value)


def test_unknown_collective_needs_a_name_or_option(tmp_path):
    path = _log(tmp_path, "results.txt", [GOOD_ROW])
    with pytest.raises(SpecError, match=r"results.txt:6: cannot tell which collective"):
        read_nccl_tests(path)
    assert read_nccl_tests(path, op="all_reduce").collectives[0].op == "all_reduce"
    assert read_measurements([path], nccl_op="all_reduce").collectives[0].op == "all_reduce"


def test_log_line_wins_and_conflicts_are_errors(tmp_path):
    line = "# Collective test starting: all_reduce_perf"
    path = _log(tmp_path, "results.txt", [GOOD_ROW], extra_header=line)
    assert read_nccl_tests(path).collectives[0].op == "all_reduce"
    with pytest.raises(SpecError, match=r":1: field '--nccl-op': the log measured all_reduce but all_gather was given"):
        read_nccl_tests(path, op="all_gather")
    gather = _log(tmp_path, "x.txt", [GOOD_ROW], extra_header="# Collective test starting: gather_perf")
    with pytest.raises(SpecError, match="'gather_perf' is not a collective moesim models"):
        read_nccl_tests(gather)


def test_missing_ranks_and_rows(tmp_path):
    no_ranks = tmp_path / "all_reduce_perf.log"
    no_ranks.write_text("#       size   count  type  redop  root  time  algbw  busbw  #wrong\n"
                        "1024 256 float sum -1 10.0 0.10 0.10 0\n")
    with pytest.raises(SpecError, match=r":2: no '#  Rank \.\.\.' lines"):
        read_nccl_tests(no_ranks)
    empty = _log(tmp_path, "all_gather_perf.log", [])
    with pytest.raises(SpecError, match="no nccl-tests result rows"):
        read_nccl_tests(empty)
    units = tmp_path / "all_reduce_perf2.log"
    units.write_text(_log(tmp_path, "tmp.log", [GOOD_ROW]).read_text().replace("(us)", "(ms)"))
    with pytest.raises(SpecError, match="unexpected units line"):
        read_nccl_tests(units)


# Session 23 (newlogs13): an issue comment that prints only the rows and the footer (NVIDIA/nccl-tests#294's second
# run, tests/data/nccl/h100-crusoe-2node_all_reduce_perf.log) was "no nccl-tests result rows found".
UNTITLED_ROWS = ["   134217728      33554432     float     sum      -1    738.7  181.69  340.67      0    739.9  181.40  "
                 "340.12      0",
                 "   268435456      67108864     float     sum      -1   1278.7  209.93  393.62      0   1259.7  213.10  "
                 "399.57      0"]


def test_rows_pasted_without_titles_read_with_the_ranks_given(tmp_path):
    path = tmp_path / "all_reduce_perf.log"
    path.write_text("\n".join(UNTITLED_ROWS + ["host:1:1 [0] NCCL INFO comm 0x1 rank 0 nranks 16 - Destroy COMPLETE",
                                               "# Out of bounds values : 0 OK", "# Avg bus bandwidth    : 1.0"]) + "\n")
    pts = read_nccl_tests(path, ranks=16).collectives
    assert [(p.size_bytes, p.variant, p.group_size) for p in pts] == [
        (134217728, "out_of_place", 16), (134217728, "in_place", 16),
        (268435456, "out_of_place", 16), (268435456, "in_place", 16)]
    assert (pts[0].time_s, pts[1].time_s, pts[3].time_s) == (pytest.approx(738.7e-6), pytest.approx(739.9e-6),
                                                             pytest.approx(1259.7e-6))
    assert pts[2].source == f"{path}:2"
    # without the group size the rows cannot be checked: a clear error naming the first row and the way out
    with pytest.raises(SpecError, match=r":1: result rows without column titles .* pass --ranks N"):
        read_nccl_tests(path)
    # the rows are held to the same checks: 8 ranks is not what busbw/algbw = 1.875 says
    with pytest.raises(SpecError, match="all_reduce"):
        read_nccl_tests(path, ranks=8)


def test_untitled_rows_of_different_widths_are_refused(tmp_path):
    path = tmp_path / "all_reduce_perf.log"
    path.write_text(UNTITLED_ROWS[0] + "\n" + UNTITLED_ROWS[1].replace("   -1 ", " ") + "\n")
    with pytest.raises(SpecError, match=r"same number of columns .* got \[12, 13\]"):
        read_nccl_tests(path, ranks=16)
