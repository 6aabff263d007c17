"""FP8 scaling schemes, named precision recipes, and the cost of quantising a tensor to FP8.

Pure functions: the operator layer prices a quantise as a memory-bound operator from the bytes
`quantise_cost` returns (and the estimate does so today in `estimate/terms.py`).

Notation: N elements of a tensor, q_src bytes per source element (2 for BF16), s scale bytes per
element (the scale tensor's size over the data's), c copies written (rowwise + columnwise).

Scaling schemes (../shared/reference/wave2.md §6):
  per_tensor_delayed  one FP32 scale per tensor from the amax history of past steps
                      (TransformerEngine DelayedScaling): the amax of this tensor is reduced inside
                      the cast kernel, so a cast reads the tensor once.
  per_tensor_current  one FP32 scale from the current tensor's amax (TE Float8CurrentScaling):
                      "an extra read pass", so the tensor is read twice.
  blockwise           1×128 activation tiles and 128×128 weight blocks, FP32 scales (DeepSeek-V3
                      §3.3.2; TE Float8BlockScaling): amax per tile inside the cast kernel;
                      s = 4/128 bytes per element.
  mxfp8               1×32 blocks with E8M0 (1-byte, power-of-two) scales (TE MXFP8BlockScaling,
                      Blackwell SM100+): s = 1/32 bytes per element.

Copies: an FP8 GEMM on Hopper takes only the TN layout, so the weight gradient needs the
activation and the output gradient transposed as well; TE's fused cast-transpose writes both
copies from one read (wave2.md §7.1 Fprop TN / Dgrad NN / Wgrad NT layouts). MXFP8 scales along
one dimension only, so Wgrad needs a second, columnwise-scaled copy (TE MXFP8 recipe). Either
way c = 2 copies per quantised activation or gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from moesim.errors import SpecError
from moesim.paths import read_versioned_toml

SCALINGS = ("none", "per_tensor_delayed", "per_tensor_current", "blockwise", "mxfp8")
FP32_SCALE_BYTES = 4
E8M0_SCALE_BYTES = 1
BLOCKWISE_TILE = 128  # 1×128 activation tiles (DeepSeek-V3 §3.3.2)
MXFP8_BLOCK = 32  # 1×32 blocks (TE MXFP8BlockScaling; OCP MX spec)
QUANTISED_COPIES = 2  # rowwise + transposed / columnwise copy for the weight gradient (module docstring)
RECIPES_FILE = Path(__file__).resolve().parent / "precision_recipes.toml"
RECIPES_SCHEMA_VERSION = 1


def scale_bytes_per_element(scaling: str) -> float:
    """s, the scale tensor's bytes per data element: 4/128 blockwise, 1/32 MXFP8, ~0 per tensor.

    Source: DeepSeek-V3 (arXiv 2412.19437) §3.3.2 (1×128 tiles, FP32 scales); TE MXFP8BlockScaling
    (1×32, E8M0). One scale per tensor is negligible (0)."""
    if scaling not in SCALINGS:
        raise SpecError(f"unknown FP8 scaling '{scaling}'", field="training.gemm_scaling", value=scaling,
                        allowed=SCALINGS)
    if scaling == "blockwise":
        return FP32_SCALE_BYTES / BLOCKWISE_TILE
    if scaling == "mxfp8":
        return E8M0_SCALE_BYTES / MXFP8_BLOCK
    return 0.0


def weight_scale_bytes_per_element(scaling: str) -> float:
    """s_w of a weight: 128×128 blocks for blockwise (4/16384), else as the activations.

    Source: DeepSeek-V3 (arXiv 2412.19437) §3.3.2 (128×128 weight blocks); TE MXFP8 (1×32 both)."""
    if scaling == "blockwise":
        return FP32_SCALE_BYTES / (BLOCKWISE_TILE * BLOCKWISE_TILE)
    return scale_bytes_per_element(scaling)


def fp8_weight_copy_bytes(params, scaling: str, copies: int = QUANTISED_COPIES):
    """Bytes of the FP8 copies of `params` GEMM weights: c·P·(1 + s_w) (by default rowwise + transposed/columnwise,
    as the activations: Dgrad needs Wᵀ on Hopper's TN-only FP8 GEMMs); 0 without FP8."""
    if scaling == "none":
        return 0.0 * params
    return copies * params * (1 + weight_scale_bytes_per_element(scaling))


def weight_quantise_cost(params, scaling: str, param_bytes: float = 2.0,
                         copies: int = QUANTISED_COPIES) -> QuantiseCost:
    """Casting `params` weights to FP8: read q_p·P, write fp8_weight_copy_bytes (`copies` copies); 2P amax FLOP."""
    if scaling == "none":
        return QuantiseCost(0.0 * params, 0.0 * params, 0.0 * params)
    return QuantiseCost(param_bytes * params, fp8_weight_copy_bytes(params, scaling, copies), 2.0 * params)


def weight_transpose_bytes(params, scaling: str):
    """Bytes an FP8 -> FP8 transpose of `params` cached weights moves: read one copy, write it transposed,
    2·P·(1 + s_w).

    Exact only where a weight's scale block is square or whole (128×128 blocks, DeepSeek-V3 arXiv 2412.19437
    §3.3.2; one scale per tensor): the transposed block keeps its scale, nothing is re-quantised. DeepSeek's H800
    trace (tests/data/dsv3_trace) runs one cuda::batched_transpose per weight before its Dgrad GEMM, its grid the
    weight's count of 128×128 blocks. MXFP8's 1×32 blocks do not transpose: SpecError."""
    if scaling == "none":
        return 0.0 * params
    if scaling == "mxfp8":
        raise SpecError("MXFP8's 1x32 weight blocks cannot be transposed in FP8: the columnwise copy is a cast",
                        field="training.fp8_weight_transpose", value="per_micro_batch", allowed=("cached",))
    return 2 * fp8_weight_copy_bytes(params, scaling, copies=1)


def amax_read_passes(scaling: str) -> int:
    """Reads of the source tensor per cast: 2 for current per-tensor scaling (amax pass, then cast), else 1.

    Source: wave2.md §6.2 (TE Float8CurrentScaling: "amax of the current tensor (an extra read pass)")."""
    return 2 if scaling == "per_tensor_current" else 1


@dataclass(frozen=True)
class QuantiseCost:
    """Memory traffic and scale arithmetic of quantising tensors to FP8 (sums over the tensors)."""

    read_bytes: float
    written_bytes: float
    scale_flops: float  # |x| and max per element to find the amax (memory-bound; no tensor cores)

    @property
    def bytes_moved(self) -> float:
        return self.read_bytes + self.written_bytes


def quantise_cost(elements, scaling: str, src_bytes: float = 2.0, copies: int = QUANTISED_COPIES) -> QuantiseCost:
    """Read q_src·N·passes, write c·N·(1 + s), 2N amax FLOP; zero for `scaling` "none".

    Source: module docstring (passes: TE recipes, wave2.md §6.2; s: §6.1/§6.2; c: Hopper TN-only FP8
    GEMMs and TE cast-transpose). Works on numpy arrays of element counts."""
    if scaling == "none":
        return QuantiseCost(0.0 * elements, 0.0 * elements, 0.0 * elements)
    s = scale_bytes_per_element(scaling)
    read = src_bytes * elements * amax_read_passes(scaling)
    written = copies * elements * (1 + s)
    return QuantiseCost(read, written, 2.0 * elements)


def quantise_pass_bytes(inputs, output_grads, scaling: str, src_bytes: float = 2.0,
                        transpose: str = "cast_transpose") -> tuple:
    """(forward, backward) bytes the FP8 casts of GEMMs move, over `inputs` GEMM input elements (cast in forward)
    and `output_grads` output-gradient elements (cast in backward).

    "cast_transpose": one cast of each writing both copies (module docstring: TE's fused cast-transpose).
    "requantise" (DeepSeek-V3 arXiv 2412.19437 §3.5.2, "Support for Transposed GEMM Operations": activations are
    "quantized into 1x128 FP8 tiles and stored. During the backward pass, the matrix needs to be read out,
    dequantized, transposed, re-quantized into 128x1 tiles, and stored in HBM"; DeepSeek's H800 trace,
    tests/data/dsv3_trace: per_token_cast_to_fp8 in forward, per_channel_cast_and_transpose and per_token_cast in
    backward): forward one copy per input; backward the input read again and written once transposed, and the
    output gradient cast twice (1x128 for Dgrad, 128x1 for Wgrad), each cast reading it."""
    if transpose == "cast_transpose":
        return (quantise_cost(inputs, scaling, src_bytes).bytes_moved,
                quantise_cost(output_grads, scaling, src_bytes).bytes_moved)
    fwd = quantise_cost(inputs, scaling, src_bytes, copies=1).bytes_moved  # each cast kernel writes one copy
    bwd = (QUANTISED_COPIES * quantise_cost(output_grads, scaling, src_bytes, copies=1).bytes_moved
           + quantise_cost(inputs, scaling, src_bytes, copies=1).bytes_moved)
    return fwd, bwd


def quantise_time_s(elements, scaling: str, hbm_bw_bytes_per_s: float, src_bytes: float = 2.0):
    """Time of a memory-bound quantise: (bytes read + bytes written) / effective HBM bandwidth."""
    return quantise_cost(elements, scaling, src_bytes).bytes_moved / hbm_bw_bytes_per_s


# --- named recipes (data: moesim/precision_recipes.toml) ------------------------------------


@lru_cache(maxsize=4)
def load_recipes(path: Path = RECIPES_FILE) -> dict[str, dict]:
    """Recipe name -> {training key: value}, read strictly (schema_version, known keys, a source each)."""
    from moesim.specs.training import PRECISION_KEYS

    data = read_versioned_toml(path, RECIPES_SCHEMA_VERSION)
    recipes = {}
    for name, table in data.items():
        if name == "schema_version":
            continue
        if not isinstance(table, dict) or not isinstance(table.get("source"), str):
            raise SpecError("a recipe is a table with a 'source' string", file=str(path), field=name)
        values = {k: v for k, v in table.items() if k not in ("source", "notes")}
        unknown = sorted(set(values) - set(PRECISION_KEYS))
        if unknown:
            raise SpecError("unknown key", file=str(path), field=f"{name}.{unknown[0]}", value=unknown[0],
                            allowed=PRECISION_KEYS)
        recipes[name] = values
    return recipes


def recipe_values(name: str) -> dict:
    """The training keys recipe `name` sets; SpecError naming the known recipes otherwise."""
    recipes = load_recipes()
    if name not in recipes:
        raise SpecError(f"unknown precision recipe '{name}'", field="training.precision_recipe", value=name,
                        allowed=sorted(recipes))
    return dict(recipes[name])
