"""The group size an nccl-tests log's own rows imply, held against the one its rows are read with.

nccl-tests prints busbw = algbw × factor(n), the factor of the collective over the communicator's n ranks
(all_reduce 2(n-1)/n; all_gather, reduce_scatter, alltoall (n-1)/n; broadcast, sendrecv 1: NVIDIA/nccl-tests
src/*.cu getBw, doc/PERFORMANCE.md), both columns rounded to 2 decimals. So each row whose algbw is printed
as a and busbw as b says factor(n) ∈ [(b - h)/(a + h), (b + h)/(a - h)], h = 0.005 GB/s the half unit of the
last digit; the rows together say factor(n) lies in the intersection, and since the factor grows with n that
is one contiguous set of n. Wide rows resolve neighbouring n (at a ≈ 400 GB/s an all_reduce's 2(n-1)/n tells
n ≈ 128 from 144); narrow rows allow any n and do not narrow the set.

A log whose rows imply a set of n without the n they are read with (its rank lines, the largest listed rank id
of a cut list, or --ranks) says two things that cannot both hold; `RankCheck.disagrees` flags it and the reader
says so in a warning (moesim/calibrate/nccl_tests.py). Factors that do not depend on n (broadcast, sendrecv)
tell nothing: no check.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from moesim.collectives.base import bus_bw_factor

PRINT_HALF_UNIT_GBPS = 0.005  # GB/s: algbw and busbw are printed with 2 decimals (nccl-tests "%7.2f")
MAX_HINT_RANKS = 16384  # group sizes tried (the largest implied set is cut here: "or more")
# Where the n in use came from (RankCheck.ranks_from)
FROM_RANKS_OPTION = "--ranks"
FROM_RANK_LINES = "rank lines"
FROM_LARGEST_ID = "largest rank id (the rank list is cut)"


@lru_cache(maxsize=8)
def _factors(op: str) -> np.ndarray:
    """factor(op, n) for n = 2 .. MAX_HINT_RANKS (index n - 2)."""
    return np.array([bus_bw_factor(op, n) for n in range(2, MAX_HINT_RANKS + 1)])


def implied_ranks(op: str, rows: list[tuple[float, float]]) -> tuple[int, int | None] | None:
    """(lo, hi) of the group sizes n in 2..MAX_HINT_RANKS whose factor(op, n) lies inside every row's printed
    busbw/algbw interval (rows: printed (algbw, busbw) in GB/s); hi None: every n from lo up fits; lo > hi: no n
    fits every row (the rows disagree among themselves). None: the factor does not depend on n, or no row has
    algbw above the printing's half unit.
    Source: NVIDIA/nccl-tests src/*.cu getBw (busbw = algbw × factor), columns printed "%7.2f"."""
    factors = _factors(op)
    if factors[0] == factors[-1]:
        return None
    h = PRINT_HALF_UNIT_GBPS
    wide = [(a, b) for a, b in rows if a > h]
    if not wide:
        return None
    low = max((b - h) / (a + h) for a, b in wide)
    high = min((b + h) / (a - h) for a, b in wide)
    fits = np.flatnonzero((factors >= low) & (factors <= high)) + 2
    if fits.size == 0:  # no n: lo > hi, placed where the factor crosses the interval
        at = int(np.searchsorted(factors, low)) + 2
        return at, at - 1
    lo, hi = int(fits[0]), int(fits[-1])
    return lo, (None if hi == MAX_HINT_RANKS else hi)


def fits_text(fits: tuple[int, int | None]) -> str:
    """'N = 128', 'N = 16 or 17', 'N = 120 to 140', 'N >= 300', 'no N' for an implied_ranks pair."""
    lo, hi = fits
    if hi is None:
        return f"N >= {lo}"
    if lo > hi:
        return "no N"
    if hi - lo <= 2:
        return "N = " + " or ".join(map(str, range(lo, hi + 1)))
    return f"N = {lo} to {hi}"


@dataclass(frozen=True)
class RankCheck:
    """One log's rows read with `ranks` ranks (from `ranks_from`) against the n their busbw/algbw implies."""

    file: str
    op: str
    ranks: int
    ranks_from: str  # FROM_RANKS_OPTION, FROM_RANK_LINES or FROM_LARGEST_ID
    fits: tuple[int, int | None] | None  # implied_ranks of the rows (None: they tell nothing)
    rows: int  # printed (algbw, busbw) pairs held against it (out-of-place and in-place each count)
    listed: int = 0  # largest listed rank id + 1 (0: no rank lines)

    @property
    def disagrees(self) -> bool:
        if self.fits is None:
            return False
        lo, hi = self.fits
        return self.ranks < lo or (hi is not None and self.ranks > hi)

    def allows(self, n: int) -> bool:
        """Whether the rows' digits allow group size n (True where they tell nothing)."""
        if self.fits is None:
            return True
        lo, hi = self.fits
        return n >= lo and (hi is None or n <= hi)

    def message(self) -> str:
        """The one-line warning of a disagreeing check, naming the file."""
        lines = ""
        if self.listed and self.ranks_from == FROM_RANKS_OPTION:
            lines = f"; its rank lines say {self.listed}"
        if self.fits[0] > self.fits[1]:
            return (f"{self.file}: busbw/algbw of its {self.rows} printed rows fits no single group size of "
                    f"{self.op} (read as {self.ranks} ranks, from {self.ranks_from}{lines}): rows of several runs, "
                    "or edited?")
        return (f"{self.file}: busbw/algbw of its {self.rows} printed rows fits {fits_text(self.fits)} ranks of "
                f"{self.op}, but they are read as {self.ranks} ranks (from {self.ranks_from}{lines}): the rows may "
                "come from another run than the header, or the group size is wrong (--ranks N)")

    def as_dict(self) -> dict:
        lo, hi = self.fits if self.fits else (None, None)
        return {"file": self.file, "ranks": self.ranks, "ranks_from": self.ranks_from, "rows": self.rows,
                "implied_min": lo, "implied_max": hi, "agrees": not self.disagrees}
