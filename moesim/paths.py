"""Where the built-in data lives, in a source checkout and in an installed package."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_DIR = _PACKAGE_DIR.parent

# kind -> (folder in a source checkout, folder inside the installed package)
_LOCATIONS = {
    "models": (_PACKAGE_DIR / "models" / "library", _PACKAGE_DIR / "models" / "library"),
    "hardware_profiles": (_REPO_DIR / "hardware_profiles", _PACKAGE_DIR / "_data" / "hardware_profiles"),
    "scenarios": (_REPO_DIR / "scenarios", _PACKAGE_DIR / "_data" / "scenarios"),
}


def builtin_dir(kind: str) -> Path:
    """The folder of built-in files of `kind`: the checkout's top-level folder when present."""
    checkout, installed = _LOCATIONS[kind]
    return checkout if checkout.is_dir() else installed


def builtin_names(kind: str) -> list[str]:
    """Names of the built-in files of `kind` (file stems), sorted."""
    directory = builtin_dir(kind)
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.iterdir() if p.suffix in (".toml", ".yaml", ".yml", ".json"))
