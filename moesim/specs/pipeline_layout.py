"""Megatron's pipeline layout string (`--pipeline-model-parallel-layout`): which layers each virtual stage holds.

Grammar and checks as Megatron-LM writes them (NVIDIA/Megatron-LM @ d98e8a64,
megatron/core/transformer/pipeline_parallel_layer_layout.py): virtual stages are split by `|`; `E` the embedding,
`t` a decoder layer, `m` an MTP layer, `L` the loss; `x*n` repeats a symbol and `(...)*n` a group (`parse_str_to_list`,
its two re.sub patterns); commas are cosmetic. The stage list's length must be a multiple of pp, vp = length / pp,
and virtual stage i runs on pipeline rank i mod pp as its chunk i // pp (`__init__`, "Convert 1D layout to 2D").
`validate_layer_layout`: the first layer is E and the last L, each once; the decoder count is the model's layers and
the MTP count its depth; no decoder after an MTP layer; MTP only in its rank's last chunk, all in one chunk.

What moesim prices beyond that (its engines put the embedding on the first piece, the head and MTP modules on the
last one): E in virtual stage 0, L and every m in the last virtual stage, and a device's decoder layers as its
first / last stage counts plus moesim's split of the rest (specs.layout.stage_layers); a layout outside these is a
clear error, not a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from moesim.errors import SpecError

SYMBOLS = {"E": "embedding", "t": "decoder layer", "m": "MTP layer", "L": "loss"}
# Megatron-LM pipeline_parallel_layer_layout.py parse_str_to_list: ()*n groups first, then x*n.
_UNROLL = (r"\(([^)]+)\)\*(\d+)", r"(.)\*(\d+)")


def expand(text: str, *, field: str = "layout.pipeline_layout", file: str | None = None) -> tuple[str, ...]:
    """The virtual stages of `text`, each as its symbols ("Et*2|tt" -> ("Ett", "tt")); SpecError on a bad symbol."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError("expected a Megatron pipeline layout such as 'Et*4|(t*4|)*14tmL'", file=file, field=field,
                        value=text)
    flat = text.replace(",", "").replace(" ", "")
    for pattern in _UNROLL:  # parse_str_to_list's unrolling, in its order
        flat = re.sub(pattern, lambda x: x.group(1) * int(x.group(2)), flat)
    bad = sorted(set(flat) - set(SYMBOLS) - {"|"})
    if bad:
        raise SpecError(f"unknown layer symbols {bad} in the pipeline layout (after unrolling x*n and (...)*n)",
                        file=file, field=field, value=text, allowed=[f"{k} ({v})" for k, v in SYMBOLS.items()])
    return tuple(flat.split("|"))


@dataclass(frozen=True)
class PipelineLayout:
    """A parsed layout: `stages` the virtual stages in layer order (virtual stage i on device i mod pp)."""

    text: str
    pp: int
    stages: tuple[str, ...]

    @property
    def vp(self) -> int:
        return len(self.stages) // self.pp

    @property
    def chunk_layers(self) -> tuple[int, ...]:
        """Decoder layers of each virtual stage, in layer order."""
        return tuple(s.count("t") for s in self.stages)

    @property
    def device_layers(self) -> tuple[int, ...]:
        """Decoder layers on each of the pp devices (the sum of its chunks)."""
        return tuple(sum(self.chunk_layers[d::self.pp]) for d in range(self.pp))


def parse(text: str, pp: int, *, field: str = "layout.pipeline_layout", file: str | None = None) -> PipelineLayout:
    """`text` for pp pipeline ranks; SpecError (file, field, what was expected) when its stages are not a
    multiple of pp or it breaks a rule of the module docstring that needs no model."""
    if not isinstance(text, str):  # (before the cache: an unhashable value is the field's error too)
        expand(text, field=field, file=file)
    return _parse(text, pp, field, file)


@lru_cache(maxsize=256)  # pure, and read per candidate by the estimate, the layout and the loaders: parsed once
def _parse(text: str, pp: int, field: str, file: str | None) -> PipelineLayout:
    stages = expand(text, field=field, file=file)
    if pp < 1 or len(stages) % pp:
        raise SpecError(f"the pipeline layout has {len(stages)} virtual stages, not a multiple of pp = {pp}",
                        file=file, field=field, value=text, allowed="pp·vp stages separated by '|'")
    flat = "".join(stages)
    for sym in "EL":
        if flat.count(sym) != 1:
            raise SpecError(f"the pipeline layout must hold '{sym}' ({SYMBOLS[sym]}) exactly once, "
                            f"got {flat.count(sym)}", file=file, field=field, value=text)
    if not flat.startswith("E") or not flat.endswith("L"):
        raise SpecError("the pipeline layout's first layer must be 'E' and its last 'L'", file=file, field=field,
                        value=text)
    if "E" not in stages[0] or "L" not in stages[-1]:
        raise SpecError("moesim prices the embedding on the first virtual stage and the loss on the last: "
                        "'E' must open the first stage and 'L' end the last (no empty stage before E or after L)",
                        file=file, field=field, value=text)
    if "m" in flat:
        if "t" in flat[flat.index("m"):]:
            raise SpecError("decoder layers must be placed before MTP layers", file=file, field=field, value=text)
        if flat.count("m") != stages[-1].count("m"):
            raise SpecError("moesim prices the MTP modules on the last virtual stage (beside the loss): every 'm' "
                            "must be in the last stage", file=file, field=field, value=text)
    return PipelineLayout(text=text, pp=pp, stages=stages)


def layout_problems(pl: PipelineLayout, *, num_layers: int, mtp_depth: int, vp: int,
                    first: int | None, last: int | None) -> list[str]:
    """Why `pl` cannot run a model of `num_layers` decoder layers and `mtp_depth` MTP modules with the layout's
    vp / first_stage_layers / last_stage_layers (empty when it can)."""
    from moesim.specs.layout import stage_layers, stage_split_problem

    out = []
    if vp != pl.vp:
        out.append(f"vp = {vp} but the pipeline layout has {len(pl.stages)} virtual stages = pp·{pl.vp}")
    flat = "".join(pl.stages)
    if flat.count("t") != num_layers:
        out.append(f"the pipeline layout holds {flat.count('t')} decoder layers ('t'), the model {num_layers}")
    if flat.count("m") != mtp_depth:
        out.append(f"the pipeline layout holds {flat.count('m')} MTP layers ('m'), the model {mtp_depth}")
    if out:
        return out
    dev = pl.device_layers
    if pl.pp > 1:
        for key, given, derived in (("first_stage_layers", first, dev[0]), ("last_stage_layers", last, dev[-1])):
            if given is not None and given != derived:
                out.append(f"{key} = {given} but the pipeline layout puts {derived} decoder layers on that device")
        if min(dev[0], dev[-1]) < 1 or stage_split_problem(num_layers, pl.pp, dev[0], dev[-1]):
            out.append(f"the pipeline layout's devices hold {list(dev)} decoder layers: every device needs one "
                       "or more in moesim's engines")
        elif tuple(stage_layers(num_layers, pl.pp, dev[0], dev[-1])) != dev:
            out.append(f"the pipeline layout's devices hold {list(dev)} decoder layers; moesim writes a device's "
                       "layers as the first / last stage counts and its own split of the rest "
                       f"({list(stage_layers(num_layers, pl.pp, dev[0], dev[-1]))}), so this layout is not priced")
    return out
