"""NCCL's pick on NCCL's own figures (session 14, pick): where a profile carries `pick_interconnect` (the prior's
levels, written by `moesim calibrate --transfer pick-as-nccl`), TopologyModel ranks a call's (algorithm, protocol)
candidates on a model of those levels and prices the candidate that ranking picks with its own (fitted) figures.

NCCL ranks by its own model only (src/graph/tuning.cc ncclTopoTuneModel: baseLatencies / hwLatencies / llMaxBws /
perChMax*Bws, hard-coded, and graphs[a]->bwIntra / bwInter, what src/graph/search.cc ncclTopoCompute finds on the
links it detects; ncclTopoGetAlgoTime per call; NVIDIA/nccl v2.28.9-1): a measured departure from those figures, which
calibrate fits, never moves its pick. docs/collectives-history.md "Session 14 (pick)".
"""

from __future__ import annotations

import weakref
from dataclasses import fields, replace

from moesim.collectives.nccl_tuning import active_version

MAX_RANKERS = 256  # ranking models kept (one per distinct prior and settings; a calibration probes one prior)
MAX_PICKS = 200_000  # picks kept per ranking model (a calibration asks the same calls at every θ it probes)
_RANKERS: dict = {}  # {(ranking hardware, settings): (ranking model, {(op, bytes, group): label})}
_BY_MODEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # {model: its _RANKERS entry}


def ranking_model(model):
    """`model` (a TopologyModel) on its hardware's pick_interconnect, every other setting the same."""
    return _entry(model)[0]


def _entry(model) -> tuple:
    """(ranking model, its picks) of `model`: memoised per distinct (prior levels, settings), so that a fit's probes
    at many θ rank on one model and ask it each call once."""
    found = _BY_MODEL.get(model)
    if found is None:
        found = _BY_MODEL[model] = _ranker(model)
    return found


def _ranker(model) -> tuple:
    hardware = model.hardware
    ranking_hw = replace(hardware, interconnect=hardware.pick_interconnect, pick_interconnect=())
    settings = tuple(getattr(model, f.name) for f in fields(model) if f.init and f.name != "hardware")
    try:
        key = (ranking_hw, settings)
        found = _RANKERS.get(key)
    except TypeError:  # an unhashable setting: no memo across models
        return replace(model, hardware=ranking_hw), {}
    if found is None:
        if len(_RANKERS) >= MAX_RANKERS:
            _RANKERS.clear()
        found = _RANKERS[key] = (replace(model, hardware=ranking_hw), {})
    return found


def label(algorithm: str, protocol: str) -> str:
    """A candidate's label as CollectiveCost.algorithm writes it."""
    return f"{algorithm}/{protocol}" if protocol else algorithm


def ranked_row(model, op: str, size_bytes: float, group, rows: list[tuple]):
    """(the row of `rows` (nccl_plan.priced's (algorithm, protocol, Terms, base s, offset s)) that NCCL's own model
    picks, as ranking_model(model) ranks this call, its time s); (None, 0.0) where that pick is not among `rows`."""
    ranker, picks = _entry(model)
    key = (op, size_bytes, group, active_version())  # the NCCL tables in force rank too (nccl_tuning.at_version)
    picked = picks.get(key)
    if picked is None:
        if len(picks) >= MAX_PICKS:
            picks.clear()
        picked = picks[key] = ranker.cost(op, size_bytes, group).algorithm
    row = next((row for row in rows if label(row[0], row[1]) == picked), None)
    return (None, 0.0) if row is None else (row, row[3] + row[2].time_s)  # Candidate.time_s: base + Terms.time_s
