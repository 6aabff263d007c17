"""Placements of the mesh axes on the devices: which orders give distinct groups.

An order lists tp, ep, dp, pp innermost first (see `moesim.specs.layout`). The cost model sees a
placement only through each axis's group size and device-id stride (`estimate.strides`, and the
`Group` every CollectiveModel prices), so two orders whose non-trivial axes have the same strides
in both meshes are the same placement: with ep = 1, for instance, tp-ep-dp-pp and ep-tp-dp-pp
coincide. An axis of size 1 has no group, so its stride does not count.

Vectorised over degree combinations: arrays are (N,) over combinations, one pass per order.
"""

from __future__ import annotations

import itertools

import numpy as np

from moesim.errors import SpecError
from moesim.specs.layout import AXES, DEFAULT_ORDER

_EXPERT_NAME = {"tp": "etp", "ep": "ep", "dp": "edp", "pp": "pp"}
# Attention strides tp, dp, pp then expert strides etp, ep, edp, pp: the placement's signature.
SIGNATURE_AXES = ("tp", "cp", "dp", "pp", "etp", "ep", "edp", "epp")
COMBINATIONS_AT_ONCE = 4096  # degree combinations compared per pass: 24 x 24 x 4096 booleans an array


def all_orders() -> tuple[tuple[str, ...], ...]:
    """Every order of the four axes, the default (Megatron's tp-ep-dp-pp, DeepSpeed's E+D) first."""
    rest = [o for o in itertools.permutations(AXES) if o != DEFAULT_ORDER]
    return (DEFAULT_ORDER, *rest)


def search_orders(orders: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
    """The orders a search may use: the scenario's [search] orders, checked, or all of them."""
    if not orders:
        return all_orders()
    for order in orders:
        if sorted(order) != sorted(AXES):
            raise SpecError(f"order {'-'.join(order)} must list each of {', '.join(AXES)} once",
                            field="search.orders", value="-".join(order), allowed=AXES)
    return tuple(dict.fromkeys(tuple(o) for o in orders))


def _signature(order: tuple[str, ...], sizes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(strides (8, N): one row per SIGNATURE_AXES axis, 0 for size-1 axes; pipeline-stage mismatch (N,)) of one
    order. Rows, not columns: each axis's strides are one contiguous copy (an (N, 8) stack wrote them 8 bytes
    apart; session 25, coldsearch25)."""
    n = len(sizes["tp"])
    strides = {}
    stride = np.ones(n, dtype=np.int64)
    for axis in order:
        for name in (("tp", "cp") if axis == "tp" else (axis,)):  # cp right after tp (specs.layout)
            if name != "ep":
                strides[name] = stride
                stride = stride * sizes[name]
    stride = np.ones(n, dtype=np.int64)
    for axis in order:
        name = _EXPERT_NAME[axis]
        strides["epp" if name == "pp" else name] = stride
        stride = stride * sizes[name]
    # Devices inside one pipeline stage in each mesh: they must agree (specs.layout.pipeline_stage_mismatch).
    mismatch = strides["pp"] != strides["epp"]
    size_of = {**sizes, "epp": sizes["pp"]}
    sig = np.stack([np.where(size_of[a] > 1, strides[a], 0) for a in SIGNATURE_AXES])
    return sig, mismatch


def distinct_placements(orders: tuple[tuple[str, ...], ...], dp, tp, pp, ep, etp, cp=None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """For every order and degree combination: (keep (O, N), mismatch (O, N)).

    `keep` marks the first order of each distinct placement (orders are tried in the given order);
    `mismatch` marks placements whose attention and expert meshes cut different pipeline stages
    (with pp = 1 the rule still applies; such an order is dropped when a valid order gives its groups).
    """
    cp = np.ones_like(tp) if cp is None else cp
    sizes = {"tp": tp, "cp": cp, "dp": dp, "pp": pp, "ep": ep, "etp": etp, "edp": (tp * cp * dp) // (etp * ep)}
    sigs, mismatches = zip(*(_signature(order, sizes) for order in orders))
    mismatch = np.array(mismatches)
    sigs = np.stack(sigs)  # (O, 8, N)
    keep = np.empty(mismatch.shape, dtype=bool)
    for start in range(0, len(dp), COMBINATIONS_AT_ONCE):  # (O, O, n) arrays of a bounded n
        at = slice(start, start + COMBINATIONS_AT_ONCE)
        keep[:, at] = _kept(sigs[:, :, at], mismatch[:, at])
    return keep, mismatch


def _kept(sigs: np.ndarray, mismatch: np.ndarray) -> np.ndarray:
    """distinct_placements' keep (O, n) from the orders' signatures (O, 8, n) and mismatches (O, n): every pair of
    orders at once, as a loop over (o, other != o) pairs would take them."""
    same = _same_signature(sigs)  # (O, O, n): orders o and other give the same groups
    # A mismatched order that gives the groups of a valid one (pp = 1) is that placement; of two orders alike in
    # groups and in mismatch, the earlier one is kept.
    valid_twin = same & mismatch[:, None, :] & ~mismatch[None, :, :]
    earlier = np.tri(len(sigs), k=-1, dtype=bool)[:, :, None]  # other < o
    earlier_twin = same & (mismatch[:, None, :] == mismatch[None, :, :]) & earlier
    return ~(valid_twin.any(axis=1) | earlier_twin.any(axis=1))


def _same_signature(sigs: np.ndarray) -> np.ndarray:
    """(O, O, N) bool: whether orders o and o' have equal signatures (O, 8, N) for each combination, compared as
    exact integer keys: the columns packed into as few int64 words as their largest value allows (each column in its
    own bit field, so equal keys are equal columns; a negative column, which no stride is, one word to itself)."""
    bits = 63 if sigs.min(initial=0) < 0 else max(1, int(sigs.max(initial=0)).bit_length())
    per_word = max(1, 63 // bits)
    same = None
    for start in range(0, sigs.shape[1], per_word):
        key = np.zeros((sigs.shape[0], sigs.shape[2]), dtype=np.int64)
        for column in range(start, min(start + per_word, sigs.shape[1])):
            key = (key << bits) | sigs[:, column, :]
        equal = key[:, None, :] == key[None, :, :]
        same = equal if same is None else same & equal
    return same
