"""What an eighth newcomer's first day with today's MoE set-ups found (session 25, lane newuser8): each test failed on
main at 022f95e8. The set-up is tests/data/newuser8-qwen3-30b-a3b-h100.toml (Qwen3-30B-A3B, 64 H100, FP8 current
scaling, interleaved vp 2, cp 2, DeepEP); the log is in docs/collectives-history.md, "Session 25 (newuser8)"."""

from __future__ import annotations

import json
from pathlib import Path

from moesim.api import estimate
from moesim.cli import main
from moesim.specs.load import load_scenario
from tests.cli.test_newuser5_walk import error_of  # one line, exit 2, no traceback

ROOT = Path(__file__).resolve().parent.parent.parent
QWEN3 = ROOT / "tests" / "data" / "newuser8-qwen3-30b-a3b-h100.toml"


def variant(tmp_path: Path, training: str = "", tail: str = "", replace: tuple[str, str] = ("", "")) -> str:
    """The newcomer's scenario with `training` lines added to [training], `tail` appended, one text replaced."""
    text = QWEN3.read_text().replace("[training]\n", f"[training]\n{training}\n").replace(*replace) + tail
    path = tmp_path / "s.toml"
    path.write_text(text)
    return str(path)


# `moesim sweep S --vary search.context_parallel=3` (and a [search] context_parallel = [3]) on 64 devices ended in
# "ValueError: max() arg is an empty sequence" from the search's enumeration.
def test_a_context_parallel_list_no_layout_has_is_named(tmp_path, capsys):
    err = error_of(capsys, ["sweep", QWEN3, "--vary", "search.context_parallel=2,3", "-q"])
    assert "field 'search.context_parallel': no layout of 64 devices has cp in [3]" in err
    assert "(allowed: divisors of the devices (1, 2, 4, 8, 16, 32, 64))" in err
    err = error_of(capsys, ["search", variant(tmp_path, tail="\n[search]\ncontext_parallel = [3, 96]\n"), "-q"])
    assert "s.toml: field 'search.context_parallel': no layout of 64 devices has cp in [3, 96]" in err


# `--hardware` alone dropped the file's dp and ep (kept only for another device count): a calibrated profile's
# estimate of this set-up priced ep 16 (the default gcd) instead of the file's ep 8, without a word.
def test_a_profile_alone_keeps_every_degree_of_the_layout(tmp_path):
    plain = estimate(load_scenario(QWEN3))
    again = estimate(load_scenario(QWEN3, hardware="h100-sxm"))
    assert (again.layout.ep, again.layout.edp, again.step_time_s) == (8, 2, plain.step_time_s)
    assert estimate(load_scenario(QWEN3, hardware="h200")).layout.ep == 8
    assert load_scenario(QWEN3, devices=64).layout_given["ep"] == 8  # the file's own count: kept too
    refit = load_scenario(QWEN3, devices=32)  # another count: dp and ep refit it, the rest kept
    assert "ep" not in refit.layout_given and "dp" not in refit.layout_given and refit.layout_given["cp"] == 2


# The search ranked cp 1 only (the default [search] context_parallel = [1]) for a file whose [layout] says cp = 2,
# and said nothing.
def test_the_search_says_which_layout_values_it_does_not_rank(tmp_path, capsys):
    path = variant(tmp_path, replace=("cp = 2\n", "cp = 2\ncp_comm = \"a2a\"\n"))
    assert main(["search", path, "--top", "1", "--json", "-q"]) == 0
    notes = json.loads(capsys.readouterr().out)["unsearched_layout"]
    assert notes == ["the scenario's [layout] cp = 2 is not searched: [search] context_parallel = [1]; set "
                     "context_parallel = [1, 2] in [search] to rank it",
                     "the scenario's [layout] cp_comm = \"a2a\" is not searched: [search] cp_comms = [\"p2p\"]; set "
                     "cp_comms = [\"p2p\", \"a2a\"] in [search] to rank it"]
    assert main(["search", path, "--top", "1", "-q"]) == 0
    assert "note: the scenario's [layout] cp = 2 is not searched" in capsys.readouterr().out
    ranked = variant(tmp_path, tail="\n[search]\ncontext_parallel = [1, 2]\n")
    assert main(["search", ranked, "--top", "1", "--json", "-q"]) == 0
    assert "unsearched_layout" not in json.loads(capsys.readouterr().out)  # the key only where there is a line
    from moesim.report import build_report

    page = build_report(load_scenario(QWEN3))  # the report's layouts come from the same search: said there too
    assert "search: the scenario's [layout] cp = 2 is not searched: [search] context_parallel = [1]; set " \
           "context_parallel = [1, 2] in [search] to rank it" in page.notes


# An FP8 recipe on a chip without an FP8 peak failed as "field 'chip.peak_tflops_per_chip': no peak FLOP/s for float8
# on A100 SXM4 80GB", naming neither the scenario file nor the key that chose FP8.
def test_fp8_gemms_on_a_chip_without_an_fp8_peak_name_the_file_and_the_key(tmp_path, capsys):
    err = error_of(capsys, ["estimate", variant(tmp_path, replace=("h100-sxm", "a100-80gb"))])
    assert "s.toml: field 'training.precision_recipe': GEMMs in float8 (precision_recipe = 'te-current-scaling') " \
           "need a float8 peak, and hardware 'a100-80gb' states none (allowed: GEMM dtypes with a peak on " \
           "a100-80gb: bfloat16, float16, tfloat32, float32)" in err
    err = error_of(capsys, ["estimate", QWEN3, "--hardware", "tpu-v3"])
    assert "newuser8-qwen3-30b-a3b-h100.toml: field 'training.precision_recipe'" in err and "tpu-v3" in err


# FP8-GEMM keys beside BF16 GEMMs, and a2a_kernel_sms without an overlapped pair, were priced as if not set, silently
# in estimate / simulate / search (a sweep alone said the second).
def test_keys_that_move_nothing_are_warned_about(tmp_path, capsys):
    bf16 = variant(tmp_path, training='gemm_scaling = "blockwise"\nfp8_transpose = "requantise"',
                   replace=("te-current-scaling", "bf16"))
    est = estimate(load_scenario(bf16))
    assert "training.gemm_scaling = 'blockwise' and fp8_transpose = 'requantise' move nothing: they say how FP8 GEMM " \
           "inputs are scaled and transposed, and this run's GEMMs are bfloat16; priced as if not set" in est.warnings
    assert not any("moves nothing" in w or "move nothing" in w for w in estimate(load_scenario(QWEN3)).warnings)
    sms = variant(tmp_path, training="a2a_kernel_sms = 24")
    est = estimate(load_scenario(sms))
    assert est.step_time_s == estimate(load_scenario(QWEN3)).step_time_s
    assert "all-to-all SMs: a2a_kernel_sms = 24 moves nothing: compute runs beside the all-to-all's kernels only in " \
           "an overlapped pair (training.moe_a2a_overlap or the dualpipe schedule), and neither is set" in est.warnings
    assert main(["sweep", sms, "--vary", "training.dispatch_backend=deepep", "--json", "-q"]) == 0
    point = json.loads(capsys.readouterr().out)["points"][0]
    assert any(n.startswith("all-to-all SMs") for n in point["notes"])  # said once: a note, not also a warning
    assert not any(w.startswith("all-to-all SMs") for w in point["warnings"])
