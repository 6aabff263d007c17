"""Device-id strides of every mesh axis for a batch of candidates (vectorised topology.mapping)."""

from __future__ import annotations

import numpy as np

from moesim.estimate.candidates import Candidates

_EXPERT_NAME = {"tp": "etp", "ep": "ep", "dp": "edp", "pp": "pp"}


def candidate_strides(cands: Candidates) -> dict[str, np.ndarray]:
    """Stride of tp, dp, pp, etp, ep, edp per candidate; the rule of `topology.mapping.mesh_strides`.

    The attention mesh (tp, dp, pp) is the order without ep; the expert mesh reads tp as etp and
    dp as edp. Both cut the same pipeline stages (checked by the layout rules), so pp's stride is one.
    Computed once per run of neighbouring candidates with the same degrees and order (a search lists
    the micro-batch counts and options of one layout next to each other) and repeated down the run.
    """
    change = np.zeros(len(cands), dtype=bool)
    change[:1] = True
    for column in (cands.order, cands.tp, cands.dp, cands.pp, cands.ep, cands.etp, cands.cp):
        column = np.asarray(column)
        change[1:] |= column[1:] != column[:-1]
    starts = np.flatnonzero(change)
    if 2 * len(starts) > len(cands):
        return _strides(cands)
    lengths = np.diff(starts, append=len(cands))
    return {axis: np.repeat(stride, lengths) for axis, stride in _strides(cands.take(starts)).items()}


def _strides(cands: Candidates) -> dict[str, np.ndarray]:
    """candidate_strides of every candidate, one order at a time."""
    sizes = {"tp": cands.tp, "dp": cands.dp, "pp": cands.pp, "etp": cands.etp, "ep": cands.ep, "edp": cands.edp,
             "cp": cands.cp}
    out = {axis: np.ones(len(cands), dtype=np.int64) for axis in sizes}
    for index, order in enumerate(cands.orders):
        sel = cands.order == index
        if not np.any(sel):
            continue
        stride = np.ones(int(sel.sum()), dtype=np.int64)
        for axis in order:
            for name in (("tp", "cp") if axis == "tp" else (axis,)):  # cp right after tp (specs.layout)
                if name != "ep":
                    out[name][sel] = stride
                    stride = stride * sizes[name][sel]
        stride = np.ones(int(sel.sum()), dtype=np.int64)
        for axis in (_EXPERT_NAME[a] for a in order):
            if axis != "pp":
                out[axis][sel] = stride
            stride = stride * sizes[axis][sel]
    return out
