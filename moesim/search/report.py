"""The JSON-ready report of a layout search (what `moesim search` prints)."""

from __future__ import annotations

from moesim.search.enumerate import REASONS
from moesim.search.rank import cost_note, search
from moesim.search.refine import StepTimeFn, des_step_time, refine
from moesim.search.why import why_line
from moesim.specs.scenario import Scenario

SEARCH_SHARE = 0.1  # of the progress bar when --refine-des simulates afterwards

# [layout] keys whose [search] list has a default of its own rather than "every value the devices allow":
# a layout key outside its list is not among the layouts ranked (layout key, [search] key)
_LISTED_LAYOUT_KEYS = (("cp", "context_parallel"), ("cp_comm", "cp_comms"), ("vp", "virtual_stages"))


def unsearched_layout_notes(scenario: Scenario) -> list[str]:
    """One line per value of the scenario's own [layout] that its [search] lists leave out (cp = 2 under the
    default context_parallel = [1]): the search ranks other layouts than the one the file describes, said."""
    notes = []
    for key, listed in _LISTED_LAYOUT_KEYS:
        value, values = scenario.layout_given.get(key), getattr(scenario.search, listed)
        if value is None or value in values or (value == 1 and key in ("vp", "cp")):  # 1: the unsplit default
            continue
        quoted = [f'"{v}"' if isinstance(v, str) else str(v) for v in (*values, value)]
        notes.append(f"the scenario's [layout] {key} = {quoted[-1]} is not searched: [search] {listed} = "
                     f"[{', '.join(quoted[:-1])}]; set {listed} = [{', '.join(quoted)}] in [search] to rank it")
    return notes


def search_report(scenario: Scenario, *, objective: str = "step_time", top: int = 5, refine_des: int = 0,
                  step_time: StepTimeFn | None = None, progress=None) -> dict:
    """Search `scenario` and describe the top `top` layouts (with full estimates), the rejections
    and the Pareto front; with `refine_des` > 0 also simulate that many of the best layouts."""
    if refine_des and step_time is None:
        step_time = des_step_time()  # fail before searching when the simulator is missing
    share = SEARCH_SHARE if refine_des else 1.0  # of the progress bar
    result = search(scenario, objective, progress=None if progress is None else (lambda f: progress(share * f)))
    return describe_search(result, top=top, refine_des=refine_des, step_time=step_time,
                           progress=None if progress is None else (lambda f: progress(share + (1 - share) * f)))


def describe_search(result, *, top: int = 5, refine_des: int = 0, step_time: StepTimeFn | None = None,
                    progress=None) -> dict:
    """The JSON-ready report of a finished search (SearchResult.to_dict): see search_report.
    `progress(fraction)` follows the --refine-des simulations."""
    scenario, objective = result.scenario, result.objective
    if refine_des and step_time is None:
        step_time = des_step_time()
    # Layouts that repeat a better-ranked one in another mesh order with the same figures are folded
    # into it (its `equivalent_orders`); ranks stay positions in the full ranking.
    shown = result.distinct(max(0, top))
    estimates = result.estimates(shown)
    results = []
    for i, est in zip(shown, estimates):
        results.append({"rank": int(i) + 1, **result.summary(int(i)), "bottleneck": est.bottleneck,
                        "estimate": est.as_dict()})
    for res in results:  # whyrank (session 20): one line against the best (results[0] is rank 1)
        res["why"] = why_line(res["estimate"], None if res is results[0] else results[0]["estimate"])
    distinct = set(result.distinct().tolist())
    pareto = [{"rank": int(i) + 1, **result.summary(int(i))} for i in result.pareto if int(i) in distinct]
    report = {
        "scenario": scenario.name, "hardware": scenario.hardware.name, "devices": scenario.devices,
        "objective": objective, "objective_unit": result.objective_unit, "cost_note": cost_note(scenario),
        "memory_capacity_bytes": result.memory_capacity_bytes,
        "considered": result.considered, "ranked": result.ranked, "rejected": result.rejected,
        "rejection_rules": dict(REASONS), "results": results, "pareto": pareto,
    }
    if unsearched := unsearched_layout_notes(scenario):  # only where there is one: other searches' JSON unchanged
        report["unsearched_layout"] = unsearched
    if not results:
        from moesim.search.closest import closest_miss

        report["closest_miss"] = closest_miss(result)
    report["equivalent_orders_folded"] = result.ranked - len(distinct)
    if refine_des:
        # The rows the text shows (result.distinct); equivalent_orders counts the row itself, the twins are the rest.
        report["refined"] = [r.as_dict() | {"layout": result.layout_dict(r.rank), "layout_arg": summary["layout_arg"],
                                            "equivalent_orders_not_simulated": summary.get("equivalent_orders", 1) - 1}
                             for r in refine(result, refine_des, step_time, progress)
                             for summary in (result.summary(r.rank),)]
    return report
