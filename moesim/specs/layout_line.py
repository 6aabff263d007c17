"""A layout's keys and its one-line text form (session 25, tidy25: moved out of moesim/specs/layout.py, which still
exports every name): the keys of a [layout] table and of the `--layout` line `moesim search` prints, the execution
options a line may carry too (OPTION_KEYS), and `parse_layout_text` / `layout_arg`, which read and write the line
(parse_layout_text(layout_arg(d)) == d). What the degrees mean: moesim/specs/layout.py's docstring.
"""

from __future__ import annotations

from moesim.errors import SpecError

STAGE_KEYS = ("first_stage_layers", "last_stage_layers")
LAYOUT_KEYS = ("dp", "tp", "ep", "pp", "etp", "order") + STAGE_KEYS + ("vp", "cp", "cp_comm", "pipeline_layout")
# Execution options a layout line may carry too, as `moesim search` prints them (short spelling) or by
# their TrainingSpec names; `edp` is derived and only checked. Short spelling -> TrainingSpec field.
OPTION_KEYS = {"mb": "micro_batches", "micro_batches": "micro_batches", "zero": "zero_stage",
               "zero_stage": "zero_stage", "recompute": "recompute", "cf": "capacity_factor",
               "capacity_factor": "capacity_factor", "schedule": "pipeline_schedule",
               "pipeline_schedule": "pipeline_schedule"}
DROPLESS = "dropless"  # the capacity-factor value (and bare word) search prints for dropless routing
LAYOUT_LINE_KEYS = LAYOUT_KEYS + ("edp",) + tuple(OPTION_KEYS)


def parse_layout_text(text: str, *, field: str = "--layout") -> dict[str, object]:
    """Parse `dp=8,tp=2,ep=8,pp=1[,etp=1][,edp=2][,order=tp-ep-dp-pp][,first_stage_layers=3]
    [,last_stage_layers=3][,mb=4][,zero=1][,recompute=selective][,cf=1.25|dropless]` (commas or spaces;
    the line `moesim search` prints is accepted as it stands) into a dict of given keys; execution
    options come back under their TrainingSpec names (OPTION_KEYS), `dropless` as capacity_factor None."""
    values: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.replace(",", " ").split())):
        key, sep, value = part.partition("=")
        key = key.strip()
        if key == DROPLESS and not sep:
            key, sep, value = "cf", "=", DROPLESS
        if not sep or key not in LAYOUT_LINE_KEYS:
            raise SpecError(f"'{part}' is not KEY=VALUE with a known key", field=field, value=text,
                            allowed=LAYOUT_LINE_KEYS)
        name = OPTION_KEYS.get(key, key)
        if name in values:
            raise SpecError(f"'{key}' is given twice", field=field, value=text)
        values[name] = parse_layout_value(name, value.strip(), field=field, text=text, key=key)
        if name in OPTION_KEYS.values():
            check_option(f"{key}={value.strip()}", name, values[name], field=field, text=text)
    return values


def option_problem(name: str, value: object) -> tuple[str, object] | None:
    """(problem, allowed) of an execution option's value (TrainingSpec field `name`): the bounds of
    moesim.specs.ranges (allowed: their description), else TrainingSpec's choices (allowed: the tuple); None: fine."""
    from moesim.specs.ranges import RANGES
    from moesim.specs.training import PIPELINE_SCHEDULES, RECOMPUTE_MODES

    rng = RANGES["TrainingSpec"].get(name)
    problem = None if rng is None or value is None else rng.problem(value)
    if problem:
        return problem, rng.describe()
    choices = {"recompute": RECOMPUTE_MODES, "pipeline_schedule": PIPELINE_SCHEDULES}.get(name)
    if choices is not None and value not in choices:
        return "", choices
    return None


def check_option(typed: str, name: str, value: object, *, field: str, text: str) -> None:
    """An execution option checked as the user typed it (`typed`: its KEY=VALUE, so the error says `zero`, not
    the TrainingSpec field zero_stage): the bounds of moesim.specs.ranges and TrainingSpec's choices."""
    found = option_problem(name, value)
    if found is None:
        return
    problem, allowed = found
    if problem:
        raise SpecError(f"'{typed}': {problem}", field=field, value=text, allowed=allowed)
    raise SpecError(f"'{typed}' is not allowed", field=field, value=text,
                    allowed=tuple(f"{typed.partition('=')[0]}={c}" for c in allowed))


def parse_layout_value(name: str, value: str, *, field: str, text: str, key: str | None = None) -> object:
    """One value of a layout line: the order as a tuple, recompute as text, the capacity factor as a
    number (None for `dropless`), every other key as an integer. `key`: the key as typed (`zero` for zero_stage,
    `cf` for capacity_factor), which the errors name; None: `name`."""
    key = key or name
    if name == "order":
        return tuple(a.strip() for a in value.replace("/", "-").split("-"))
    if name in ("recompute", "cp_comm", "pipeline_schedule", "pipeline_layout"):
        return value
    if name == "capacity_factor":
        if value == DROPLESS:
            return None
        try:
            return float(value)
        except ValueError:
            raise SpecError(f"'{key}={value}' is not a number or '{DROPLESS}'", field=field, value=text,
                            allowed=f"{key}=NUMBER, {key}={DROPLESS}; KEY=VALUE pairs separated by commas or spaces"
                            ) from None
    try:
        return int(value)
    except ValueError:
        raise SpecError(f"'{key}={value}': {key} is not an integer", field=field, value=text,
                        allowed=f"{key}=INTEGER; KEY=VALUE pairs separated by commas or spaces") from None


def split_layout_options(given: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """(layout keys, execution options by TrainingSpec field) of a parsed layout line or [layout] table."""
    options = {k: v for k, v in given.items() if k in OPTION_KEYS.values()}
    return {k: v for k, v in given.items() if k not in options}, options


def layout_arg(lay: dict) -> str:
    """The `--layout` line of a layout dict (degrees, order, stage sizes, and when present micro_batches,
    zero_stage, recompute, capacity_factor; None = dropless): parse_layout_text reads it back exactly."""
    parts = [f"{k}={lay[k]}" for k in ("dp", "tp", "ep", "pp", "etp", "edp") if k in lay]
    if "order" in lay:
        parts.append(f"order={'-'.join(lay['order'])}")
    parts += [f"{k}={lay[k]}" for k in STAGE_KEYS if lay.get(k) is not None]
    parts += [f"{k}={lay[k]}" for k in ("vp", "cp", "cp_comm", "pipeline_layout") if k in lay]
    short = {"micro_batches": "mb", "zero_stage": "zero", "recompute": "recompute",
             "pipeline_schedule": "schedule"}
    parts += [f"{short[k]}={lay[k]}" for k in short if k in lay]
    if "capacity_factor" in lay:
        cf = lay["capacity_factor"]
        parts.append(f"cf={DROPLESS if cf is None else repr(float(cf))}")
    return ",".join(parts)
