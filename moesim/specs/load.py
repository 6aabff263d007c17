"""Loading specs from data files: TOML (and YAML/JSON for scenarios), strict, with units converted.

Built-in names resolve to the files shipped with moesim: models in `moesim/models/library/`,
hardware profiles in `hardware_profiles/`, scenarios in `scenarios/`. Anything else is read as a
path. Every file carries `schema_version`; unknown and missing keys are errors naming the file.

The readers live per kind of file and are all importable from here, as before:
  data_files.py     parsing, built-in names → paths, the file named in errors, strict list keys
  model_file.py     model files (and a scenario's inline [model]) → ModelSpec
  hardware_file.py  hardware profiles → HardwareProfile (human units → SI)
  scenario_file.py  scenarios → Scenario ([training], [layout], [search], [moe]; CLI overrides)
"""

from __future__ import annotations

from moesim.specs.data_files import DATA_SUFFIXES, SCHEMA_VERSION, read_data_file, resolve_ref
from moesim.specs.hardware_file import hardware_from_table, load_hardware
from moesim.specs.model_file import load_model, model_from_table
from moesim.specs.scenario_file import (
    SCENARIO_MOE_KEYS, load_scenario, scenario_from_table, scenario_moe, search_from_table, training_from_table,
)

__all__ = [
    "DATA_SUFFIXES", "SCENARIO_MOE_KEYS", "SCHEMA_VERSION", "hardware_from_table", "load_hardware", "load_model",
    "load_scenario", "model_from_table", "read_data_file", "resolve_ref", "scenario_from_table", "scenario_moe",
    "search_from_table", "training_from_table",
]
