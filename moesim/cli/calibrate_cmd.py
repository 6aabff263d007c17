"""`moesim calibrate` and `moesim validate-report`: fit a hardware profile to measurements, check it."""

from __future__ import annotations

import argparse

from moesim.cli.output import print_json


def register(subparsers) -> None:
    from moesim.cli.progress import add_quiet

    p = subparsers.add_parser(
        "calibrate", help="fit a hardware profile to validate/ measurements and nccl-tests logs",
        description="Fit the profile's matmul efficiency table, peaks, memory bandwidth, per-level collective "
                    "latency and bandwidth, and per-layer overhead to measurements (validate/ JSONL records, "
                    "nccl-tests logs), write the "
                    "calibrated profile, and report the error on switch_layer records held out of the fit.")
    p.add_argument("measurements", nargs="+", metavar="FILE",
                   help="validate/ results (.jsonl) and nccl-tests output logs (told apart by their first character; "
                        "UTF-8 text, LF or CRLF line ends)")
    p.add_argument("--hardware", required=True,
                   help="prior hardware profile: built-in name or TOML file (a GPU profile for nccl-tests logs)")
    p.add_argument("-o", "--output", required=True, help="calibrated profile to write (TOML)")
    p.add_argument("--holdout-fraction", type=float, default=0.3,
                   help="share of switch_layer records held out of the fit, by a seeded hash of their key, in [0, 1) "
                        "(default 0.3; nccl-tests rows are never held out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split and the bootstrap (default 0)")
    p.add_argument("--bootstrap", type=int, default=100,
                   help="bootstrap resamples for the parameter intervals (default 100; 0: none)")
    p.add_argument("--loss", default="soft_l1", choices=("soft_l1", "linear", "huber", "cauchy"),
                   help="least-squares loss on ln(predicted/measured) (default soft_l1: robust to outliers)")
    p.add_argument("--fit-router-matmul", action="store_true",
                   help="also fit the efficiency table to the measured router matmuls (router_matmul phase); "
                        "off by default: the router's skinny GEMM runs far below the expert FFNs of the same FLOP "
                        "count and would bend the table that prices them")
    p.add_argument("--name", help="name of the calibrated profile (default PRIOR-calibrated)")
    p.add_argument("--nccl-op", choices=("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast",
                                         "send_recv"),
                   help="collective of nccl-tests logs that neither name it nor carry it in their file name "
                        "(default: the log's '# Collective test starting:' line, else its file name; a contradiction "
                        "is an error)")
    p.add_argument("--ranks", type=int, metavar="N",
                   help="group size of nccl-tests logs whose rank list was cut, >= the largest listed rank + 1 "
                        "(default: largest listed rank + 1; required where a log lists no rank)")
    p.add_argument("--gpus-per-thread", type=int, default=1, metavar="N",
                   help="GPUs one nccl-tests thread drove (its -g N, nGpus N in the header; default 1): each row is "
                        "priced at least N kernel launches per iteration, and rows at that host floor are left "
                        "out of the fit (they say nothing about the links)")
    p.add_argument("--host-cpu", choices=("intel", "amd", "arm", "mixed"),
                   help="the measured cluster's host CPU where the profile does not state it (NCCL's network post "
                        "overhead and multi-node LL cap by CPU); written into the calibrated profile (default: the "
                        "profile's; shipped profiles leave it unstated, NCCL's Intel figures; needs a network level)")
    p.add_argument("--gpu-nic-path", choices=("PIX", "PXB", "P2C", "PXN", "PHB", "NODE", "SYS"),
                   help="the measured cluster's GPU-NIC PCIe path (nvidia-smi topo -m) where the profile does not "
                        "state it (NCCL's LL128-across-nodes and GPUDirect RDMA rules); written into the profile "
                        "(default: the profile's; shipped profiles leave it unstated: LL128 and GDR on; needs a network "
                        "level)")
    p.add_argument("--infer-facts", action=argparse.BooleanOptionalAction, default=None,
                   help="infer the measured cluster's host CPU and GPU-NIC path where neither the options above nor "
                        "the profile state them, from the nccl-tests rows of several nodes: one fit per class NCCL's "
                        "rules tell apart, a class other than NCCL's default chosen only on an evidence ratio > 10, "
                        "then written into the profile as inferred (moesim/calibrate/facts_fit.py; default: on)")
    p.add_argument("--hop-latency", choices=("shared", "per-protocol", "hierarchical"), default=None,
                   help="rule for the per-protocol hop latencies in the fit: 'shared' (one hop figure per level that "
                        "the LL / LL128 hops follow), 'per-protocol' (the LL and LL128 hops figures of their own), "
                        "'hierarchical' (each a departure from the level hop with its own prior); system facts are "
                        "inferred first under 'shared', then the rule is fitted with them fixed (default: shared)")
    p.add_argument("--transfer", choices=("shared", "machinery", "lines", "identified", "lines-identified",
                                          "protocol-hops", "p2p-ops", "pick-as-nccl", "pick-protocol-hops",
                                          "band-guard", "pareto-guard", "band-split", "hop-split", "cv-gate",
                                          "boot-shrink"),
                   default=None,
                   help="where fitted figures are written: 'shared' (one key every mechanism reads), 'machinery' "
                        "(the ring / other-algorithm hop latency and the one-peer / all-to-all send/recv line kept "
                        "apart, each fitted figure written only to the machinery whose rows set it, the other keeping "
                        "the prior; docs/collectives-history.md 'Session 10 (calpairs)'), 'lines' (only the send/recv "
                        "lines kept apart, every latency shared), 'identified' (a figure moved within two of its "
                        "standard errors written at the prior), 'lines-identified' (both; 'Session 12 (heldout)'), "
                        "'protocol-hops' (a hop latency per protocol where that protocol's own rows set it in a second "
                        "fit, shared elsewhere; with --hop-latency shared only), 'p2p-ops' (the send/recv latency kept "
                        "at the prior where the log's network send/recv rows of different op counts disagree on it; "
                        "'Session 13 (heldout2)'), 'pick-as-nccl' (as shared, but the fit and the written profile "
                        "rank each call's algorithm / protocol on the prior's figures, as NCCL's tuner does, and price "
                        "the pick with the fitted ones), 'pick-protocol-hops' (protocol-hops with that pick; "
                        "'Session 14 (pick)'), 'band-guard' (a fitted figure whose move raises the log's own busbw "
                        "MAPE at >= 1 MiB by more than 0.3 pt written at the prior), 'pareto-guard' (one that raises "
                        "one band's by more than 0.3 pt and lowers the other's by no more), 'band-split' (band-guard, "
                        "a refused hop latency written at the prior for Simple only), 'hop-split' (band-split on the "
                        "hop latencies only; 'Session 15 (calband)'), 'cv-gate' (a fitted figure whose move does not "
                        "beat the prior on the log's own sizes held out of 5 fits, folds by size, written at the "
                        "prior), 'boot-shrink' (each fitted figure moved toward the prior by its bootstrap spread "
                        "against the prior's sigma; 'Session 18 (heldout3)'; default: shared)")
    p.add_argument("--row-weight", choices=("row", "band", "size", "band-loss"), default=None,
                   help="each fitted row's weight in the objective (moesim/calibrate/row_weight.py): 'row' (every "
                        "row 1), 'band' (the < 1 MiB and >= 1 MiB rows carry equal summed weight), 'size' (each "
                        "message size counts once), 'band-loss' (each band carries half the prior's robust loss on "
                        "the log; 'Session 16 (bandfit)'; default: row)")
    p.add_argument("--prior-weight", default="auto", metavar="auto|W",
                   help="weight of the log-normal prior on the interconnect figures (latency, bandwidth, NVLS): "
                        "'auto' (default) weighs each figure by its stated uncertainty (moesim/calibrate/"
                        "prior_sigma.toml) against the fitted log's effective number of independent rows (a "
                        "Bayesian update; moesim/calibrate/prior_weight.py), or 10 where layer records are fitted; "
                        "a number > 0 sets one weight for every figure")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output (on nccl-tests logs every key with its unit in docs/keys.md)")
    add_quiet(p)
    p.set_defaults(run=run_calibrate)

    r = subparsers.add_parser(
        "validate-report", help="compare a profile's predictions with held-out switch_layer measurements or "
                                "nccl-tests logs",
        description="Per-phase and layer-total error (MAPE, max, signed mean) of the profile's predictions on "
                    "switch_layer records it was not fitted on: a profile written by `moesim calibrate` lists the "
                    "records it was fitted on and those are left out; with any other profile every record counts. "
                    "Given only nccl-tests logs: the profile's busbw error on each log (MAPE at >= 1 MiB and below, "
                    "the signed mean at >= 1 MiB, as docs/collectives.md's per-log table), a log the profile was "
                    "calibrated on marked in-sample.")
    r.add_argument("measurements", nargs="+", metavar="FILE",
                   help="validate/ results (.jsonl), or nccl-tests logs (the same reader as calibrate's)")
    r.add_argument("--hardware", required=True, help="hardware profile: built-in name or TOML file")
    r.add_argument("--all", action="store_true", help="include the records the profile was fitted on (in-sample)")
    r.add_argument("--ranks", type=int, default=None, metavar="N",
                   help="group size of nccl-tests logs whose rank list was cut (as calibrate's --ranks; default: "
                        "largest listed rank + 1)")
    r.add_argument("--gpus-per-thread", type=int, default=1, metavar="N",
                   help="GPUs one nccl-tests thread drove (as calibrate's --gpus-per-thread; default 1)")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.set_defaults(run=run_validate_report)


def run_calibrate(args: argparse.Namespace) -> int:
    from moesim.calibrate import calibrate, render_calibration
    from moesim.calibrate.api import check_output
    from moesim.calibrate.ops import calibrate_ops, is_op_file, render_ops_calibration
    from moesim.cli.progress import progress_bar

    check_output(args.output, args.measurements, args.hardware)  # before any fit: never overwrite an input
    op_files = [path for path in args.measurements if is_op_file(path)]
    if op_files:  # operator records (python -m validate.ops): fit the per-operator tables
        if len(op_files) != len(args.measurements):
            from moesim.errors import SpecError
            raise SpecError("give operator records (validate.ops) and layer/collective measurements in separate "
                            "calibrate runs", file=", ".join(args.measurements))
        result = calibrate_ops(op_files, args.hardware, args.output, holdout_fraction=args.holdout_fraction,
                               seed=args.seed, name=args.name)
        print_json(result.as_dict()) if args.json else print(render_ops_calibration(result))
        return 0

    with progress_bar(args, "calibrating") as progress:
        result = calibrate(args.measurements, args.hardware, args.output, holdout_fraction=args.holdout_fraction,
                           seed=args.seed, bootstrap=args.bootstrap, loss=args.loss, name=args.name,
                           nccl_op=args.nccl_op, fit_router_matmul=args.fit_router_matmul, nccl_ranks=args.ranks,
                           prior_weight=_prior_weight(args.prior_weight), progress=progress,
                           gpus_per_thread=args.gpus_per_thread,
                           system={k: v for k, v in (("host_cpu", args.host_cpu), ("gpu_nic_path", args.gpu_nic_path))
                                   if v},
                           infer_facts=args.infer_facts, latency_per_protocol=_hop_latency(args.hop_latency),
                           transfer_rule=args.transfer, row_weight=args.row_weight)
    if args.json:
        print_json(result.as_dict())
    else:
        print(render_calibration(result))
    return 0


def _hop_latency(name: str | None) -> bool | str | None:
    """--hop-latency: the fit's latency_per_protocol mode (fit.HOP_LATENCY_RULES); None = calibrate's default."""
    from moesim.calibrate.fit import HOP_LATENCY_RULES

    return None if name is None else HOP_LATENCY_RULES[name]


def _prior_weight(text: str) -> float | None:
    """--prior-weight: None for 'auto', else a positive number (a SpecError, one line, otherwise)."""
    from moesim.errors import SpecError

    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise SpecError("--prior-weight is 'auto' or a number > 0", field="--prior-weight", value=text,
                        allowed="auto, > 0")
    return value


def run_validate_report(args: argparse.Namespace) -> int:
    from moesim.calibrate.records import read_measurements
    from moesim.calibrate.report import render, validation_report
    from moesim.specs.load import load_hardware

    measurements = read_measurements(args.measurements, nccl_ranks=args.ranks)  # read once, for either report
    if not measurements.layers and any(p.nccl_tests for p in measurements.collectives):
        return _report_logs(args, measurements)  # nccl-tests logs only: the profile's busbw error on each
    report = validation_report(measurements, load_hardware(args.hardware, field="--hardware"),
                               include_fitted=args.all)
    if args.json:
        print_json(report.as_dict())
    else:
        print(render(report))
    return 0


def _report_logs(args: argparse.Namespace, measurements) -> int:
    """validate-report on nccl-tests logs: the profile's busbw error per log (calibrate/log_report.py)."""
    from moesim.calibrate.log_report import log_checks, prior_profile, render
    from moesim.errors import SpecError
    from moesim.specs.load import load_hardware

    hardware = load_hardware(args.hardware, field="--hardware")
    if hardware.device_kind != "gpu":  # as calibrate: nccl-tests measure NCCL, which runs on GPUs
        raise SpecError(f"nccl-tests logs measure NCCL on GPUs, but {hardware.name}'s devices are "
                        f"{hardware.device_kind}", field="--hardware", value=args.hardware, allowed="a GPU profile")
    checks = log_checks(measurements, hardware, gpus_per_thread=args.gpus_per_thread)
    prior = prior_profile(hardware) if any(c.prior_error is not None for c in checks) else None
    if args.json:
        print_json({"hardware": hardware.name, "prior": None if prior is None else prior.name,
                    "logs": [c.as_dict() for c in checks]})
    else:
        print(render(checks, hardware, prior))
    return 0
