"""Import a HuggingFace `config.json` as a ModelSpec (read locally; nothing is downloaded).

`load_model` sends every `config.json` (and every JSON file with a `model_type`) here. The file's
`model_type` picks a family reader in `moesim.models.hf_families`; each reader maps the family's
keys onto ModelSpec the way the family's HF modeling code builds its layers (which layers are
sparse, gated FFNs, biases, shared experts, MLA). A config.json carries many keys moesim does not
need (token ids, dropout, RoPE scaling, quantisation): those are ignored; a key a reader needs and
the file lacks is a SpecError naming the file and the key; a family moesim cannot read is a
SpecError listing the ones it can.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from moesim.errors import SpecError
from moesim.paths import parse_json_text, read_text_file
from moesim.specs.model import ModelSpec

_MISSING = object()
_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list", dict: "object"}


class HFConfig:
    """One JSON object of a config.json (or a nested one, e.g. DBRX's `ffn_config`), read by key."""

    def __init__(self, data: dict[str, Any], *, file: str, path: str = "") -> None:
        self.data = data
        self.file = file
        self.path = path

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str, value: object = None, allowed: Any = None) -> SpecError:
        return SpecError(message, file=self.file, field=self.key_path(key), value=value, allowed=allowed)

    def _get(self, key: str, kind: type, default: Any, nullable: bool) -> Any:
        if key not in self.data:
            if default is _MISSING:
                raise self.error(key, "required key is missing from the HuggingFace config")
            return default
        value = self.data[key]
        if value is None and nullable:
            return None
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and not math.isfinite(value):
                raise self.error(key, f"{value} is not a finite number", value=value)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise self.error(key, f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}", value=value)
        return value

    def req(self, key: str, kind: type, *, nullable: bool = False) -> Any:
        """A key the family needs; `nullable` lets JSON null through (e.g. DeepSeek's q_lora_rank)."""
        return self._get(key, kind, _MISSING, nullable)

    def opt(self, key: str, kind: type, default: Any, *, nullable: bool = False) -> Any:
        """A key with the default the family's HF config class uses when the file omits it
        (with `nullable`, JSON null also gives the default)."""
        value = self._get(key, kind, default, nullable)
        return default if value is None else value

    def sub(self, key: str) -> "HFConfig":
        """A nested object (DBRX's `ffn_config`, `attn_config`)."""
        return HFConfig(self.req(key, dict), file=self.file, path=self.key_path(key))

    def name(self, path: Path) -> str:
        """The model's name: the repository of `_name_or_path`, else the folder holding config.json."""
        ref = self.opt("_name_or_path", str, "")
        if ref:
            return ref.rstrip("/").rsplit("/", 1)[-1]
        return path.parent.name if path.name == "config.json" and path.parent.name else path.stem


def read_hf_config(path: str | Path) -> HFConfig:
    """Parse `path` as JSON; unreadable files and non-objects are SpecErrors naming the file."""
    p = Path(path)
    data = parse_json_text(read_text_file(p), file=str(p))
    if not isinstance(data, dict):
        raise SpecError("a HuggingFace config.json holds one JSON object", file=str(p))
    return HFConfig(data, file=str(p))


def model_from_hf_config(path: str | Path) -> ModelSpec:
    """The ModelSpec of a local HuggingFace `config.json` (families: `SUPPORTED_MODEL_TYPES`)."""
    from moesim.models.hf_families import READERS

    p = Path(path)
    cfg = read_hf_config(p)
    model_type = cfg.req("model_type", str)
    reader = READERS.get(model_type)
    if reader is None:
        raise cfg.error("model_type", f"model_type '{model_type}' is not supported", value=model_type,
                        allowed=tuple(sorted(READERS)))
    try:
        return reader(cfg, p)
    except SpecError as err:
        raise err.in_file(str(p)) from None
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as err:
        # a reader's arithmetic on the file's raw numbers (e.g. hidden_size / num_attention_heads with 0
        # heads) failed before any spec could check a range: the file holds impossible values
        raise SpecError(f"impossible values for a {model_type} model ({type(err).__name__}: {err}); check the "
                        "sizes and counts in the file", file=str(p)) from None


def supported_model_types() -> tuple[str, ...]:
    """The `model_type` values moesim reads."""
    from moesim.models.hf_families import READERS

    return tuple(sorted(READERS))
