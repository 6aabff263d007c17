"""A Megatron-Bridge row's virtual stages and parameter all-gather overlap as the row ran them (validation only,
nothing here fitted; moved out of models/bridge_perf.py, over the house rule's 400 lines)."""

from __future__ import annotations

# The releases before the perf scripts set overlap_param_gather_with_optimizer_step (Megatron-Bridge 47ff48829,
# 2025-10-14), and those before they left it off for MXFP8 (021fb3d53, 2026-01-22): models/bridge_perf.py RELEASES
WITH_STEP_FROM = "25.11"
WITH_STEP_MXFP8_UNTIL = "25.11"
MXFP8_LABELS = ("FP8-MX", "MXFP8")  # the page's labels of TE's MXFP8 recipe (bridge_perf.PRECISION_RECIPE)


def priced_vp(row, num_layers: int) -> int:
    """The row's vp where moesim can write it (pp·vp chunks of equal layers, or the recipe's pipeline layout naming
    each chunk's layers), else 1 (plain 1F1B: uneven chunks the row's data does not name)."""
    return row.vp if row.pipeline_layout or num_layers % (row.pp * row.vp) == 0 else 1


def param_overlap_keys(row, vp: int, releases: tuple[str, ...]) -> dict:
    """The row's training keys: overlap_param_gather whenever dp > 1 (every recipe: Megatron-Bridge @ 067f987d
    recipes/common.py l.84 _pretrain_common; training/comm_overlap.py l.576-579), and its with_optimizer_step where
    the perf scripts set it: dp > 1, pp > 1 and vp > 1, not MXFP8 / NVFP4 (scripts/performance/utils/overrides.py
    l.683-689 @ 067f987d; since 47ff48829 at every precision, MXFP8 off since 021fb3d53, NVFP4 since e2769105b: no
    NVFP4 row is priced, MXFP8_LABELS alone tested), on the rows priced interleaved (`vp` > 1,
    moesim/specs/param_overlap.py); a release's side of each commit assumed from the dates."""
    at = releases.index(row.release)
    with_step = row.dp > 1 and row.pp > 1 and vp > 1 and at >= releases.index(WITH_STEP_FROM) and (
        row.precision not in MXFP8_LABELS or at <= releases.index(WITH_STEP_MXFP8_UNTIL))
    return {"overlap_param_gather": row.dp > 1, "overlap_param_gather_with_optimizer_step": with_step}
