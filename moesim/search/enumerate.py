"""Every layout a search considers, the rule that rejects each invalid one, and the valid rest as Candidates.

The space (vectorised; counts never materialise the rejected layouts):
  degrees      pp | D, cp | D/pp (cp from [search] context_parallel), tp | D/(pp·cp), dp = D/(tp·cp·pp)
               so tp·cp·dp·pp = D holds by construction
               ep·etp | tp·cp·dp (MoE; edp = tp·cp·dp/(etp·ep))  so etp·ep·edp·pp = D holds too
               a dense model has no expert mesh: ep = etp = 1
  placement    the distinct orders of tp/ep/dp/pp on the mesh (`placement.distinct_placements`)
  micro-batch  the divisors m of the per-replica batch B/dp with m ≤ max_micro_batches
               (one entry, rejected, when dp does not divide B)
  options      ZeRO stage × recomputation × capacity factor, from the scenario's [search]
  pipeline     schedule × vp (interleaved: [search] virtual_stages; others vp = 1) × cp variant
               (cp_comms, only where cp > 1), checked after the rest (specs.layout.schedule_problems)
Each considered layout lands in exactly one bucket: valid (then evaluated: ranked or out of
memory) or the first rule it breaks, in the order of `specs.layout.layout_problems`, with three of Megatron-LM's own
refusals after the degree rules where the scenario's framework is megatron-te on GPUs (`moesim.megatron_rules`; not in
layout_problems: an explicit layout is priced as given, with a warning naming the rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.errors import SpecError
from moesim.estimate.candidates import Candidates, effective_capacity_factor
from moesim.megatron_rules import MEGATRON_REASONS, megatron_fails
from moesim.memory import RECOMPUTE_CODES
from moesim.search.placement import distinct_placements, search_orders
from moesim.specs.layout import CP_COMMS
from moesim.specs.scenario import Scenario
from moesim.specs.training import PIPELINE_SCHEDULES, RECOMPUTE_MODES, ZERO_STAGES

# README's example (DeepSeek-V3's 61 layers and MTP); tests/cli/test_newuser7_walk.py parses it at pp 8
UNEVEN_CHUNKS_EXAMPLE = "Et*4|(t*4|)*14tmL"
UNEVEN_CHUNKS = ("the search splits the layers evenly; `moesim estimate --layout` prices uneven chunks from "
                 "pipeline_layout, Megatron's --pipeline-model-parallel-layout, e.g. "
                 "`--layout '...,pp=8,vp=2,pipeline_layout=" + UNEVEN_CHUNKS_EXAMPLE + "'` (61 layers in pp·vp = 16 "
                 "chunks split by '|': E the embedding, t a layer, m an MTP layer, L the loss)")
# Rejection reasons, first failing rule first (as specs.layout.layout_problems lists them).
REASONS = {
    "experts_not_divisible_by_ep": "num_experts % ep != 0",
    "heads_not_divisible_by_tp": "num_heads % tp != 0",
    "kv_heads_incompatible_with_tp": "neither of num_kv_heads and tp divides the other",
    "d_ff_not_divisible_by_tp": "d_ff % tp != 0",
    "expert_d_ff_not_divisible_by_etp": "expert_d_ff % etp != 0",
    "more_stages_than_layers": "pp > num_layers (uneven splits are fine: specs.layout.stage_layers)",
    "sequence_not_divisible_by_2cp": "seq_len % (2·cp) != 0 (causal balance: 2·cp chunks)",
    # Megatron's own refusals, only where training.framework = "megatron-te" on GPUs (moesim.megatron_rules).
    **MEGATRON_REASONS,
    "pipeline_stage_mismatch": "the order cuts different pipeline stages in the attention and expert meshes",
    "batch_not_divisible_by_dp_micro_batches": "global batch % (dp·micro_batches) != 0",
    # the search splits layers evenly over the pp·vp chunks; Megatron's --pipeline-model-parallel-layout runs uneven
    # ones (DeepSeek-V3's 61 layers), which `estimate` prices from a layout's pipeline_layout
    "interleaved_layers_not_divisible_by_pp_vp": "interleaved: num_layers % (pp·vp) != 0 (" + UNEVEN_CHUNKS + ")",
    "interleaved_micro_batches_not_divisible_by_pp": "interleaved: micro_batches % pp != 0 (Megatron)",
    "interleaved_needs_pp_2": "interleaved: pp < 2",
    "zb_v_needs_two_layers_per_stage": "zb-v: num_layers < 2·pp (two chunks per device)",
    "dualpipe_needs_even_pp_and_micro_batches": "dualpipe: pp or micro_batches odd, or micro_batches < 2·pp",
    "cp_a2a_heads_not_divisible": "cp_comm a2a: num_heads % (tp·cp) != 0 (Ulysses scatters heads)",
    "a2a_overlap_needs_interleaved_at_pp_above_1":
        "training.moe_a2a_overlap at pp > 1 outside the interleaved schedule (Megatron-LM d98e8a64 "
        "transformer_config.py l.3007-3011 asserts virtual stages)",
    "out_of_memory": "memory per device above the usable HBM",
}
# The degree rules (degree_reason's list) end before pipeline_stage_mismatch; the schedule rules (pipeline_reason's)
# run from the interleaved layer rule up to the A2A overlap's schedule rule, inclusive.
_DEGREE_REASONS = tuple(REASONS)[:tuple(REASONS).index("pipeline_stage_mismatch")]
_PIPELINE_REASONS = tuple(REASONS)[tuple(REASONS).index("interleaved_layers_not_divisible_by_pp_vp"):
                                   tuple(REASONS).index("out_of_memory")]


def divisors(n: int) -> np.ndarray:
    """Positive divisors of n, ascending."""
    small = np.arange(1, int(n ** 0.5) + 1)
    small = small[n % small == 0]
    return np.unique(np.concatenate([small, n // small]))


@dataclass(frozen=True)
class Enumeration:
    """The valid candidates of a search space, and how many layouts were considered and rejected."""

    candidates: Candidates
    considered: int
    rejected: dict[str, int]  # by rule, before evaluation (out_of_memory is added by the ranking)


def degree_grid(scenario: Scenario) -> dict[str, np.ndarray]:
    """All (dp, tp, pp, ep, etp, cp) that tile the devices in both meshes, as int64 arrays."""
    devices = scenario.devices
    moe = scenario.model.moe
    cps = scenario.search.context_parallel
    if not cps or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in cps):
        raise SpecError("needs one or more integers >= 1", field="search.context_parallel", value=cps)
    rows = []
    found: dict[int, np.ndarray] = {}  # divisors of each n, computed once (the loops ask for the same n many times)

    def divs(n: int) -> np.ndarray:
        if n not in found:
            found[n] = divisors(n)
        return found[n]

    for pp in divs(devices):
        for cp in sorted(set(cps)):
            if (devices // pp) % cp:
                continue
            for tp in divs(devices // (pp * cp)):
                dp = devices // (pp * cp * tp)
                for ep in (divs(tp * cp * dp) if moe else (1,)):
                    for etp in (divs(tp * cp * dp // ep) if moe else (1,)):
                        rows.append((dp, tp, pp, ep, etp, cp))
    if not rows:  # no cp listed divides the devices: said here, not as an empty grid's traceback further on
        raise SpecError(f"no layout of {devices} devices has cp in {list(cps)}", file=scenario.file or None,
                        field="search.context_parallel", value=list(cps),
                        allowed=f"divisors of the devices ({', '.join(str(int(c)) for c in divs(devices))})")
    grid = np.array(rows, dtype=np.int64).reshape(-1, 6)
    return _fixed_degrees(scenario, {name: grid[:, i] for i, name in enumerate(("dp", "tp", "pp", "ep", "etp", "cp"))})


# The degrees a scenario's [search] may fix (empty: every one the devices allow), as the layout line names them
FIXED_DEGREES = (("tp", "tensor_parallel"), ("pp", "pipeline_parallel"), ("ep", "expert_parallel"))


def check_fixed_degrees(scenario: Scenario) -> None:
    """The SpecError `degree_grid` raises where the scenario's [search] degree lists match no tiling of its devices
    (a sweep checks every point before pricing any); nothing to do without a fixed degree."""
    if any(getattr(scenario.search, key) for _, key in FIXED_DEGREES) or scenario.search.context_parallel != (1,):
        degree_grid(scenario)


def _fixed_degrees(scenario: Scenario, grid: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`grid` restricted to the tp / pp / ep degrees the scenario's [search] lists (a fixed tp: [search]
    tensor_parallel = [8]); an error naming the lists when no tiling of the devices has them."""
    space = scenario.search
    fixed = [(degree, key, getattr(space, key)) for degree, key in FIXED_DEGREES if getattr(space, key)]
    if not fixed:
        return grid
    keep = np.ones(len(grid["tp"]), dtype=bool)
    for degree, key, values in fixed:
        if degree == "ep" and scenario.model.moe is None:
            raise SpecError(f"model '{scenario.model.name}' has no experts: the search runs ep = 1 only",
                            file=scenario.file or None, field=f"search.{key}", value=list(values),
                            allowed="[] (empty) on a dense model")
        keep &= np.isin(grid[degree], np.array(values, dtype=np.int64))
    if not keep.any():
        asked = ", ".join(f"{degree} in {list(values)}" for degree, _, values in fixed)
        possible = "; ".join(f"{degree}: {', '.join(str(int(v)) for v in np.unique(grid[degree]))}"
                             for degree, _, _ in fixed)
        # the field named: the first list no tiling has on its own (each does: the first, their combination at fault)
        alone = [(key, values) for degree, key, values in fixed
                 if not np.isin(grid[degree], np.array(values, dtype=np.int64)).any()]
        key, values = (alone or [fixed[0][1:]])[0]
        raise SpecError(f"no layout of {scenario.devices} devices has {asked}", file=scenario.file or None,
                        field=f"search.{key}", value=list(values), allowed=f"degrees that tile the devices ({possible})")
    return {name: values[keep] for name, values in grid.items()}


def pipeline_grid(scenario: Scenario) -> dict[str, np.ndarray]:
    """(schedule code, vp, cp_comm code) choices: the [search] schedules (default the training's), vp from
    virtual_stages for interleaved and 1 otherwise, every cp variant (used only where cp > 1)."""
    space = scenario.search
    schedules = space.pipeline_schedules or (scenario.training.pipeline_schedule,)
    for name, values, allowed in (("pipeline_schedules", schedules, PIPELINE_SCHEDULES),
                                  ("cp_comms", space.cp_comms, CP_COMMS)):
        if not values or any(v not in allowed for v in values):
            raise SpecError("needs one or more of the allowed values", field=f"search.{name}", value=values,
                            allowed=allowed)
    if "interleaved" in schedules and (not space.virtual_stages or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 2 for v in space.virtual_stages)):
        raise SpecError("the interleaved schedule needs vp choices >= 2", field="search.virtual_stages",
                        value=space.virtual_stages)
    rows = [(PIPELINE_SCHEDULES.index(s), v, CP_COMMS.index(c))
            for s in dict.fromkeys(schedules)
            for v in (sorted(set(space.virtual_stages)) if s == "interleaved" else (1,))
            for c in dict.fromkeys(space.cp_comms)]
    grid = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return {"schedule": grid[:, 0], "vp": grid[:, 1], "cp_comm": grid[:, 2]}


def pipeline_reason(scenario: Scenario, pp, tp, cp, micro_batches, schedule, vp, cp_comm) -> np.ndarray:
    """Index into _PIPELINE_REASONS of the first schedule/cp rule each row breaks; -1 when none (the order
    of specs.layout.schedule_problems, then the Ulysses head rule, then the EP A2A overlap's). Arrays of equal
    length; schedule codes (indices into PIPELINE_SCHEDULES, compared as codes rather than named row by row)."""
    layers, heads = scenario.model.num_layers, scenario.model.attention.num_heads
    code = PIPELINE_SCHEDULES.index
    inter, m = schedule == code("interleaved"), micro_batches
    zbv, dualpipe, split_cp = schedule == code("zb-v"), schedule == code("dualpipe"), cp > 1
    # A rule whose rows (its schedule's, cp > 1's, the overlap's) are none here fails nowhere: not computed, and
    # np.where of an all-False mask would leave `reason` as it was (session 25, coldsearch25: a search of one schedule
    # computes one rule over its 307 K DeepSeek-V3 rows, not seven)
    rules = [(inter, lambda: inter & (layers % (pp * vp) != 0)), (inter, lambda: inter & (m % pp != 0)),
             (inter, lambda: inter & (pp < 2)), (zbv, lambda: zbv & (layers < 2 * pp)),
             (dualpipe, lambda: dualpipe & ((pp % 2 != 0) | (m % 2 != 0) | (m < 2 * pp))),
             (split_cp, lambda: split_cp & (cp_comm == CP_COMMS.index("a2a")) & (heads % (tp * cp) != 0)),
             # Megatron-LM d98e8a64 transformer_config.py l.3007-3011: the EP A2A overlap at pp > 1 needs vp
             (bool(scenario.training.moe_a2a_overlap) and ~inter, lambda: (pp > 1) & ~inter)]
    reason = np.full(len(m), -1)
    for index in reversed(range(len(rules))):
        rows, fails = rules[index]
        if np.any(rows):
            reason = np.where(fails(), index, reason)
    return reason


def degree_reason(scenario: Scenario, g: dict[str, np.ndarray]) -> np.ndarray:
    """Index into REASONS of the first degree rule each combination breaks; -1 when none."""
    model, moe, att = scenario.model, scenario.model.moe, scenario.model.attention
    tp = g["tp"]
    kv = att.num_kv_heads
    fails = [
        (model.moe.num_experts % g["ep"] != 0) if moe else np.zeros(len(tp), bool),
        att.num_heads % tp != 0,
        (kv % tp != 0) & (tp % kv != 0),
        model.d_ff % tp != 0,
        (moe.expert_d_ff % g["etp"] != 0) if moe else np.zeros(len(tp), bool),
        g["pp"] > model.num_layers,
        (g["cp"] > 1) & (scenario.seq_lens[0] % (2 * g["cp"]) != 0),
        *megatron_fails(scenario, g),
    ]
    reason = np.full(len(tp), -1)
    for index in reversed(range(len(fails))):
        reason = np.where(fails[index], index, reason)
    return reason


def option_grid(scenario: Scenario) -> dict[str, np.ndarray]:
    """ZeRO stage × recompute code × capacity factor (NaN = dropless), one entry per combination."""
    space, moe = scenario.search, scenario.model.moe
    if space.max_micro_batches < 1:
        raise SpecError("must be >= 1", field="search.max_micro_batches", value=space.max_micro_batches)
    for name, values, allowed in (("zero_stages", space.zero_stages, ZERO_STAGES),
                                  ("recompute_modes", space.recompute_modes, RECOMPUTE_MODES)):
        if not values or any(v not in allowed for v in values):
            raise SpecError("needs one or more of the allowed values", field=f"search.{name}", value=values,
                            allowed=allowed)
    refused = scenario.training.refused_recompute_modes()  # Megatron-LM's, with the scenario's other options
    modes = [m for m in space.recompute_modes if m not in refused]
    if not modes:
        raise SpecError(f"every mode searched is refused: {'; '.join(f'{m}: {refused[m]}' for m in refused)}",
                        field="search.recompute_modes", value=space.recompute_modes,
                        allowed=[m for m in RECOMPUTE_MODES if m not in refused])
    cfs = tuple(space.capacity_factors)
    if cfs and (moe is None or moe.dropless):
        raise SpecError(f"model {scenario.model.name} has no capacity factor to vary "
                        f"({'dense' if moe is None else 'dropless'})", field="search.capacity_factors", value=cfs)
    if any(cf <= 0 for cf in cfs):
        raise SpecError("capacity factors must be > 0", field="search.capacity_factors", value=cfs)
    cfs = cfs or (effective_capacity_factor(scenario, scenario.training),)
    zero, rec, cf = np.meshgrid(np.array(space.zero_stages, dtype=np.int64),
                                np.array([RECOMPUTE_CODES[r] for r in modes], dtype=np.int64),
                                np.array(cfs, dtype=float), indexing="ij")
    return {"zero_stage": zero.ravel(), "recompute": rec.ravel(), "capacity_factor": cf.ravel()}


def micro_batch_options(scenario: Scenario, dp: int) -> np.ndarray:
    """Micro-batch counts for data-parallel degree dp: divisors of B/dp up to the search maximum."""
    batch = scenario.training.global_batch_sequences
    if batch % dp:
        return np.array([1], dtype=np.int64)  # rejected by the batch rule whatever m is
    counts = divisors(batch // dp)
    return counts[counts <= scenario.search.max_micro_batches]


def enumerate_layouts(scenario: Scenario) -> Enumeration:
    """The search space of `scenario`: valid candidates (sorted by pp) plus considered and rejected counts."""
    g = degree_grid(scenario)
    options = option_grid(scenario)
    pipes = pipeline_grid(scenario)
    n_opt = len(options["zero_stage"])
    # Pipeline choices per degree combination: cp variants count only where cp > 1.
    n_plain = int(np.sum(pipes["cp_comm"] == pipes["cp_comm"][0]))
    n_pipe = np.where(g["cp"] > 1, len(pipes["schedule"]), n_plain)
    orders = search_orders(scenario.search.orders)
    reason = degree_reason(scenario, g)
    keep, mismatch = distinct_placements(orders, g["dp"], g["tp"], g["pp"], g["ep"], g["etp"], g["cp"])
    # Micro-batch counts per data-parallel degree: a table padded with zeros, one row per dp value.
    dps = np.unique(g["dp"])
    mbs = [micro_batch_options(scenario, int(dp)) for dp in dps]
    table = np.zeros((len(dps), max(len(v) for v in mbs)), dtype=np.int64)
    for i, values in enumerate(mbs):
        table[i, :len(values)] = values
    dp_row = np.searchsorted(dps, g["dp"])
    n_mb = np.count_nonzero(table, axis=1)[dp_row]
    batch_ok = scenario.training.global_batch_sequences % g["dp"] == 0

    rejected = dict.fromkeys(REASONS, 0)
    placements = keep.sum(axis=0)
    for index, name in enumerate(_DEGREE_REASONS):
        rejected[name] = int(np.sum((placements * n_mb * n_opt * n_pipe)[reason == index]))
    ok = reason < 0
    rejected["pipeline_stage_mismatch"] = int(np.sum(((keep & mismatch).sum(axis=0) * n_mb * n_opt * n_pipe)[ok]))
    good = keep & ~mismatch & ok[None, :]
    rejected["batch_not_divisible_by_dp_micro_batches"] = int(np.sum((good.sum(axis=0) * n_pipe)[~batch_ok]) * n_opt)
    good &= batch_ok[None, :]
    considered = int(np.sum(placements * n_mb * n_pipe)) * n_opt

    # Materialise combination-major, so candidates come sorted by pp (the grid's outer loop).
    combo, order_index = np.nonzero(good.T)
    per_pair = n_mb[combo]
    row = np.repeat(np.arange(len(combo)), per_pair)
    offset = np.arange(len(row)) - np.repeat(np.cumsum(per_pair) - per_pair, per_pair)
    m = table[dp_row[combo[row]], offset]
    # Pipeline choices per (combination, order, m), checked before the options multiply them.
    n_pipes = len(pipes["schedule"])
    if n_pipes == 1:  # one pipeline choice: np.repeat / np.tile's rows are the (combination, order, m) rows themselves
        at, pipe, c = np.arange(len(row)), np.zeros(len(row), dtype=np.int64), combo[row]
    else:
        at = np.repeat(np.arange(len(row)), n_pipes)
        pipe = np.tile(np.arange(n_pipes), len(row))
        c, m = combo[row[at]], m[at]
    # A cp variant other than the first is no choice where cp = 1 (one variant: every row is its first).
    if not _one_value(pipes["cp_comm"]):
        real = (g["cp"][c] > 1) | (pipes["cp_comm"][pipe] == pipes["cp_comm"][0])
        at, pipe, c, m = at[real], pipe[real], c[real], m[real]
    late = pipeline_reason(scenario, _rows_of(g["pp"], c), _rows_of(g["tp"], c), _rows_of(g["cp"], c), m,
                           _rows_of(pipes["schedule"], pipe), _rows_of(pipes["vp"], pipe),
                           _rows_of(pipes["cp_comm"], pipe))
    for index, name in enumerate(_PIPELINE_REASONS):
        rejected[name] = int(np.sum(late == index)) * n_opt
    ok = late < 0
    at, pipe, c, m = at[ok], pipe[ok], c[ok], m[ok]
    # Each (combination, order, micro-batch, pipeline choice) row repeated once per option: a column is gathered
    # on these rows, then repeated (the same values as gathering on the repeated rows, fewer long arrays).
    options_of = {name: _constant(values, n_opt * len(c)) if _one_value(values) else np.tile(values, len(c))
                  for name, values in options.items()}  # options[name][opt]

    def per_option(values: np.ndarray) -> np.ndarray:  # values over the len(c) rows, or _rows_of's one entry
        return _constant(values, len(c) * n_opt) if _one_value(values) else np.repeat(values, n_opt)

    # Equal for the candidates that differ only in the order: (combination, micro-batch, pipeline choice, options).
    order_free = per_option(((c * table.shape[1] + offset[at]) * n_pipes + pipe) * n_opt) \
        + np.tile(np.arange(n_opt), len(c))
    cands = Candidates(
        dp=per_option(_rows_of(g["dp"], c)), tp=per_option(_rows_of(g["tp"], c)), pp=per_option(_rows_of(g["pp"], c)),
        ep=per_option(_rows_of(g["ep"], c)), etp=per_option(_rows_of(g["etp"], c)), micro_batches=per_option(m),
        zero_stage=options_of["zero_stage"], recompute=options_of["recompute"],
        capacity_factor=options_of["capacity_factor"], order=per_option(order_index[row[at]]), orders=orders,
        cp=per_option(_rows_of(g["cp"], c)), vp=per_option(_rows_of(pipes["vp"], pipe)),
        cp_comm=per_option(_rows_of(pipes["cp_comm"], pipe)), schedule=per_option(_rows_of(pipes["schedule"], pipe)),
        order_free_key=order_free,
        # the automatic split everywhere: Candidates' default, one zero seen at every row (no pages at all)
        first_stage_layers=_constant(np.zeros(1, dtype=np.int64), len(order_free)),
        last_stage_layers=_constant(np.zeros(1, dtype=np.int64), len(order_free)),
    )
    return Enumeration(candidates=cands, considered=considered, rejected=rejected)


def _one_value(values: np.ndarray) -> bool:
    """Whether every entry of `values` holds the same bits (NaN included: a dropless capacity factor)."""
    if not len(values):
        return False
    bits = np.ascontiguousarray(values)
    bits = bits.view(np.uint64) if bits.dtype.itemsize == 8 else bits
    return bool(np.all(bits == bits[0]))


def _rows_of(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """values[at]; where `values` holds one value (the same bits everywhere) and `at` some rows, that value as a
    (1,) array instead: it broadcasts over the rows as the gathered column would, and per_option / pipeline_reason
    read it so, without the gather (session 25, coldsearch25: DeepSeek-V3's cp, vp, cp variant and schedule over
    its 307 K pipeline rows)."""
    return values[:1] if len(at) and _one_value(values) else values[at]


def _constant(values: np.ndarray, n: int) -> np.ndarray:
    """A column of `n` rows that all hold values[0], as a read-only view of that one entry (stride 0): the
    values, dtype and length of np.repeat / np.tile, without the n x 8 bytes of fresh memory (a cold search's
    pages; session 22). Every reader gathers or slices it as it would the filled column."""
    return np.broadcast_to(values[:1], (n,))
