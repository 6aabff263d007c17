"""What a run's NCCL release moves (issue 11, session 12 ncclver; TopologyModel.nccl_version_scope).

NCCL's hwLatencies, baseLatencies, llMaxBws and per-channel caps are its tuner's model: NCCL ranks its (algorithm,
protocol) candidates by them (src/graph/tuning.cc ncclTopoTuneModel / ncclTopoGetAlgoTime at each release). moesim
prices the wire from the same tables ("all": a release's values move NCCL's pick and the wire). "pick" reads a
release's values as NCCL's model only: the candidates are ranked by their time at the release's constants, each
priced on the wire at today's tables (the release changes what NCCL runs, not what a link or a hop costs). An
evaluated option (docs/collectives-history.md "Session 12 (ncclver)")."""

from __future__ import annotations

from functools import wraps

from moesim.collectives import nccl_tuning
from moesim.errors import SpecError

SCOPES = ("all", "pick")
DEFAULT_SCOPE = "all"


def check_scope(scope: str, field: str = "nccl_version_scope") -> None:
    if scope not in SCOPES:
        raise SpecError(f"unknown NCCL version scope {scope!r}", field=field, value=scope, allowed=SCOPES)


def ranked_by(rows: list[tuple], at_version: list[tuple]) -> list[tuple]:
    """`rows` (TopologyModel._priced: algorithm, protocol, Terms, base s, tuner offset s; today's tables) with each
    tuner offset set so that the row ranks at its time at the release (`at_version`, the same rows priced inside
    nccl_tuning.at_version: base + Terms.time_s + offset); a candidate the release does not offer is dropped."""
    ranked = {(r[0], r[1]): r[3] + r[2].time_s + r[4] for r in at_version}
    return [(a, p, terms, base, ranked[(a, p)] - (base + terms.time_s)) for a, p, terms, base, _ in rows
            if (a, p) in ranked]


def priced(model, op: str, size_bytes: float, group) -> tuple[list[tuple], object]:
    """TopologyModel._priced's (rows, bound); with nccl_version_scope "pick", the rows on the wire at today's tables,
    each ranked (tuner offset) at the model's release (ranked_by)."""
    rows, bound = model._priced(op, size_bytes, group)
    if not model.nccl_version or model.nccl_version_scope != "pick":
        return rows, bound
    with nccl_tuning.at_version(model.nccl_version):
        at_version, _ = model._priced(op, size_bytes, group)
    return ranked_by(rows, at_version), bound


def at_release(method):
    """A TopologyModel pricing method run at the model's nccl_version (nccl_tuning.at_version) where it is set and its
    scope is "all"; as it stands otherwise ("pick" enters the release inside `priced`)."""
    @wraps(method)
    def at(model, *args):
        if model.nccl_version and model.nccl_version_scope == "all":
            with nccl_tuning.at_version(model.nccl_version):
                return method(model, *args)
        return method(model, *args)
    return at
