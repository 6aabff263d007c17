"""The analytical step model: Scenario + Layout → StepEstimate (times, bytes, memory, MFU, bottleneck)."""

from __future__ import annotations

from moesim.collectives.base import CollectiveModel
from moesim.collectives.select import model_for
from moesim.estimate.candidates import Candidates, single
from moesim.estimate.core import Evaluation, evaluate
from moesim.estimate.result import StepEstimate, bottlenecks, step_estimate
from moesim.specs.layout import Layout
from moesim.specs.scenario import Scenario
from moesim.specs.training import TrainingSpec


def estimate(scenario: Scenario, layout: Layout | None = None, training: TrainingSpec | None = None,
             collective_model: CollectiveModel | None = None) -> StepEstimate:
    """Estimate one training step of `scenario` with `layout` (default: the scenario's, resolved)."""
    layout = layout if layout is not None else scenario.resolve()
    scenario.check(layout, micro_batches=(training or scenario.training).micro_batches, training=training)
    model = collective_model or model_for(scenario)
    ev = evaluate(scenario, single(scenario, layout, training), model)
    return step_estimate(scenario, ev, 0)


__all__ = ["Candidates", "Evaluation", "StepEstimate", "bottlenecks", "estimate", "evaluate", "step_estimate"]
