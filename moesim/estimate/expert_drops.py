"""The MoE layers' dropped token-expert assignments, as `evaluate` counts them (moesim.estimate.core): the model FLOPs
per step less the expected dropped share, the share dropped, and each stack's expert capacity. Moved from core.py
unchanged (session 24, tidy24)."""

from __future__ import annotations

import numpy as np

from moesim.capacity import expected_drop_fraction_array
from moesim.flops import BACKWARD_TO_FORWARD, training_flops_per_sequence
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec
from moesim.workload import Workload


def model_flops_and_drops(model: ModelSpec, tr: TrainingSpec, wl: Workload, terms: list, capacity_factor, seq: int,
                          dec: int, n_cand: int) -> tuple[np.ndarray, np.ndarray]:
    """(model FLOPs per step, share of every MoE layer's assignments dropped), each (N,), over the per-class `terms`
    (terms.ClassTerms) of N candidates with `capacity_factor` (N,) (NaN: dropless)."""
    # Model FLOPs count the token-expert assignments an expert processes: less the expected dropped
    # share under uniform routing (capacity.expected_drop_fraction), so MFU <= HFU with any capacity rule.
    model_flops = np.full(n_cand, tr.global_batch_sequences * training_flops_per_sequence(model, seq, dec))
    dropped, assignments = np.zeros(n_cand), np.zeros(n_cand)  # per device and step, over every MoE layer
    for c, (cls, t) in enumerate(zip(wl.classes, terms)):
        if t.capacity is None:
            continue
        group = np.minimum(model.moe.group_size_tokens, t.tokens_per_device) if model.moe.group_size_tokens \
            else t.tokens_per_device  # the routing group, as terms prices it
        dropless = np.isnan(np.asarray(capacity_factor, dtype=float))
        drop = expected_drop_fraction_array(group, model.moe.num_experts, model.moe.top_k, t.capacity, dropless)
        # Never more processed than the slots priced (a fractional group, t_dev = b·n/tp, rounds down).
        assigned = model.moe.top_k * t.tokens_per_device
        drop = np.where(dropless, 0.0, np.maximum(drop, 1 - t.slots / assigned))
        layers = wl.layer_class_index.count(c)
        dropped, assignments = dropped + layers * assigned * drop, assignments + layers * assigned
        model_flops -= (1 + BACKWARD_TO_FORWARD) * tr.global_batch_sequences * layers * cls.flops.experts * drop

    # The share of every MoE layer's assignments dropped (an encoder-decoder's encoder and decoder layers route groups
    # of different sizes), as the simulator's expected figure weighs them (des/run.py _expected_drops)
    drop_fraction = np.divide(dropped, assignments, out=np.zeros(n_cand), where=assignments > 0)
    return model_flops, drop_fraction


def capacity_by_stack(wl: Workload, terms: list) -> tuple:
    """(expert capacity, tokens per device) of the first MoE layer class (None, None without one), and each stack's
    {stack: (capacity, tokens per device)} of its first MoE class."""
    moe_terms = [t for t in terms if t.slots is not None]
    moe_term = moe_terms[0] if moe_terms else None
    capacity, tokens_per_device = (moe_term.capacity, moe_term.tokens_per_device) if moe_term else (None, None)
    # Each stack's first MoE layer class (an encoder-decoder's decoder routes its own groups): result.py's moe.by_stack
    by_stack: dict[str, tuple] = {}
    for cls, t in zip(wl.classes, terms):
        if t.slots is not None:
            by_stack.setdefault(cls.stack, (t.capacity, t.tokens_per_device))
    return capacity, tokens_per_device, by_stack
