"""Package discovery only (metadata lives in pyproject.toml).

The top-level `hardware_profiles/` and `scenarios/` folders, which users edit, are shipped inside
the installed package as `moesim._data.*` so built-in names work from a wheel too.
"""

from setuptools import find_packages, setup

DATA_PACKAGES = {
    "moesim._data.hardware_profiles": "hardware_profiles",
    "moesim._data.scenarios": "scenarios",
}

setup(
    packages=find_packages(include=["moesim*", "validate*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
)
