"""Generate docs/keys.md: every key of a scenario, hardware profile and model file, and of the JSON that
`moesim collective` and `moesim calibrate` print.

Types, defaults, required keys and allowed values come from the loaders (moesim.specs.load) as
they read every shipped file plus one scenario that sets every [training], [layout] and [search]
key (the loaders are the spec of the file formats: what they ask for is what a file may hold).
Meanings and unit overrides come from docs/key_meanings.toml; units otherwise follow the key's
suffix. `python docs/make_keys.py` rewrites docs/keys.md; `--check` exits 1 when it is stale
(tests/test_key_reference.py runs the same comparison).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from moesim.paths import builtin_dir, builtin_names  # noqa: E402
from moesim.specs import fields  # noqa: E402
from moesim.specs.file_units import HARDWARE_FILE_KEYS  # noqa: E402
from moesim.specs.hardware import DTYPES  # noqa: E402
from moesim.specs.layout import LAYOUT_LINE_KEYS, OPTION_KEYS, STAGE_KEYS, Layout  # noqa: E402
from moesim.specs.load import load_hardware, load_model, load_scenario  # noqa: E402
from moesim.specs.ranges import RANGES, Range  # noqa: E402
from moesim.specs.scenario import SearchSpace  # noqa: E402
from moesim.specs.training import (  # noqa: E402
    DISPATCH_IMPLS, OPTIMIZERS, PIPELINE_SCHEDULES, RECOMPUTE_MODES, ZERO_STAGES, TrainingSpec,
)

MEANINGS = Path(__file__).resolve().parent / "key_meanings.toml"
OUTPUT = Path(__file__).resolve().parent / "keys.md"
KINDS = ("scenario", "hardware", "model")
TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list", dict: "table"}
_MISSING = fields._MISSING


def _every_key_scenario(directory: Path) -> Path:
    """A scenario giving every [training], [search] and [system] key and a full [layout] (so the loaders read them)."""
    lines = ['schema_version = 1', 'name = "every-key"', 'model = "switch-base-8"', 'hardware = "h100-sxm"',
             'devices = 8', '[training]']
    for f in dataclasses.fields(TrainingSpec):
        value = f.default if f.default is not dataclasses.MISSING else 8
        value = (1 if f.type == "int | None" else 1.0) if value is None else value
        lines.append(f"{f.name} = {_toml(value)}")
    lines += ["[layout]", "dp = 8", "tp = 1", "ep = 8", "pp = 1", "etp = 1", "edp = 1", 'order = "tp-ep-dp-pp"',
              "[search]"]
    given = {"capacity_factors": [1.0], "orders": ["tp-ep-dp-pp"]}
    for f in dataclasses.fields(SearchSpace):
        lines.append(f"{f.name} = {_toml(given.get(f.name, _spec_default(f)))}")
    lines += ["[system]", 'host_cpu = "intel"', 'gpu_nic_path = "PXB"']  # facts over the profile's network level
    path = directory / "every-key.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _spec_default(f: dataclasses.Field):
    return f.default if f.default_factory is dataclasses.MISSING else f.default_factory()


# Values TrainingSpec checks itself (the loader reads them as plain strings / integers).
CHOICES = {"optimizer": OPTIMIZERS, "recompute": RECOMPUTE_MODES, "pipeline_schedule": PIPELINE_SCHEDULES,
           "dispatch_impl": DISPATCH_IMPLS, "zero_stage": ZERO_STAGES,
           **{f"{w}_dtype": DTYPES for w in ("param", "compute", "grad", "dispatch", "combine", "optimizer_state")}}
SPEC_TABLES = {"training": TrainingSpec, "search": SearchSpace}  # tables read into a spec dataclass field by field


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def record() -> dict[tuple[str, str], dict]:
    """{(kind, dotted key): {types, default, required, allowed}} from the loaders reading the files."""
    fields.RECORDER = calls = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            load_scenario(str(_every_key_scenario(Path(tmp))))
        for name in builtin_names("scenarios"):
            load_scenario(name)
        for name in builtin_names("hardware_profiles"):
            load_hardware(name)
        for name in builtin_names("models"):
            load_model(name)
    finally:
        fields.RECORDER = None
    dirs = {str(builtin_dir("hardware_profiles")): "hardware", str(builtin_dir("models")): "model"}
    keys: dict[tuple[str, str], dict] = {}
    for file, path, key, kind, default, allowed in calls:
        owner = next((k for d, k in dirs.items() if file.startswith(d)), "scenario")
        if owner == "scenario" and path.split(".")[0] == "model" and path != "":
            continue  # an inline [model] table: the model keys below
        entry = keys.setdefault((owner, f"{path}.{key}" if path else key),
                                {"types": set(), "defaults": set(), "required": False, "allowed": None})
        if kind is not None:
            entry["types"].add(kind)
            if default is _MISSING:
                entry["required"] = True
            elif default is not None:
                entry["defaults"].add(_toml(default))
        if allowed is not None:
            entry["allowed"] = allowed
    for table, spec in SPEC_TABLES.items():  # their defaults are the spec's
        for f in dataclasses.fields(spec):
            entry = keys.get(("scenario", f"{table}.{f.name}"))
            if entry is not None and f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                if entry is not None and not entry["required"]:
                    default = _spec_default(f)
                    entry["defaults"] = {"unset" if default is None else _toml(default)}
    # [layout] is read through has(): every key is optional; types of the keys no file sets come from the
    # spec field they set (Layout's stage sizes, TrainingSpec's options).
    spec_types = {f.name: f.type for f in dataclasses.fields(TrainingSpec)} | \
        {f.name: f.type for f in dataclasses.fields(Layout)}
    names = {"int": int, "int | None": int, "float | None": float, "str": str}
    for key in LAYOUT_LINE_KEYS:
        entry = keys.setdefault(("scenario", f"layout.{key}"), {"types": set(), "defaults": set(),
                                                                 "required": False, "allowed": None})
        entry["required"] = False
        field_name = OPTION_KEYS.get(key, key)
        if not entry["types"] and (key in OPTION_KEYS or key in STAGE_KEYS):
            entry["types"] = {names[spec_types[field_name]]} | ({str} if field_name == "capacity_factor" else set())
        if field_name in CHOICES:
            entry["allowed"] = CHOICES[field_name]
    for name, allowed in CHOICES.items():
        if ("scenario", f"training.{name}") in keys:
            keys[("scenario", f"training.{name}")]["allowed"] = allowed
    return keys


def _type_text(types: set) -> str:
    names = []
    for t in types:
        for one in (t if isinstance(t, tuple) else (t,)):
            name = TYPE_NAMES.get(one, getattr(one, "__name__", str(one)))
            if name not in names:
                names.append(name)
    return " or ".join(sorted(names)) or "see meaning"


def _unit(key: str, units: dict[str, str]) -> str:
    leaf = key.rsplit(".", 1)[-1]
    for suffix, unit in units.items():
        if leaf.endswith(suffix) or key.endswith(suffix):
            return unit
    return ""


# (kind, table path) → the spec class whose RANGES entry a key of that table is checked against, by its name.
RANGE_SPECS = {("scenario", ""): "Scenario", ("scenario", "training"): "TrainingSpec", ("scenario", "search"): "SearchSpace",
               ("scenario", "layout"): "Layout", ("scenario", "moe"): "MoESpec",
               ("hardware", ""): "HardwareProfile", ("hardware", "chip"): "ChipSpec",
               ("hardware", "interconnect"): "InterconnectLevel", ("hardware", "efficiency"): "ComputeEfficiency",
               ("model", ""): "ModelSpec", ("model", "moe"): "MoESpec", ("model", "attention"): "AttentionSpec"}


def _interval(rng: Range, per_chip_power: int = 0) -> str:
    """`[1, 4096] integer`, `(0, 1e+06]`; per-chip limits (hardware) are given for devices_per_chip = n."""
    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.5g}"
    hi = fmt(rng.hi) + {-1: "·n", 1: "/n", 0: ""}[per_chip_power]
    text = f"{'(' if rng.lo_open else '['}{fmt(rng.lo)}, {hi}]"
    return text + (" integer" if rng.integer else "")


def _range(kind: str, key: str) -> str:
    """The key's valid range from moesim/specs/ranges.py, in the file's unit (hardware keys in human units via
    moesim/specs/file_units.py); empty where RANGES has none."""
    if kind == "hardware":
        for fk in HARDWARE_FILE_KEYS:
            pattern = fk.file_key.replace("[]", "")
            if pattern == key or ("*" in pattern and key.startswith(pattern[:-1]) and "." not in key[len(pattern) - 1:]):
                return _interval(fk.file_range(1), fk.per_chip_power)
    table, _, leaf = key.rpartition(".")
    spec = RANGE_SPECS.get((kind, table))
    if kind == "scenario" and table == "layout" and leaf in OPTION_KEYS:
        spec, leaf = "TrainingSpec", OPTION_KEYS[leaf]
    rng = RANGES.get(spec or "", {}).get(leaf)
    return _interval(rng) if rng is not None else ""


def render() -> str:
    """docs/keys.md as text; raises KeyError naming keys the loaders read that have no meaning."""
    meanings = tomllib.loads(MEANINGS.read_text(encoding="utf-8"))
    keys = record()
    missing = [f"{kind}: {key}" for kind, key in keys if key not in meanings[kind]]
    if missing:
        raise KeyError("keys without a meaning in docs/key_meanings.toml: " + ", ".join(sorted(missing)))
    out = ["# File keys: scenarios, hardware profiles, models", "",
           "Generated by `python docs/make_keys.py` from the loaders (`moesim/specs/load.py`) and",
           "`docs/key_meanings.toml`; `tests/test_key_reference.py` fails when this page is stale. Unknown",
           "keys are errors that list the table's allowed keys and the closest match. The range column is",
           "what `moesim/specs/ranges.py` accepts, in the key's unit (`(`: lower bound excluded); for per-chip",
           "hardware figures n is the chip's `devices_per_chip`.", ""]
    titles = {"scenario": "Scenario files (`scenarios/*.toml`, `.yaml`, `.json`)",
              "hardware": "Hardware profiles (`hardware_profiles/*.toml`)",
              "model": "Model files (`moesim/models/library/*.toml`; or a HuggingFace `config.json`)"}
    for kind in KINDS:
        out += [f"## {titles[kind]}", "", "| key | type | unit | range | required / default | meaning |",
                "|---|---|---|---|---|---|"]
        for (owner, key), e in sorted(keys.items(), key=lambda kv: (kv[0][1].count("."), kv[0][1])):
            if owner != kind:
                continue
            need = "required" if e["required"] else (", ".join(sorted(e["defaults"])) or "optional")
            meaning = meanings[kind][key]
            if e["allowed"]:
                meaning += " (one of: " + ", ".join(f"`{a}`" for a in e["allowed"]) + ")"
            out.append(f"| `{key}` | {_type_text(e['types'])} | {_unit(key, meanings['units'])} | {_range(kind, key)} | {need} | "
                       f"{meaning} |")
        out.append("")
    routing = meanings["routing_file"]
    out += ["## Routing histogram files (`moesim simulate --routing FILE`)", "", routing["text"].strip(), ""]
    for name, text in routing["examples"]:
        out += [f"`{name}`:", "", "```", text.rstrip("\n"), "```", ""]
    for section, title in OUTPUT_TITLES.items():
        out += [f"## {title}", "", "| key | unit | meaning |", "|---|---|---|"]
        out += [f"| `{key}` | {unit} | {meaning} |" for key, (unit, meaning) in meanings[section].items()]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# JSON a command prints (docs/key_meanings.toml [output_*]; tests/cli/test_json_keys_documented.py runs the commands)
OUTPUT_TITLES = {"output_collective": "JSON of `moesim collective --json`",
                 "output_calibrate": "JSON of `moesim calibrate --json` (nccl-tests logs; layer records add `held_out` "
                                     "and more, docs/calibration.md)",
                 "output_validate_report_logs": "JSON of `moesim validate-report --json` on nccl-tests logs only",
                 "output_simulate": "JSON of `moesim simulate --json`",
                 "output_estimate": "JSON of `moesim estimate --json`",
                 "output_search": "JSON of `moesim search --json`",
                 "output_sweep": "JSON of `moesim sweep --json`"}


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print("docs/keys.md is stale: run python docs/make_keys.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
