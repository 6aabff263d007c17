"""`moesim collective`: predicted nccl-tests-style timings of one collective on a hardware profile."""

from __future__ import annotations

import argparse

from moesim.cli.output import print_json
from moesim.collectives.nccl_channel_caps import DEFAULT as CHANNEL_CAPS_DEFAULT
from moesim.errors import SpecError
from moesim.collectives.a2a_choice import DEFAULT_A2A_ALGORITHM
from moesim.collectives.nccl_broadcast import DEFAULT_MODEL as DEFAULT_BROADCAST_MODEL
from moesim.collectives.nccl_broadcast import MODELS as BROADCAST_MODELS
from moesim.collectives.nccl_p2p_net import DEFAULT_MODEL as DEFAULT_P2P_NET_MODEL
from moesim.collectives.nccl_p2p_net import MODELS as P2P_NET_MODELS
from moesim.units import parse_size_bytes, parse_size_range

DEFAULT_SWEEP = "8B:8GiB"  # the range nccl-tests' README runs (-b 8 -e 8G -f 2)
# the library's keywords a SpecError names, as the user typed them here (the Python API keeps the keyword names)
FLAGS = {"hardware": "--hardware", "nccl_algo": "--nccl-algo", "nccl_proto": "--nccl-proto", "tuner_rules": "--tuner-rules",
         "ring_net_channel_gbps": "--ring-net-channel-gbps", "p2p_net_model": "--p2p-net-model",
         "broadcast_model": "--broadcast-model", "p2p_net_nchannels": "--p2p-net-nchannels",
         "nccl_version": "--nccl-version", "nccl_version_scope": "--nccl-version-scope",
         "p2p_net_peer_rule": "--p2p-net-peer-rule"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "collective", help="predict a collective's time, algbw and busbw per size (nccl-tests layout)",
        description="Predict one collective over a group of devices, in nccl-tests' output layout. Sizes "
                    "count as nccl-tests does (all_gather/reduce_scatter: the full array; all_to_all: what "
                    "each rank sends). Bandwidths in decimal GB/s.")
    p.add_argument("op", help="all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send_recv")
    p.add_argument("--hardware", required=True,
                   help="built-in hardware profile name or a .toml path (a profile `moesim calibrate -o` wrote works)")
    p.add_argument("--devices", required=True, type=int,
                   help="ranks in the group (nccl-tests' nranks; 1 to the profile's max_devices)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--bytes", help="one size in bytes, e.g. 64MiB or 1e6 (units B, kB, MB, GB, TB decimal; KiB, "
                                       "MiB, GiB, TiB binary; 0 allowed)")
    size.add_argument("--sweep", help=f"MIN:MAX in bytes with the units of --bytes, 0 < MIN <= MAX, doubling "
                                       f"(nccl-tests -f 2); default {DEFAULT_SWEEP}")
    p.add_argument("--group-stride", type=int, default=1, help="device-id distance between members (default 1)")
    p.add_argument("--concurrent", type=int, default=1,
                   help="groups of this shape running at once, sharing links (default 1)")
    p.add_argument("--a2a-algorithm", default=DEFAULT_A2A_ALGORITHM, metavar="ALGO",
                   help="which all-to-all is priced: 'nccl-tests' what alltoall_perf runs, one flat pairwise exchange "
                        "(ncclSend + ncclRecv to every rank), as `moesim calibrate` prices its logs; 'pairwise'; "
                        "'hierarchical' (2DH, Tutel / DeepSpeed: needs whole NVLink domains on several nodes, else "
                        "pairwise); 'auto' the faster of the two (training's dispatch_backend 'nccl'); default "
                        f"{DEFAULT_A2A_ALGORITHM}; other ops ignore it")
    p.add_argument("--p2p-net-model", default=DEFAULT_P2P_NET_MODEL, metavar="MODEL",
                   help="how the network peers of a flat all-to-all and a send/recv between nodes are priced: "
                        "'channels' NCCL's p2p channels (one latency per work batch, the proxy posting each op in "
                        "turn, 14 GB/s a channel; docs/collectives-history.md 'Session 12 (a2ap2p)'); 'summed' "
                        "one message latency per peer; 'concurrent' NCCL's sends at once, one latency per work batch, "
                        "and its proxy launching every Simple step in turn (collectives/nccl_p2p_net.py; evaluated, "
                        "not the default: docs/collectives-history.md 'Session 9 (a2aconc)'); 'channels-steps' "
                        "'channels' with every Simple step of a send/recv between nodes launched by the proxy at "
                        "NCCL's tuner network overhead (collectives/nccl_p2p_ops.py; evaluated, not the default: "
                        f"'Session 14 (p2pops)'); one of {', '.join(P2P_NET_MODELS)}; default "
                        f"{DEFAULT_P2P_NET_MODEL}; GPU profiles only")
    p.add_argument("--ring-net-channel-gbps", type=float, default=None, metavar="GBPS",
                   help="GB/s one ring channel moves where its ring crosses the network: caps a multi-node ring at "
                        "channels x GBPS (collectives/nccl_plan.ring_net_caps; not sourced, evaluated, not the "
                        "default: docs/collectives-history.md 'Session 10 (ringnet)'); default: not modelled; GPU "
                        "profiles only")
    p.add_argument("--per-channel-caps", choices=("on", "off"), default=None,
                   help="NCCL's per-channel bandwidth caps of ring LL128 and the tree (tuning.cc perChMaxRingLL128Bw, "
                        "perChMaxTreeBw, perChMaxTreeLL128Bw x the graph's channels), in NCCL's pick and on the wire "
                        "(collectives/nccl_channel_caps.py; docs/collectives-history.md 'Session 11 (ramp)'); default "
                        f"{'on' if CHANNEL_CAPS_DEFAULT else 'off'} (the shipped pricing); GPU profiles only")
    p.add_argument("--p2p-net-nchannels", type=int, default=None, metavar="N",
                   help="NCCL's p2p channels (p2pnChannels, pow2Up of the communicator's channels) where a send/recv or "
                        "all-to-all spans several nodes: the per-peer channels are halved to fit them "
                        "(collectives/nccl_p2p.py; docs/collectives-history.md 'Session 11 (p2pcong)'); 1 to 64; "
                        "default: nccl_tuning.toml [p2p_net] p2p_channels; GPU profiles only")
    p.add_argument("--nccl-version", default="", metavar="X.Y.Z",
                   help="the NCCL release the run uses (a release tag 2.18.1 - 2.30.7, e.g. 2.26.2): NCCL's constants "
                        "that differ between releases (hop and base latencies, llMaxBws, per-channel caps, NVLS "
                        "channels, PAT) at that release's values (collectives/nccl_tuning.toml [versioned]; evaluated, "
                        "not the logs' default: docs/collectives-history.md 'Session 12 (ncclver)'); default: today's "
                        "tables; GPU profiles only")
    p.add_argument("--p2p-net-peer-rule", default="", metavar="RULE",
                   help="NCCL's rule for the p2p channels of a peer on another node: '2.18' (v2.18.1 - v2.19.4: 2), "
                        "'2.20' (v2.20.3 - v2.28.9: 2, halved while 2 x ranks > 4 x p2p channels), '2.29' (v2.29.2 - "
                        "v2.30.7: max(NICs, NIC GB/s / 14), halved to fit one round) (src/graph/paths.cc; "
                        "collectives/nccl_p2p_peer.py; docs/collectives-history.md 'Session 14 (a2ab200)'); default: "
                        "the rule of --nccl-version's release, '2.29' where none is named; GPU profiles only")
    p.add_argument("--nccl-version-scope", default="all", choices=("all", "pick"),
                   help="what --nccl-version's constants move: 'all' NCCL's pick and the wire; 'pick' NCCL's pick only "
                        "(its tuner's ranking), every candidate priced on the wire at today's tables "
                        "(collectives/nccl_version_pick.py; evaluated: docs/collectives-history.md 'Session 12 "
                        "(ncclver)'); default all")
    p.add_argument("--broadcast-model", default=DEFAULT_BROADCAST_MODEL, metavar="MODEL",
                   help="how NCCL's ring broadcast is priced: 'nccl-ll128-cap' (the default since session 17) 'nccl' "
                        "with NCCL's per-channel ring LL128 cap (tuner and wire; 'nccl' with --per-channel-caps off); "
                        "'nccl' one broadcast on NCCL's per-size channels with "
                        "its ring LL bus cap; 'plain' the pricing before session 10 (every channel at "
                        "every size, no LL cap); 'nccl-fill' 'nccl' and the chain's store-and-forward fill, one chunk "
                        "per network hop (and Simple NVLink hop); 'nccl-tests' what broadcast_perf reports for "
                        "back-to-back broadcasts of 'nccl', averaged over ranks (the last two evaluated, not the "
                        "default: docs/collectives-history.md 'Session 10 (bcast)'); 'nccl-fill-entry' 'nccl-fill' "
                        "with the root its node's ring exit (nNodes network hops); 'nccl-tests-proxy' back-to-back "
                        "broadcasts of 'nccl-fill-entry', the period bounded by the proxy's per-connection op order "
                        "(both evaluated, not the default: 'Session 11 (bcast2)'); one of "
                        f"{', '.join(BROADCAST_MODELS)}; other ops ignore it; GPU profiles only")
    p.add_argument("--nccl-algo", default="", metavar="ALGOS",
                   help="restrict NCCL's algorithms as NCCL_ALGO does: 'ring', 'ring,tree', '^nvls,nvlstree' "
                        "(ring, tree, nvls, nvlstree, collnetdirect, collnetchain, pat; 'collnet' = both CollNets "
                        "with a warning, as NCCL 2.24.3 on fails it; case-insensitive; default: all, the fastest as "
                        "NCCL's tuner picks; all-to-all and send/recv "
                        "run NCCL's p2p and ignore it; broadcast runs ring only; where it leaves broadcast or "
                        "all_reduce / all_gather / reduce_scatter no algorithm (e.g. 'tree' on all_gather), NCCL "
                        "2.19.1-2.23.4 fall back to ring (2.19.1-2.21.5 with every protocol, ignoring "
                        "--nccl-proto) and moesim prices that at those --nccl-version releases; NCCL 2.24.3 on, and "
                        "moesim with --nccl-version unset, fail the call; per collective as NCCL 2.24.3 on (and "
                        "moesim with --nccl-version unset): 'ring;allreduce:tree,ring;broadcast:ring', '^' per clause, "
                        "prefixes broadcast, reduce, allgather, reducescatter, allreduce; an earlier --nccl-version "
                        "reads the string as one list, as that NCCL does: at 2.18.1-2.23.4 a name it does not know "
                        "('collnet', 'pat' before 2.23.4) is ignored with a warning and, without --nccl-collnet, a "
                        "list without ring, tree, nvls or nvlstree gets ring and tree back; 2.24.3 on fail an "
                        "unknown name (docs/collectives.md); GPU profiles only)")
    p.add_argument("--nccl-collnet", action="store_true",
                   help="NCCL_COLLNET_ENABLE=1: CollNet (SHARP) all-reduce where the profile's fabric has sharp = true "
                        "(default off; GPU profiles only)")
    p.add_argument("--nccl-proto", default="", metavar="PROTOS",
                   help="restrict NCCL's protocols as NCCL_PROTO does: 'LL128,Simple', '^LL' (LL, LL128, Simple; "
                        "all-reduce, all-gather, reduce-scatter, broadcast: send/recv-based ops pick theirs by size; "
                        "per collective as NCCL 2.24.3 on: 'LL,Simple;allreduce:^LL' (an earlier --nccl-version reads "
                        "one list, as --nccl-algo); default: all three, NCCL's pick; GPU profiles only)")
    p.add_argument("--tuner-rules", default=None, metavar="FILE",
                   help="a tuner plugin's rules in the CSV of NCCL's example tuner plugin (collective_type,min_bytes,"
                        "max_bytes,algorithm,protocol,channels,nNodes,nRanks[,numPipeOps[,regBuff]]; min/max_bytes "
                        "inclusive; -1: any) or a .toml of [[rule]] tables: the first matching rule's (algorithm, "
                        "protocol) replaces NCCL's own pick (default: none; GPU profiles only)")
    for name, env, what in (("min", "NCCL_MIN_NCHANNELS", "duplicate the rings' and trees' channels up to N"),
                            ("max", "NCCL_MAX_NCHANNELS", "run the rings and trees on at most N channels"),
                            ("nvls", "NCCL_NVLS_NCHANNELS", "NVLS / NVLSTree channels in place of the GPU's"),
                            ("min-ctas", "NCCL_MIN_CTAS", "at least N channels for rings, trees and NVLS"),
                            ("max-ctas", "NCCL_MAX_CTAS", "at most N channels for rings, trees and NVLS")):
        flag = f"--nccl-{name}" if "ctas" in name else f"--nccl-{name}-nchannels"
        p.add_argument(flag, type=int, default=None, metavar="N",
                       help=f"{env}: {what}, clamped as NCCL does (default: not set; collectives/nccl_channels.py)")
    p.add_argument("--json", action="store_true",
                   help='machine-readable output: {"results": [...], ...}; every key with its unit in docs/keys.md')
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from moesim.collectives.nccl_channels import CHANNEL_KNOBS
    from moesim.collectives.sweep import collective_report, sweep_sizes

    if args.bytes is not None:
        sizes = [parse_size_bytes(args.bytes, field="--bytes")]
    else:
        sizes = sweep_sizes(*parse_size_range(args.sweep or DEFAULT_SWEEP, field="--sweep"))
    try:
        report = collective_report(args.hardware, args.op, args.devices, sizes, args.group_stride, args.concurrent,
                                   args.nccl_algo, args.nccl_collnet, args.nccl_proto, args.tuner_rules,
                                   {name: getattr(args, name) for name in CHANNEL_KNOBS}, args.a2a_algorithm,
                                   args.p2p_net_model, args.broadcast_model, args.ring_net_channel_gbps,
                                   None if args.per_channel_caps is None else args.per_channel_caps == "on",
                                   args.p2p_net_nchannels, args.nccl_version,
                                   args.nccl_version_scope, args.p2p_net_peer_rule)
    except SpecError as err:
        if err.field not in FLAGS:
            raise
        raise err.with_field(FLAGS[err.field]) from None
    if args.json:
        print_json(report)
        return 0
    print(render(report))
    return 0


def render(report: dict) -> str:
    """nccl-tests' table: size, count, type, redop, root, time, algbw, busbw, then algorithm and bound."""
    sysinfo = report["system"]
    if "slice_dims" in sysinfo:
        shape = "x".join(map(str, sysinfo["slice_dims"])) + " chips"
    else:
        shape = f"{sysinfo.get('nodes', 1)} node(s)"
    lines = [
        f"# moesim collective {report['op']}: {report['devices']} ranks on {report['hardware']} "
        f"(stride {report['group_stride']}, {report['concurrent']} group(s) at once; job {sysinfo.get('devices')} "
        f"devices, {shape})",
        "# %10s  %12s  %6s  %6s  %6s  %9s  %7s  %7s  %-22s  %s" % (
            "size", "count", "type", "redop", "root", "time", "algbw", "busbw", "algorithm", "bound"),
        "# %10s  %12s  %6s  %6s  %6s  %9s  %7s  %7s" % ("(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)"),
    ]
    for r in report["results"]:
        lines.append("%12d  %12d  %6s  %6s  %6d  %9.2f  %7.2f  %7.2f  %-22s  %s" % (
            r["bytes"], r["count"], r["type"], r["redop"], r["root"], r["time_us"], r["algbw_GBps"],
            r["busbw_GBps"], r["algorithm"], r["bottleneck"]))
    lines.append(f"# Avg bus bandwidth    : {report['avg_busbw_GBps']:.3f}")
    return "\n".join(lines)
