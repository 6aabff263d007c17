"""Calls NCCL answers without its tuner's pick (issue 11, session 15 zerobytes): the empty collective, which NCCL
discards before any kernel, and NCCL_ALGO leaving a collective no algorithm, which some releases answer with ring
and the others with an error. Each rule is keyed by release in nccl_code_rules.toml (cited there); TopologyModel
reads them (`_priced`, `cost`). docs/collectives-history.md "Session 15 (zerobytes)"."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from moesim.collectives.nccl_code_rules import rule

EMPTY = "empty"  # the algorithm label of a discarded call (CollectiveCost.algorithm, JSON "algorithm")
_COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")  # ncclFunc* through taskAppend's test
# what NCCL_ALGO restricts (all-to-all and send/recv run NCCL's p2p); broadcast is priced for ring only (v2.29.2-1
# src/graph/tuning.cc ncclTopoTuneModel: `(coll == ncclFuncBroadcast || coll == ncclFuncReduce) && a != NCCL_ALGO_RING`)
_FALLS_BACK = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")


_AS_FLOOR: ContextVar[bool] = ContextVar("moesim_empty_as_floor", default=False)


@contextmanager
def as_floor():
    """Inside, a 0-byte call is priced as before this rule, the fixed part of a real call (T(0)), not discarded: the
    simulator's latency term of a call it runs with bytes (des/costs.py), not an empty call of its own."""
    token = _AS_FLOOR.set(True)
    try:
        yield
    finally:
        _AS_FLOOR.reset(token)


def discarded(op: str, size_bytes: float, version: str) -> bool:
    """Whether NCCL at `version` ("": unset, 2.30.7's rule) drops a call of `size_bytes` before any task exists."""
    if size_bytes != 0 or _AS_FLOOR.get():
        return False
    if op in _COLLECTIVES:  # NVIDIA/nccl v2.29.2-1 src/enqueue.cc taskAppend: "Empty collectives can be discarded."
        return rule("empty_collective_discarded", version)
    if op == "all_to_all":  # ncclAlltoAll from v2.28.3-1; before, grouped ncclSend / ncclRecv (nccl-tests alltoall.cu)
        return rule("empty_alltoall_discarded", version)
    return False  # send_recv: v2.29.2-1 src/enqueue.cc addP2pToPlan, a 0-byte p2p posts one step (nsteps = 1)


def empty_rows() -> tuple[list[tuple], str]:
    """TopologyModel._priced's (rows, bound) of a discarded call: one row, no latency, no transfer."""
    from moesim.collectives.formulas import Terms

    return [(EMPTY, "", Terms(0.0, ()), 0.0, 0.0)], "none"


def ring_fallback(version: str) -> str:
    """What NCCL at `version` does where NCCL_ALGO leaves a collective no algorithm (ncclTopoTuneModel's ringbdw):
    "any" ring with every protocol, "proto" ring with NCCL_PROTO's protocols, "none" fails the call."""
    return rule("nccl_algo_ring_fallback", version)


def no_algorithm(model, op: str, size_bytes: float, group):
    """TopologyModel.cost where NCCL_ALGO / NCCL_PROTO leave `op` no (algorithm, protocol): ring as NCCL's tuner
    restores it from `ringbdw` at `model.nccl_version` ("any": every protocol, even where NCCL_ALGO kept ring and
    NCCL_PROTO left nothing; "proto": NCCL_PROTO's, where NCCL_ALGO dropped ring), else the one-line error."""
    from dataclasses import replace

    from moesim.collectives import nccl, nccl_env_lists
    from moesim.collectives.nccl_tuner_rules import PROTOCOLS
    from moesim.errors import SpecError

    multi = model._placed(group)[1].top >= 1  # the group spans NVLink domains, as TopologyModel._layout's `multi`
    keep, has_ring = ring_fallback(model.nccl_version), "ring" in model._allowed(op, multi)
    if op in _FALLS_BACK and (keep == "any" or (keep == "proto" and not has_ring)):
        ring = replace(model, nccl_algo="ring", nccl_proto=model.nccl_proto if keep == "proto" else "")
        try:
            return ring.cost(op, size_bytes, group)
        except SpecError:
            pass  # ring cannot run either: the error below
    if op in model._protos and (op != "broadcast" or has_ring):  # broadcast: NCCL_ALGO dropped its one ring
        raise SpecError(f"NCCL_ALGO '{model.nccl_algo}' with NCCL_PROTO '{model.nccl_proto}' leaves no "
                        f"(algorithm, protocol) NCCL runs for {op} over {group.size} devices here"
                        f"{nccl_env_lists.one_list_note(model)}",
                        field="nccl_proto", value=model.nccl_proto, allowed=PROTOCOLS)
    # only where NCCL_ALGO (or CollNet without SHARP) rules out every algorithm
    named = model._allowed(op, multi)
    needs = "; ".join(dict.fromkeys(need for name, need in nccl.ALGO_NEEDS.items() if name in named))
    needs = "broadcast: ring only" if op == "broadcast" else needs or "it enables none for this collective"
    raise SpecError(f"NCCL_ALGO '{model.nccl_algo}' leaves no algorithm NCCL runs for {op} over "
                    f"{group.size} devices here ({needs}){error_note(model.nccl_version, model, op, multi)}"
                    f"{nccl_env_lists.one_list_note(model)}",
                    field="nccl_algo", value=model.nccl_algo, allowed=nccl.ALGORITHMS)


def error_note(version: str, model=None, op: str = "", multi_node: bool = False) -> str:
    """The tail of moesim's error where NCCL_ALGO leaves a collective nothing: what NCCL at `version` does there, and
    what the releases that fall back do with `model`'s NCCL_ALGO for `op` (earlier_releases)."""
    if ring_fallback(version) != "none":
        return ""
    at = f"NCCL {version}" if version else "NCCL 2.24.3 on (--nccl-version unset)"
    return f"; {at} also fails the call ('no algorithm/protocol available'); {earlier_releases(model, op, multi_node)}"


# The last release that reads NCCL_ALGO as one list (nccl_code_rules.toml [nccl_env_per_collective]: 2.18.1-2.23.4
# false); that reading is the same at each of them (v2.23.4-1 src/graph/tuning.cc parseList, ncclTopoTuneModel).
LAST_ONE_LIST = "2.23.4"


def earlier_releases(model, op: str, multi_node: bool = False) -> str:
    """2.19.1-2.23.4 fall back to ring where NCCL_ALGO leaves a collective nothing; but 2.18.1-2.23.4 read NCCL_ALGO as
    one list (nccl_env_lists.algo_lists: a clause string's clauses ignored, polish, session 16) and, without CollNet,
    turn ring and tree back on where it leaves ring, tree, NVLS and NVLSTree off (algofallback, session 17), which
    may leave `op` algorithms where this release leaves none: say what."""
    from moesim.collectives import nccl_env_lists

    classic = "2.19.1-2.23.4 fall back to ring (--nccl-version)"
    text = getattr(model, "nccl_algo", None)
    if not text or not nccl_env_lists.per_collective(model.nccl_version):
        return classic  # no NCCL_ALGO, or a release (2.18.x) that reads the string as those releases do
    kept = nccl_env_lists.algo_lists(text, LAST_ONE_LIST, model.collnet, multi_node)[op]
    here = model._allowed(op, multi_node)
    if not nccl_env_lists.has_clauses(text):  # a classic list: the same names, plus what ncclTopoTuneModel adds back
        if kept <= here:
            return classic
        return (f"2.18.1-2.23.4 enable {', '.join(sorted(kept - here))} for {op}: ncclTopoTuneModel turns ring and tree "
                f"back on without CollNet where NCCL_ALGO leaves ring, tree, NVLS and NVLSTree off (--nccl-version)")
    one_list = "2.18.1-2.23.4 read it as one list (per-collective clauses from 2.24.3)"
    if not kept or kept <= here:  # none of this call's list runs here (why this error is raised)
        said = "no algorithm" if not kept else f"only {', '.join(sorted(kept))}, none of which runs here"
        return f"{one_list}, which leaves {op} {said}: {classic}"
    return f"{one_list}, which enables {', '.join(sorted(kept))} for {op} (--nccl-version)"
