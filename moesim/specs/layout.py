"""Layout spec: the execution noun — how devices split the work.

Degrees (Megatron-Core MoE parallel folding, arXiv 2504.14960; ../shared/reference/modeling.md §2.1):
  attention/dense mesh   tp · dp · pp             = devices
  expert mesh            etp · ep · edp · pp      = devices,  so edp = tp·dp / (etp·ep)
Switch/GShard's expert+data parallelism is the case tp = etp = 1, ep ≤ dp: experts are laid over
the devices of a pipeline stage and expert parallelism reuses the data axis.

`order` lists the mesh axes innermost (fastest-varying device id) first. In the expert mesh
`tp` stands for etp and `dp` for edp, so ("tp", "ep", "dp", "pp") puts expert groups on
neighbouring devices (DeepSpeed's "E+D") and ("tp", "dp", "ep", "pp") spreads them ("D+E").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moesim.errors import SpecError

AXES = ("tp", "ep", "dp", "pp")
DEFAULT_ORDER = ("tp", "ep", "dp", "pp")
LAYOUT_KEYS = ("dp", "tp", "ep", "pp", "etp", "order")


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Parallel degrees and their order on the device mesh."""

    dp: int
    tp: int = 1
    ep: int = 1
    pp: int = 1
    etp: int = 1
    order: tuple[str, ...] = DEFAULT_ORDER

    def __post_init__(self) -> None:
        for name in ("dp", "tp", "ep", "pp", "etp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"degree must be an integer >= 1, got {value!r}", field=f"layout.{name}",
                                value=value)
        order = tuple(self.order)
        if sorted(order) != sorted(AXES):
            raise SpecError(f"order must list each of {', '.join(AXES)} once, got {', '.join(order)}",
                            field="layout.order", value=order, allowed=AXES)
        object.__setattr__(self, "order", order)

    @property
    def devices(self) -> int:
        return self.tp * self.dp * self.pp

    @property
    def edp(self) -> int:
        """Expert data-parallel degree: replicas of each expert within a pipeline stage."""
        return (self.tp * self.dp) // (self.etp * self.ep)

    def describe(self) -> str:
        text = f"dp={self.dp},tp={self.tp},ep={self.ep},pp={self.pp}"
        if self.etp != 1:
            text += f",etp={self.etp}"
        if self.order != DEFAULT_ORDER:
            text += f",order={'-'.join(self.order)}"
        return text

    def as_dict(self) -> dict[str, object]:
        return {"dp": self.dp, "tp": self.tp, "ep": self.ep, "pp": self.pp, "etp": self.etp,
                "edp": self.edp, "order": list(self.order)}


def _degrees_text(values: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def parse_layout_text(text: str, *, field: str = "--layout") -> dict[str, object]:
    """Parse `dp=8,tp=2,ep=8,pp=1[,etp=1][,order=tp-ep-dp-pp]` into a dict of given keys."""
    values: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in LAYOUT_KEYS:
            raise SpecError(f"'{part}' is not KEY=VALUE with a known key", field=field, value=text,
                            allowed=LAYOUT_KEYS)
        if key in values:
            raise SpecError(f"'{key}' is given twice", field=field, value=text)
        if key == "order":
            values[key] = tuple(a.strip() for a in value.replace("/", "-").split("-"))
            continue
        try:
            values[key] = int(value)
        except ValueError:
            raise SpecError(f"'{key}={value}' is not an integer degree", field=field, value=text) from None
    return values


def resolve_layout(
    given: dict[str, object],
    *,
    devices: int,
    num_experts: int,
    source: str = "layout",
) -> Layout:
    """Fill the degrees `given` leaves out: tp = pp = etp = 1, dp = devices/(tp·pp), and for MoE
    ep = gcd(experts, tp·dp/etp) — every expert on its own device where possible, as Switch does."""
    tp = int(given.get("tp", 1))
    pp = int(given.get("pp", 1))
    etp = int(given.get("etp", 1))
    if "dp" in given:
        dp = int(given["dp"])
    else:
        if tp < 1 or pp < 1 or devices % (tp * pp):
            raise SpecError(f"cannot infer dp: devices={devices} is not a multiple of tp·pp = {tp}·{pp}",
                            field=source, value=_degrees_text({"tp": tp, "pp": pp}))
        dp = devices // (tp * pp)
    if "ep" in given:
        ep = int(given["ep"])
    elif num_experts > 1 and etp >= 1 and (tp * dp) % etp == 0:
        ep = math.gcd(num_experts, (tp * dp) // etp)
    else:
        ep = 1
    order = tuple(given.get("order", DEFAULT_ORDER))
    return Layout(dp=dp, tp=tp, ep=ep, pp=pp, etp=etp, order=order)


def pipeline_stage_mismatch(layout: Layout) -> str | None:
    """Both meshes must cut the devices into the same pipeline stages; say why not, or None."""
    inner_attention = 1
    for axis in layout.order:
        if axis == "pp":
            break
        inner_attention *= {"tp": layout.tp, "dp": layout.dp, "ep": 1}[axis]
    inner_expert = 1
    for axis in layout.order:
        if axis == "pp":
            break
        inner_expert *= {"tp": layout.etp, "dp": layout.edp, "ep": layout.ep}[axis]
    if inner_attention != inner_expert:
        return (f"order {'-'.join(layout.order)} puts pp inside the mesh with tp={layout.tp} != etp={layout.etp}: "
                "attention and expert meshes would cut different pipeline stages")
    return None


def layout_problems(
    layout: Layout,
    *,
    devices: int,
    num_experts: int,
    num_heads: int,
    num_kv_heads: int,
    d_ff: int,
    expert_d_ff: int,
    num_layers: int,
    global_batch_sequences: int,
    micro_batches: int,
) -> list[str]:
    """Every reason `layout` is impossible (empty when valid). Pure; used by checks and search."""
    degrees = {"dp": layout.dp, "tp": layout.tp, "ep": layout.ep, "pp": layout.pp, "etp": layout.etp}
    text = _degrees_text(degrees)
    problems = []
    if layout.devices != devices:
        problems.append(f"tp·dp·pp = {layout.tp}·{layout.dp}·{layout.pp} = {layout.devices} must equal "
                        f"devices = {devices} ({text})")
    if (layout.tp * layout.dp) % (layout.etp * layout.ep):
        problems.append(f"etp·ep = {layout.etp}·{layout.ep} must divide tp·dp = {layout.tp}·{layout.dp} "
                        f"(etp·ep·edp·pp = devices; {text})")
    if num_experts <= 1 and layout.ep > 1:
        problems.append(f"ep = {layout.ep} needs an MoE model (this model has no experts)")
    elif num_experts > 1 and num_experts % layout.ep:
        problems.append(f"num_experts = {num_experts} is not divisible by ep = {layout.ep}")
    if num_heads % layout.tp:
        problems.append(f"num_heads = {num_heads} is not divisible by tp = {layout.tp}")
    elif num_kv_heads % layout.tp and layout.tp % num_kv_heads:
        problems.append(f"num_kv_heads = {num_kv_heads} and tp = {layout.tp}: one must divide the other")
    if d_ff % layout.tp:
        problems.append(f"d_ff = {d_ff} is not divisible by tp = {layout.tp}")
    if num_experts > 1 and expert_d_ff % layout.etp:
        problems.append(f"expert_d_ff = {expert_d_ff} is not divisible by etp = {layout.etp}")
    if num_layers % layout.pp:
        problems.append(f"layers = {num_layers} is not divisible by pp = {layout.pp}")
    mismatch = pipeline_stage_mismatch(layout) if not problems else None
    if mismatch:
        problems.append(mismatch)
    if global_batch_sequences % (layout.dp * micro_batches):
        problems.append(f"global batch = {global_batch_sequences} sequences is not divisible by "
                        f"dp·micro_batches = {layout.dp}·{micro_batches}")
    return problems
