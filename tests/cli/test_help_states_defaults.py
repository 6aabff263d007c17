"""--help of every command (issue #11's first, every one since session 16): every option taking a value states its
default (or is required) and its allowed values; size options state their unit."""

from __future__ import annotations

import argparse

import pytest

from moesim.cli import build_parser


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


COMMANDS = ("model", "estimate", "profiles", "collective", "search", "sweep", "simulate", "calibrate",
            "validate-report", "report")


def test_the_list_is_every_command():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)  # simulate's --chunks, --noise, ... stated none (session 16, newcomer2)
def test_every_valued_option_states_its_default(command):
    missing = []
    for action in subparser(command)._actions:
        if not action.option_strings or action.required or action.nargs == 0:
            continue  # positionals, --help / flags, required options
        text = (action.help or "").lower()
        if "default" not in text and not (command == "collective" and action.dest == "bytes"):  # --sweep's partner
            missing.append(action.option_strings[-1])
        if action.dest in ("host_cpu", "gpu_nic_path") and not action.choices:
            missing.append(action.option_strings[-1] + " (allowed values)")
    assert not missing, missing


def test_sizes_and_nccl_options_state_units_and_scope():
    helps = {a.dest: a.help for a in subparser("collective")._actions}
    assert "in bytes" in helps["bytes"] and "MiB" in helps["bytes"] and "in bytes" in helps["sweep"]
    for dest in ("nccl_algo", "nccl_proto", "nccl_collnet", "tuner_rules"):
        assert "GPU profiles only" in helps[dest], dest
    assert "ring, tree, nvls, nvlstree, collnetdirect, collnetchain, pat" in helps["nccl_algo"]
    assert "LL, LL128, Simple" in helps["nccl_proto"]
    calibrate = {a.dest: a.help for a in subparser("calibrate")._actions}
    assert ">= the largest listed rank + 1" in calibrate["ranks"]
