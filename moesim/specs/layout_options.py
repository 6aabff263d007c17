"""A layout line's or [layout] table's keys beyond the degrees: edp (checked) and the execution options
search prints (mb, zero, recompute, cf), read strictly and applied to the TrainingSpec."""

from __future__ import annotations

import dataclasses

from moesim.errors import SpecError
from moesim.specs.fields import Table
from moesim.specs.layout import DROPLESS, LAYOUT_LINE_KEYS, OPTION_KEYS, option_problem
from moesim.specs.model import ModelSpec
from moesim.specs.training import TrainingSpec


def layout_from_table(t: Table) -> dict[str, object]:
    """A scenario's [layout]: degrees, order, stage sizes, and (as search prints them) edp and the
    execution options mb / zero / recompute / cf (OPTION_KEYS), keyed as parse_layout_text keys them."""
    given: dict[str, object] = {}
    for key in LAYOUT_LINE_KEYS:
        if not t.has(key):
            continue
        name = OPTION_KEYS.get(key, key)
        if name in given:
            raise t.error(key, f"'{name}' is given twice (as '{key}' and another spelling)")
        if key == "order":
            order = t.req(key, (str, list))
            if isinstance(order, list) and any(not isinstance(axis, str) for axis in order):
                raise t.error(key, "expected axis names such as 'tp-ep-dp-pp' or ['tp', 'ep', 'dp', 'pp']",
                              value=order)
            given[key] = tuple(order.split("-") if isinstance(order, str) else order)
        elif name == "pipeline_layout" and not isinstance(t.data[key], str):
            # Megatron-LM's --pipeline-model-parallel-layout is a string (moesim.specs.pipeline_layout)
            raise t.error(key, f"expected a string, got {t.data[key]!r}", value=t.data[key],
                          allowed="a string of pp·vp stages split by '|' in E (embedding), t (decoder layer), "
                                  "m (MTP layer), L (loss), e.g. \"Et*3|t*4|t*4|t*4L\"")
        elif name in ("recompute", "cp_comm", "pipeline_schedule", "pipeline_layout"):
            given[name] = t.req(key, str)
        elif name == "capacity_factor":
            value = t.req(key, (int, float, str))
            if isinstance(value, str) and value != DROPLESS:
                raise t.error(key, f"expected a number or '{DROPLESS}'", value=value)
            given[name] = None if value == DROPLESS else float(value)
        else:
            given[name] = t.req(key, int)
        if key in OPTION_KEYS:  # checked as written (polish, session 16): the error names `zero`, not zero_stage
            found = option_problem(name, given[name])
            if found is not None:
                problem, allowed = found
                raise t.error(key, problem or f"{given[name]!r} is not allowed", value=t.data[key], allowed=allowed)
    t.finish(allowed=LAYOUT_LINE_KEYS)
    return given


def typed_option_keys(data: dict) -> dict[str, str]:
    """TrainingSpec field -> the key a [layout] table spelled it with (`zero_stage` -> `zero`), for its errors."""
    return {OPTION_KEYS[key]: key for key in data if key in OPTION_KEYS}


def apply_layout_options(training: TrainingSpec, model: ModelSpec, options: dict[str, object], *,
                         explicit: dict[str, object], source: str, typed: dict[str, str] | None = None) -> TrainingSpec:
    """`training` with a layout line's execution options (micro-batches, ZeRO stage, recomputation,
    capacity factor); a [layout] option that contradicts the same key set in [training] is an error.
    `typed`: TrainingSpec field -> the key as the [layout] table wrote it (typed_option_keys), which errors name."""
    if not options:
        return training
    typed = typed or {}
    for name, value in options.items():
        if name in explicit and explicit[name] != value:
            key = typed.get(name, name)
            raise SpecError(f"'{key}' = {value!r} contradicts training.{name} = {explicit[name]!r}",
                            field=f"{source}.{key}", value=value)
    if "capacity_factor" in options and options["capacity_factor"] is None:
        if model.moe is None or not model.moe.dropless:
            rule = model.moe.capacity_rule if model.moe else "no experts"
            raise SpecError(f"'{DROPLESS}' needs a dropless model (capacity rule here: {rule})",
                            field=f"{source}.{typed.get('capacity_factor', 'capacity_factor')}", value=DROPLESS)
    try:
        return dataclasses.replace(training, **options)
    except SpecError as err:
        message, prefix = str(err), f"field '{err.field}': "
        message = message[len(prefix):] if message.startswith(prefix) else message
        message = message.rsplit(" (allowed: ", 1)[0] if err.allowed is not None else message
        key = (err.field or "").rsplit(".", 1)[-1]
        key = typed.get(key, key)
        raise SpecError(message, field=f"{source}.{key}" if key else source, value=err.value,
                        allowed=err.allowed) from None
