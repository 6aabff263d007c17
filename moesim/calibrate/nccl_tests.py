"""Reading the standard text output of NVIDIA nccl-tests (all_reduce_perf, alltoall_perf, ...).

The output (NVIDIA/nccl-tests, src/common.cu; columns in doc/PERFORMANCE.md) is:
  '#' header lines: an optional "# Collective test starting: all_reduce_perf" (nccl-tests >= 2.13),
    "# Using devices" and one "#  Rank  r Group g Pid p on HOST device d [bus] NAME" line per rank,
    then the column titles
      size count type redop root | time algbw busbw #wrong | time algbw busbw #wrong
    (out-of-place, then in-place) and a units line: (B) (elements) (us) (GB/s) (GB/s).
  one row per message size.
Size S follows nccl-tests' convention, which moesim's collectives share (base.py); time is in
microseconds, algbw = S/t and busbw = algbw × factor in decimal GB/s (1 GB/s = 1e9 bytes/s).
Lines an MPI launcher prefixes ("[1,0]<stdout>:") are unwrapped; launcher and NCCL INFO chatter
(lines that are neither '#' lines nor rows starting with a number) is ignored. Every row must
parse, its algbw must equal S/t and its busbw/algbw the factor of the collective over the counted
ranks (a mismatch means a wrong collective or rank count); otherwise a SpecError names file:line.

Layout variants real logs carry (../shared/reference/wave2.md §2; tests/data/nccl/SOURCES.md):
  - launcher prefixes: Open MPI "[1,0]<stdout>:", srun --label " 0: " / "0: " (stripped);
  - rank lines with or without "Group", with or without "on HOST", with the leading '#' lost
    (markdown pastes; column titles and units too, as pasted into an issue), and cut rank lists
    ("#  Rank  7 ...", "#  Rank 15 ...", "..."): the group size is the largest rank id + 1, or `ranks`
    when given (nccl-tests --ranks N, for lists cut from the top);
  - the redop column printed blank (alltoall before Sep 2022): the row is one token short;
  - 0-byte rows (-b 0, or alltoall sizes rounded down to 0): skipped, never divided by;
  - fragments of rows split by interleaved NCCL INFO output (first token not an integer): skipped;
  - rows pasted alone, without column titles or rank lines (an issue comment that prints only the rows and the
    footer): read only when the group size is given (--ranks), with the order every nccl-tests layout above ends
    its rows in: size first, the out-of-place and in-place (time algbw busbw #wrong) groups as the last eight
    columns (src/common.cu); every row must then have the same number of columns, and is held to the same checks.
Skipped rows are listed in Measurements.skipped as "file:line: why".

The 2 % check above catches a wrong collective or a grossly wrong rank count; the rows' printed digits can say
more (nccl_ranks.py: at 400 GB/s they tell 128 ranks from 144). Where they rule out the group size the rows are
read with, a warning names the file, the n they allow and where the n in use came from (Measurements.rank_checks
keeps every log's check). --ranks below the largest listed rank id is an error unless the rows' digits allow
--ranks and rule out the listed count: then the rank line is the odd one out (a line pasted from another run)
and a warning says so.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from moesim.calibrate import nccl_ranks
from moesim.calibrate.nccl_ranks import RankCheck, fits_text, implied_ranks
from moesim.calibrate.records import CollectivePoint, Measurements
from moesim.collectives.base import bus_bw_factor
from moesim.errors import SpecError
from moesim.paths import read_bytes_file
from moesim.units import GB_BYTES

US_TO_S = 1e-6
# nccl-tests binaries (NVIDIA/nccl-tests src/*.cu) -> moesim collectives; the others are not modelled.
NCCL_TESTS_OPS = {"all_reduce": "all_reduce", "all_gather": "all_gather", "reduce_scatter": "reduce_scatter",
                  "alltoall": "all_to_all", "broadcast": "broadcast", "sendrecv": "send_recv"}
_NAME_PATTERNS = [(re.compile(p), op) for p, op in (
    (r"all_?reduce", "all_reduce"), (r"all_?gather", "all_gather"), (r"reduce_?scatter", "reduce_scatter"),
    (r"all_?to_?all", "all_to_all"), (r"broadcast|bcast", "broadcast"), (r"send_?recv", "send_recv"))]
_MPI_PREFIX = re.compile(r"^\[\d+,\d+\]<(stdout|stderr)>:")
_SRUN_PREFIX = re.compile(r"^\s*\d+:(\s|$)")  # srun --label: "0: ", right-aligned " 0: " (>= 10 tasks), bare " 0:"
_RANK_LINE = re.compile(r"^#?\s*Rank\s+(\d+)\s+(?:Group\s+\d+\s+)?Pid\s+\d+\s+(?:on\s+(\S+)\s+)?device\b")
# column titles and units whose leading '#' was lost (logs pasted into markdown or issue text)
_BARE_TITLES = re.compile(r"^(size\s+count\s|\(B\)\s)")
_TEST_LINE = re.compile(r"^#\s*Collective test starting:\s*(\S+)")
ALGBW_ABS_TOL = 0.006  # GB/s: the columns are printed with 2 decimals
RELATIVE_TOL = 0.02  # time is printed with 4-6 significant digits; 2 % also absorbs rounding of busbw


def op_from_name(name: str) -> str | None:
    """The moesim collective a test or file name (all_reduce_perf, alltoall_perf.log, ...) refers to."""
    name = name.lower()
    base = name.split("/")[-1]
    for binary, op in NCCL_TESTS_OPS.items():
        if base.startswith(binary + "_perf"):
            return op
    for pattern, op in _NAME_PATTERNS:
        if pattern.search(base):
            return op
    return None


def read_nccl_tests(path: str | Path, op: str | None = None, ranks: int | None = None, *,
                    data: bytes | None = None) -> Measurements:
    """Points of an nccl-tests log.

    The collective comes from the log's "# Collective test starting:" line, else from `op`, else from
    the file name; `op` contradicting the log is an error. `ranks` overrides the group size the rank
    lines give (a log whose rank list was cut). `data`: the file's bytes where the caller has read them
    (records.read_measurements), else they are read here.
    """
    path = Path(path)
    if op is not None and op not in NCCL_TESTS_OPS.values():
        raise SpecError(f"unknown collective '{op}'", file=str(path), value=op, allowed=tuple(NCCL_TESTS_OPS.values()))
    if ranks is not None and (not isinstance(ranks, int) or ranks < 1):
        raise SpecError(f"--ranks must be a positive integer, got {ranks!r}", file=str(path), field="ranks",
                        value=ranks)
    data = read_bytes_file(path, field="measurements") if data is None else data
    lines = data.decode("utf-8-sig", errors="replace").splitlines()
    state = _State(file_op=op or op_from_name(path.name), explicit_op=op, ranks=ranks)
    state.last_line = f"{path}:{max((i for i, text in enumerate(lines, start=1) if text.strip()), default=0)}"
    points: list[CollectivePoint] = []
    for number, raw in enumerate(lines, start=1):
        where = f"{path}:{number}"
        prefix = _MPI_PREFIX.match(raw)
        if prefix and prefix.group(1) == "stderr":
            continue
        line = raw[prefix.end():] if prefix else raw
        label = _SRUN_PREFIX.match(line)
        if label:
            line = line[label.end():]
        stripped = line.strip()
        if stripped.startswith("#") or _RANK_LINE.match(stripped) or _BARE_TITLES.match(stripped):
            state.header_line(stripped, where)
        elif stripped[:1].isdigit():
            points.extend(state.row(stripped, where))
    if not points and state.columns is None and state.untitled:
        points = state.untitled_rows(str(path))
    checks = state.rank_checks(str(path))
    if state.no_ranks_at:
        raise SpecError("no '#  Rank ...' lines before the results: cannot tell the group size (pass --ranks N"
                        f"{state.ranks_hint()})", file=state.no_ranks_at)
    if not points and state.columns is not None and not state.skipped:
        raise SpecError("no nccl-tests result rows found: the column titles are there but no row follows them (did "
                        "the run stop before its first size?)", file=str(path))
    if not points:
        raise SpecError("no nccl-tests result rows found (expected a '#  size  count  type ... time  algbw  busbw' "
                        "header followed by rows)", file=str(path))
    for check in checks:
        if check.disagrees:
            warnings.warn(check.message())
    return Measurements(collectives=tuple(points), sources=(str(path),), skipped=tuple(state.skipped),
                        rank_checks=checks)


# NCCL's own banner, printed once by rank 0 at init (NVIDIA/nccl src/init.cc showVersion: "NCCL version %d.%d.%d%s"),
# with launcher prefixes or a markdown paste before it; nccl-tests >= 2.17 also prints "nccl-library=NNNNN" in its
# "# nccl-tests version" header (NCCL_VERSION_CODE: major x 10000 + minor x 100 + patch, src/nccl.h.in)
_NCCL_VERSION = re.compile(rb"NCCL version (\d+)\.(\d+)\.(\d+)")
_NCCL_LIBRARY = re.compile(rb"nccl-library=(\d)(\d\d)(\d\d)\b")


def read_nccl_version(path: str | Path, *, data: bytes | None = None) -> str:
    """The NCCL version ("2.26.2") a log ran, from its first "NCCL version x.y.z" line, else its nccl-tests header's
    nccl-library=NNNNN; "" where the log prints neither (the version is then a fact of logs.toml, nccl_version)."""
    data = read_bytes_file(Path(path), field="measurements") if data is None else data
    m = _NCCL_VERSION.search(data) or _NCCL_LIBRARY.search(data)
    return ".".join(str(int(g)) for g in m.groups()) if m else ""


_NGPUS = re.compile(rb"^[^\n]*#\s*nThread\s+\d+\s+nGpus\s+(\d+)", re.MULTILINE)


def gpus_in_headers(data: bytes) -> tuple[int, ...]:
    """The `nGpus N` of each '# nThread T nGpus N ...' header line of a log's bytes, sorted (nccl-tests -g N; a log
    of several runs has several); empty where none is printed."""
    return tuple(sorted({int(n) for n in _NGPUS.findall(data)}))


def hosts_in_rank_lines(data: bytes) -> tuple[str, ...]:
    """The distinct host names of a log's '#  Rank r Group g Pid p on HOST device d' lines (launcher prefixes
    unwrapped as read_nccl_tests does), sorted; empty where no rank line names its host (calreport, session 16: how many
    nodes a -g N run spanned)."""
    hosts = set()
    for raw in data.decode("utf-8-sig", errors="replace").splitlines():
        prefix = _MPI_PREFIX.match(raw)
        line = raw[prefix.end():] if prefix else raw
        label = _SRUN_PREFIX.match(line)
        rank = _RANK_LINE.match((line[label.end():] if label else line).strip())
        if rank and rank.group(2):
            hosts.add(rank.group(2))
    return tuple(sorted(hosts))


class _State:
    """Header context while scanning a log: collective, ranks, column layout."""

    def __init__(self, file_op: str | None, explicit_op: str | None, ranks: int | None = None) -> None:
        self.file_op, self.explicit_op, self.forced_ranks = file_op, explicit_op, ranks
        self.last_line = ""  # "file:line" of the log's last non-blank line
        self.no_ranks_at = ""  # "file:line" of the first row of a log without rank lines or --ranks
        self.widest: tuple[float, float, str] = (0.0, 0.0, "")  # (algbw, busbw, where) of its widest row
        self.test_op: str | None = None
        self.ranks: set[int] = set()
        self.in_devices = False
        self.columns: list[str] | None = None
        self.skipped: list[str] = []
        self.printed: dict[int | None, list[tuple[float, float]]] = {}  # n in use (None: unknown) -> (algbw, busbw)
        self.ranks_from: dict[int, tuple[str, int]] = {}  # n in use -> (where it came from, listed rank count)
        self.cut_below_listed: tuple[int, str] | None = None  # (listed count, file:line) where --ranks < listed
        self.untitled: list[tuple[str, str]] = []  # (row, file:line) of rows met before any column titles or rank line

    def header_line(self, line: str, where: str) -> None:
        test = _TEST_LINE.match(line)
        if test:
            self.test_op = op_from_name(test.group(1))
            if self.test_op is None:
                raise SpecError(f"nccl-tests binary '{test.group(1)}' is not a collective moesim models", file=where,
                                allowed=tuple(f"{b}_perf" for b in NCCL_TESTS_OPS))
            if self.explicit_op and self.explicit_op != self.test_op:
                raise SpecError(f"the log measured {self.test_op} but {self.explicit_op} was given", file=where,
                                field="--nccl-op", value=self.explicit_op, allowed=(self.test_op,))
            self.columns = None
            return
        if line.startswith("# Using devices"):
            self.ranks, self.in_devices = set(), True
            return
        rank = _RANK_LINE.match(line)
        if rank:
            self.ranks.add(int(rank.group(1)))
            return
        tokens = line.lstrip("#").split()
        if "size" in tokens and "time" in tokens:
            missing = [c for c in ("size", "time", "algbw", "busbw") if c not in tokens]
            if missing:
                raise SpecError(f"unknown nccl-tests column layout {' '.join(tokens)!r}: no {', '.join(missing)} "
                                "column", file=where)
            self.columns = tokens
        elif self.columns is not None and any(t.startswith("(") for t in tokens):
            if "(us)" not in tokens or "(GB/s)" not in tokens or "(B)" not in tokens:
                raise SpecError(f"unexpected units line {' '.join(tokens)!r}: expected (B), (us) and (GB/s)",
                                file=where)

    def group_size(self, where: str) -> int:
        """Ranks in the measured group: --ranks when given, else the largest rank id listed + 1."""
        listed = max(self.ranks) + 1
        if self.forced_ranks is not None:
            if listed > self.forced_ranks and self.cut_below_listed is None:  # decided once the rows are read
                self.cut_below_listed = (listed, where)
            self.ranks_from.setdefault(self.forced_ranks, (nccl_ranks.FROM_RANKS_OPTION, listed))
            return self.forced_ranks
        cut = len(self.ranks) < listed
        self.ranks_from.setdefault(listed, (nccl_ranks.FROM_LARGEST_ID if cut else nccl_ranks.FROM_RANK_LINES,
                                            listed))
        return listed

    def _below_listed_error(self) -> SpecError:
        listed, where = self.cut_below_listed
        return SpecError(f"the log lists rank {listed - 1} but --ranks {self.forced_ranks} was given", file=where,
                         field="ranks", value=self.forced_ranks, allowed=f">= {listed}")

    def rank_checks(self, file: str) -> tuple[RankCheck, ...]:
        """Each group size the rows were read with against the n their busbw/algbw allows (nccl_ranks.py); a
        --ranks below the largest listed rank id is an error unless the rows allow it and rule the listed out."""
        op = self.test_op or self.file_op
        checks = tuple(RankCheck(file, op, n, how, implied_ranks(op, self.printed.get(n, [])),
                                 len(self.printed.get(n, [])), listed)
                       for n, (how, listed) in self.ranks_from.items())
        if self.cut_below_listed is not None:
            listed = self.cut_below_listed[0]
            check = next(c for c in checks if c.ranks == self.forced_ranks)
            if not check.allows(self.forced_ranks) or check.allows(listed):
                raise self._below_listed_error()
            warnings.warn(f"{file}: its rank lines list rank {listed - 1}, but busbw/algbw of its rows fits "
                          f"{fits_text(check.fits)} ranks and rules out {listed}: read as --ranks "
                          f"{self.forced_ranks}, the rank line taken for one from another run")
        return checks

    def row(self, line: str, where: str) -> list[CollectivePoint]:
        if self.columns is None:
            if self.ranks:
                raise SpecError("a result row before the column titles ('#  size  count  type ...')", file=where)
            self.untitled.append((line, where))  # chatter starting with a digit, or rows pasted without titles
            return []
        tokens = line.split()
        if not tokens[0].isdigit():  # "579.3  0.00 ...": the tail of a row split by interleaved NCCL output
            self.skipped.append(f"{where}: fragment of a row split by other output")
            return []
        if len(tokens) < 2 or not tokens[1].isdigit():  # "8 more processes have sent help message ...": chatter
            self.skipped.append(f"{where}: not a result row")
            return []
        if len(tokens) == len(self.columns) - 1 and "redop" in self.columns:
            # alltoall printed its redop blank (nccl-tests before Sep 2022): the column is there, the token is not
            tokens.insert(self.columns.index("redop"), "")
        if len(tokens) < len(self.columns) and where == self.last_line:  # a log whose writer stopped mid-row
            raise SpecError(f"expected {len(self.columns)} columns ({' '.join(self.columns)}), got {len(tokens)} in "
                            "the log's last line: a row cut short, the log truncated? delete that line to read the "
                            "rows before it", file=where)
        if len(tokens) != len(self.columns):
            raise SpecError(f"expected {len(self.columns)} columns ({' '.join(self.columns)}), got {len(tokens)}",
                            file=where)
        op = self.test_op or self.file_op
        if op is None:
            raise SpecError("cannot tell which collective this log measured: no '# Collective test starting:' "
                            "line and no collective in the file name; rename it (e.g. all_reduce_perf.log) or pass "
                            "the collective explicitly", file=where, allowed=tuple(NCCL_TESTS_OPS.values()))
        if not self.ranks and self.forced_ranks is None:  # an error at the end, with the rank count the rows fit
            self.no_ranks_at = self.no_ranks_at or where
            self._keep_ratio(tokens, where)
            return []
        if self.ranks:
            n = self.group_size(where)
        else:
            n = self.forced_ranks
            self.ranks_from.setdefault(n, (nccl_ranks.FROM_RANKS_OPTION, 0))
        size = _number(tokens[self.columns.index("size")], "size", where, int)
        if size < 0:
            raise SpecError(f"size must be >= 0, got {size}", file=where, field="size")
        if size == 0:
            self.skipped.append(f"{where}: 0-byte row")
            return []
        out = []
        starts = [i for i, name in enumerate(self.columns) if name == "time"]
        for variant, start in zip(("out_of_place", "in_place"), starts):
            if tokens[start] == "N/A":
                continue
            time_s = _number(tokens[start], "time", where) * US_TO_S
            algbw = _number(tokens[start + 1], "algbw", where)
            busbw = _number(tokens[start + 2], "busbw", where)
            if time_s <= 0:
                raise SpecError(f"time must be > 0, got {tokens[start]} us", file=where, field="time")
            try:
                _check_bandwidths(op, n, size, time_s, algbw, busbw, where, listed=len(self.ranks),
                                  forced=self.forced_ranks is not None)
            except SpecError:
                if self.cut_below_listed is not None:  # --ranks below the listed ranks, and the rows refuse it
                    raise self._below_listed_error() from None
                raise
            self.printed.setdefault(n, []).append((algbw, busbw))
            out.append(CollectivePoint(op=op, size_bytes=float(size), group_size=n, time_s=time_s, source=where,
                                       variant=variant, nccl_tests=True))
        return out

    def untitled_rows(self, file: str) -> list[CollectivePoint]:
        """The rows of a log that prints neither column titles nor rank lines (rows pasted alone), read with the
        group size given (--ranks) and the column order every nccl-tests layout ends its rows in: size first, then
        (time algbw busbw #wrong) out of place and in place as the last eight columns (NVIDIA/nccl-tests
        src/common.cu). Lines whose first two tokens are not integers are chatter, as after titles."""
        rows = [(line, where) for line, where in self.untitled if line.split()[1:2] and line.split()[1].isdigit()]
        if not rows:
            return []
        if self.forced_ranks is None:
            raise SpecError("result rows without column titles or '#  Rank ...' lines (the rows pasted alone): pass "
                            "--ranks N to read them in nccl-tests' own column order", file=rows[0][1])
        widths = sorted({len(line.split()) for line, _ in rows})
        if len(widths) != 1 or widths[0] < 10:
            raise SpecError(f"rows without column titles must all have the same number of columns (at least 10: "
                            f"size, count, then two time algbw busbw #wrong groups), got {widths}", file=file)
        self.columns = ["size", "count"] + ["?"] * (widths[0] - 10) + ["time", "algbw", "busbw", "#wrong"] * 2
        return [point for line, where in rows for point in self.row(line, where)]

    def _keep_ratio(self, tokens: list[str], where: str) -> None:
        """Keep the printed (algbw, busbw) of every row of a log without ranks, and its widest out-of-place row
        (the most digits: shown in the hint)."""
        for start in [i for i, name in enumerate(self.columns) if name == "time"]:
            try:
                algbw, busbw = float(tokens[start + 1]), float(tokens[start + 2])
            except (ValueError, IndexError):
                continue
            self.printed.setdefault(None, []).append((algbw, busbw))
            if algbw > self.widest[0] and start == self.columns.index("time"):
                self.widest = (algbw, busbw, where)

    def ranks_hint(self) -> str:
        """'; busbw/algbw = r at FILE:LINE fits N = 16' where every row's printed ratio together fits one to three
        group sizes of the collective's factor (nccl_ranks.implied_ranks); else ''."""
        algbw, busbw, where = self.widest
        op = self.test_op or self.file_op
        fits = implied_ranks(op, self.printed.get(None, [])) if op is not None else None
        if algbw <= 0 or fits is None or fits[1] is None or not 0 <= fits[1] - fits[0] <= 2:
            return ""
        return f"; busbw/algbw = {busbw / algbw:.4f} at {where} fits {fits_text(fits)}"


def _number(token: str, column: str, where: str, kind: type = float):
    try:
        return kind(token)
    except ValueError:
        raise SpecError(f"expected a number in column '{column}', got {token!r}", file=where, field=column,
                        value=token) from None


def _check_bandwidths(op: str, n: int, size: int, time_s: float, algbw: float, busbw: float, where: str,
                      listed: int | None = None, forced: bool = False) -> None:
    """algbw = S/t (GB/s) and busbw = algbw × factor(op, n) (nccl-tests PERFORMANCE.md), within print rounding."""
    expected = size / time_s / GB_BYTES
    if abs(expected - algbw) > ALGBW_ABS_TOL + RELATIVE_TOL * algbw:
        raise SpecError(f"algbw {algbw} GB/s is not size/time = {expected:.4g} GB/s: are time (us) and size (B) "
                        "in the columns nccl-tests prints?", file=where, field="algbw", value=algbw)
    factor = bus_bw_factor(op, n)
    if algbw >= 1.0 and abs(busbw - algbw * factor) > ALGBW_ABS_TOL + RELATIVE_TOL * busbw:
        hint = ""
        if listed is not None and listed != n and not forced:
            hint = f" (the log lists {listed} rank lines, the largest id says {n}: pass --ranks N if the list was cut)"
        elif forced and listed:
            hint = (f" (--ranks {n} was given and this log lists {listed} rank lines; --ranks holds for every log "
                    "of the run: calibrate logs of other group sizes in their own run)")
        elif not forced:
            hint = " (pass --ranks N if the rank list was cut)"
        raise SpecError(f"busbw/algbw = {busbw / algbw:.4g}, but {op} over {n} ranks has factor {factor:.4g}: wrong "
                        f"collective or rank count for this log?{hint}", file=where, field="busbw", value=busbw)
