"""NCCL code rules that changed between releases, by the NCCL version in force (nccl_code_rules.toml; issue 11,
session 13 treecorr): `rule(name)` is the rule's value at nccl_tuning.active_version() (a release a run names), or
its `unset` value where no version is named (the pricing as it was) or the rule is kept off (`priced = false`;
`in_force` prices it). Read where the rule applies: nccl_plan.plan (LL128 on Blackwell, the ring LL128 factor with
one GPU per node, the ring LL factor, PAT), nccl_broadcast.protocol_bw_factor (the ring LL factor of an NCCL
broadcast), nccl_algos._nvls (NVLSTree's tree correction) and TopologyModel (a tuner plugin's rules dropped, with a
warning, at releases without the plugin interface: [tuner_plugin_available]) and nccl_channels.pinned_share (a
plugin's channel count planned by addTunedCollToPlan at 2.20.3-2.21.5: [tuned_coll_to_plan])."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from moesim.collectives import nccl_tuning
from moesim.errors import SpecError
from moesim.paths import read_versioned_toml

_RULES = Path(__file__).with_name("nccl_code_rules.toml")


@lru_cache(maxsize=1)
def _file() -> dict:
    return read_versioned_toml(_RULES)


@lru_cache(maxsize=None)
def _at(name: str, version: str):
    entry = _file()[name]
    if not version or not entry.get("priced", True):  # a rule kept off (`priced = false`): unset at every release
        return entry["unset"]
    key = nccl_tuning._key(version)
    for first, last, value in entry["rows"]:
        if nccl_tuning._key(first) <= key <= nccl_tuning._key(last):
            return value
    raise SpecError(f"nccl_code_rules.toml [{name}]: no row holds NCCL {version}", field="nccl_version", value=version)


@contextmanager
def in_force(*names: str):
    """The code rules `names` priced by release for the duration, those kept off (`priced = false`) included; a
    TopologyModel memoises its plans, so build the model inside."""
    saved = {name: _file()[name].get("priced") for name in names}
    for name in names:
        _file()[name]["priced"] = True
    _at.cache_clear()
    try:
        yield
    finally:
        for name, priced in saved.items():
            if priced is None:
                _file()[name].pop("priced")
            else:
                _file()[name]["priced"] = priced
        _at.cache_clear()


def rule(name: str, version: str | None = None):
    """The value of code rule `name` at `version` (None: the version in force, nccl_tuning.active_version)."""
    return _at(name, nccl_tuning.active_version() if version is None else version)


def ring_ll_bw_factor(op: str, nodes: int, default: float) -> float:
    """NCCL's ring LL bus bandwidth factor for `op` over `nodes` nodes at the release in force: the quarter across
    nodes or for all-reduce, the third otherwise, up to v2.20.5-1 (v2.20.5-1 tuning.cc l. 181: `(nNodes > 1 || coll ==
    ncclFuncAllReduce || coll == ncclFuncReduce) ? 1.0/4.0 : 1.0/3.0`); `default` ([protocol_bw_factor] ring LL, 0.5)
    where the rule is not in force (v2.21.5-1 on, or no release named)."""
    across_or_reduce, other = rule("ring_ll_factor")
    if not across_or_reduce:
        return default
    return across_or_reduce if nodes > 1 or op == "all_reduce" else other
