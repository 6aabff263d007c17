"""ZB-H1 on uneven stages: the closed form the simulator's order follows (session 22, zbvslot; not in the estimate).

The simulator's ZB-H1 order (des.orders, greedy on unit times) is 1F1B with one more warm-up forward, I for B, and
device d's last m − (p − 1 − d) W's after its last I. Each device's last I ends on the 1F1B path with B = I (Alpa,
Zheng et al. OSDI'22 §5 Eq. 2), then its tail runs: T = max_d [ΣF + Σ_{s>=d} I_s + (m − 1)·max(F + I) +
(m − (p − 1 − d))·W_d] (DERIVED). The estimate's row m·t + (p − 1)(F + B − W) on the slowest stage is that at equal
stages and too slow with the head on the last stage (history: Session 22 (zbvslot)); this pins the form down for
the lane that ships it.
"""

from __future__ import annotations

import pytest

from moesim.des.orders import device_order, device_spans


def _closed(m: int, p: int, st) -> float:
    peak = max(f + i for f, i, _ in st)
    forwards = sum(f for f, _, _ in st)
    return max(forwards + sum(st[s][1] for s in range(d, p)) + (m - 1) * peak + (m - (p - 1 - d)) * st[d][2]
               for d in range(p))


def _row(m: int, p: int, st) -> float:
    f, i, w = max(st, key=sum)
    return m * (f + i + w) + (p - 1) * (f + i - w)


@pytest.mark.parametrize("p, m", [(4, 4), (4, 8), (8, 8), (8, 16)])
def test_the_ws_a_device_runs_after_its_last_input_gradient(p, m):
    for d in range(p):
        kinds = [s.kind for s in device_order("zb-h1", m, p, 1, d)]
        last_i = max(k for k, kind in enumerate(kinds) if kind == "I")
        assert kinds[last_i + 1:] == ["W"] * (m - (p - 1 - d))


@pytest.mark.parametrize("last", [1.2, 1.5])
@pytest.mark.parametrize("base", [(1.0, 1.0, 1.0), (1.0, 2.0, 1.0), (1.0, 1.5, 0.5)])
@pytest.mark.parametrize("p, m", [(2, 2), (4, 4), (4, 9), (8, 8), (8, 20)])
def test_the_closed_form_is_the_order_with_the_head_on_the_last_stage(p, m, base, last):
    stages = (base,) * (p - 1) + (tuple(x * last for x in base),)
    run = max(end for _, end in device_spans("zb-h1", m, p, 1, *base, piece_times=stages))
    assert _closed(m, p, stages) == pytest.approx(run, rel=1e-12)
    # equal stages: the row; the head on the last: the row charges its start-up bubble on the heavier stage's times
    assert _closed(m, p, (base,) * p) == pytest.approx(_row(m, p, (base,) * p), rel=1e-12)
    assert _row(m, p, stages) > run
