"""The drop fraction's binomial pmf without importing scipy.stats (session 16, newcomer2): that import was most of a
cold `moesim search` of the README's first command (2.1 of the command's 5 s wall on a busy box). The values stay
scipy.stats.binom.pmf's bit for bit; the speed itself is in benchmarks/RESULTS.md, not asserted here."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from moesim import capacity


@pytest.mark.parametrize("m, experts", [(1, 2), (512, 2048), (1024, 128), (4096, 8), (65_536, 64), (10**7, 256),
                                        (3_000_000_001, 2048)])
def test_binom_pmf_is_scipy_stats_bit_for_bit(m, experts):
    p = 1.0 / experts
    mean = m * p
    x = np.arange(max(0, int(mean) - 3000), min(m, int(mean) + 3000) + 1)
    assert np.array_equal(capacity.binom_pmf(x, m, p), stats.binom.pmf(x, m, p))


def test_drop_fraction_is_unchanged(monkeypatch):
    cases = [(t, e, k, c) for t in (512, 4096, 2**20) for e in (8, 128, 2048) for k in (1, 2)
             for c in (1, 2, 5, 40, 700)]
    new = [capacity.expected_drop_fraction(*case) for case in cases]
    monkeypatch.setattr(capacity, "binom_pmf", lambda x, m, p: stats.binom.pmf(x, m, p))
    assert new == [capacity.expected_drop_fraction(*case) for case in cases]


def test_a_search_and_an_estimate_do_not_import_scipy_stats():
    code = ("import contextlib, io, sys\nfrom moesim.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['estimate', 'switch-c-2048-tpu-v3']) == 0\n"
            "    assert main(['search', 'switch-base-128-tpu-v3', '--devices', '8', '-q']) == 0\n"
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_scipy_without_the_ufunc_takes_scipy_stats(monkeypatch):
    """scipy.special._ufuncs._binom_pmf exists from scipy 1.14 (scipy PR #20393 moved stats._boost there); pyproject
    allows scipy >= 1.10, where the import fails and binom_pmf takes scipy.stats: the same values (session 16 review:
    the fallback was not run by any test)."""
    monkeypatch.setitem(sys.modules, "scipy.special._ufuncs", None)  # `from scipy.special._ufuncs import` fails
    with pytest.raises(ImportError):
        from scipy.special._ufuncs import _binom_pmf  # noqa: F401
    m, p = 4096, 1.0 / 8
    x = np.arange(m + 1)
    assert np.array_equal(capacity.binom_pmf(x, m, p), stats.binom.pmf(x, m, p))
    assert capacity.expected_drop_fraction(512, 8, 2, 130) > 0
