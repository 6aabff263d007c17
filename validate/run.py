"""Run a measurement sweep on every rank and write JSONL records from rank 0.

From the repository root::

    torchrun --standalone --nproc-per-node 2 -m validate.run \\
        --sweep validate/sweeps/cpu-small.toml --out results/cpu-small.jsonl

NCCL + CUDA when GPUs are visible, else gloo + CPU (``--backend`` / ``--device`` override).
Configs whose ``world_size`` differs from the running world are skipped with a note; configs whose
key is already in ``--out`` with status "ok" are skipped (resume). Each record is appended with
flush + fsync as soon as its configuration finishes, under a file lock, and never when its key
already has an "ok" record there. Each rank exits when its launcher or (same host) rank 0 goes
away (:mod:`validate.watch`). Every collective is bounded by ``--timeout-s``; a hung or dead peer ends the run with :class:`HarnessError` naming the
configuration, step and phase. See ``validate/README.md``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from dataclasses import asdict

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from validate.bench import Progress, bench_layer
from validate.collectives import bench_collective
from validate.comm import init_distributed, reset_group_cache, select_backend_device
from validate.config import CollectiveConfig, LayerConfig, Sweep, load_sweep
from validate.records import append_record, config_key, done_keys, environment, make_record
from validate.watch import start_watch


MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week: longer is a typo (or inf, which timedelta cannot hold)


class HarnessError(RuntimeError):
    """A configuration failed (often: a collective timed out because a peer hung or died)."""


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m validate.run``."""
    ap = argparse.ArgumentParser(prog="python -m validate.run",
                                 description="Measure a torch.distributed Switch MoE layer.")
    ap.add_argument("--sweep", required=True, help="sweep TOML file (validate/sweeps/*.toml)")
    ap.add_argument("--out", required=True, help="JSONL results file (appended; resumes)")
    ap.add_argument("--backend", choices=["gloo", "nccl"], help="default: nccl on GPUs, else gloo")
    ap.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    ap.add_argument("--timeout-s", type=float, default=300.0,
                    help="per-collective timeout in seconds (init_process_group timeout)")
    ap.add_argument("--num-threads", type=int, default=None,
                    help="torch intra-op threads per rank (default 1 on CPU, torch default on GPU)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="CPU only: 'cpu' times compute phases, backward and the layer by each rank's CPU time "
                         "(time.thread_time: what they cost on an idle core); collectives stay wall-clock "
                         "(validate/timing.py). Default: wall")
    ap.add_argument("--only", choices=["all", "layers", "collectives"], default="all")
    ap.add_argument("--skip-errored", action="store_true",
                    help="on resume also skip configs recorded with status 'error'")
    return ap


def _log(rank: int, msg: str) -> None:
    if rank == 0:
        print(f"[validate] {msg}", file=sys.stderr, flush=True)


def _looks_like_timeout(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "timed out" in text or "timeout" in text or "closed" in text or "watchdog" in text


def _run_one(kind: str, cfg: LayerConfig | CollectiveConfig, key: str, env: dict, args,
             device: torch.device, rank: int) -> None:
    progress = Progress()
    t0 = time.perf_counter()
    try:
        if kind == "switch_layer":
            body = bench_layer(cfg, device, progress, args.clock)
        else:
            body = bench_collective(cfg, device, progress)
    except Exception as exc:  # report where it failed, keep an error record, stop the run
        hint = (f" A collective did not complete within --timeout-s={args.timeout_s:g}: a peer rank "
                f"probably crashed, hung, or runs a different sweep." if _looks_like_timeout(exc) else "")
        msg = (f"rank {rank}: {kind} config {cfg.name!r} (key {key}) failed during "
               f"{progress.describe()}: {type(exc).__name__}: {exc}.{hint}")
        if rank == 0:
            append_record(args.out, make_record(kind, key, env, {
                "config": asdict(cfg), "status": "error", "error": msg}))
        raise HarnessError(msg) from exc
    body["wall_s"] = time.perf_counter() - t0
    if rank == 0:
        if append_record(args.out, make_record(kind, key, env, body)):
            _log(rank, f"done {kind} {cfg.name!r} in {body['wall_s']:.1f} s")
        else:
            _log(rank, f"done {kind} {cfg.name!r}: key {key} already in {args.out} (another run wrote it); "
                       "not written again")


def run_sweep(sweep: Sweep, args, backend: str, device: torch.device) -> dict[str, int]:
    """Run every applicable configuration of ``sweep``; returns counts (run/resumed/skipped)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    env = environment(backend, device)
    box = [done_keys(args.out, args.skip_errored) if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)   # every rank must make the same skip decisions
    done: set[str] = box[0]
    jobs: list[tuple[str, LayerConfig | CollectiveConfig]] = []
    if args.only in ("all", "layers"):
        jobs += [("switch_layer", c) for c in sweep.layers]
    if args.only in ("all", "collectives"):
        jobs += [("collective", c) for c in sweep.collectives]
    counts = {"run": 0, "resumed": 0, "skipped_world_size": 0}
    todo = []
    for kind, cfg in jobs:
        if cfg.world_size is not None and cfg.world_size != world:
            _log(rank, f"skip {kind} {cfg.name!r}: needs world_size={cfg.world_size}, running {world}")
            counts["skipped_world_size"] += 1
            continue
        fields = asdict(cfg)
        if kind == "switch_layer" and args.clock != "wall":  # another clock is another measurement
            fields["clock"] = args.clock
        key = config_key(kind, fields, world, backend)
        if key in done:
            _log(rank, f"resume: {kind} {cfg.name!r} already in {args.out} (key {key})")
            counts["resumed"] += 1
            continue
        todo.append((kind, cfg, key))
    for kind, cfg, key in todo:
        _run_one(kind, cfg, key, env, args, device, rank)
        counts["run"] += 1
    _log(rank, f"finished: {counts}")
    wanted = sorted({cfg.world_size for _, cfg in jobs if cfg.world_size not in (None, world)})
    if counts["skipped_world_size"]:  # what to do about them, not only that they were skipped
        _log(rank, f"{counts['skipped_world_size']} of {len(jobs)} configurations were not run: the sweep gives them "
                   f"world_size {', '.join(map(str, wanted))}, this run has {world} rank{'s' if world > 1 else ''}; "
                   f"run with --nproc-per-node {wanted[0]}, or set world_size = [{', '.join(map(str, wanted))}, "
                   f"{world}] in {args.sweep} ([defaults] or the entry; a list runs each size, as its own record)")
    return counts


def run_worker(argv: list[str], init_method: str = "env://", rank: int | None = None,
               world_size: int | None = None, linger_s: float = 0.0) -> dict[str, int]:
    """Parse ``argv``, join the process group, run the sweep, leave the group.

    ``linger_s`` keeps this rank in the group, idle, for that long before leaving (lets tests
    simulate a peer that stops taking part in collectives).
    """
    args = build_parser().parse_args(argv)
    if not 0 < args.timeout_s <= MAX_TIMEOUT_S:   # NaN fails too; inf overflows torch's timedelta
        raise ValueError(f"--timeout-s must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], got {args.timeout_s}")
    sweep = load_sweep(args.sweep)   # parse before joining: a bad file fails fast on every rank
    backend, dev = select_backend_device(args.backend, args.device)
    if args.clock == "cpu" and dev != "cpu":
        raise ValueError("--clock cpu times CPU work: use it with --device cpu (CUDA phases use CUDA events)")
    threads = args.num_threads if args.num_threads is not None else (1 if dev == "cpu" else None)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--num-threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    start_watch(int(os.environ.get("RANK", rank or 0)))   # the launcher, from now on
    device = init_distributed(backend, dev, args.timeout_s, init_method, rank, world_size)
    peers: list = [None] * dist.get_world_size()
    dist.all_gather_object(peers, (socket.gethostname(), os.getpid()))
    if dist.get_rank() != 0 and peers[0][0] == socket.gethostname():
        start_watch(dist.get_rank(), rank0_pid=peers[0][1])   # and rank 0, on this host
    failed = False
    try:
        counts = run_sweep(sweep, args, backend, device)
        time.sleep(linger_s)
        return counts
    except BaseException:
        failed = True
        raise
    finally:
        reset_group_cache()
        if not failed:   # after a collective failure the group may be unusable; just exit
            dist.destroy_process_group()


def spawn_worker(rank: int, world_size: int, init_file: str, argvs: list[list[str]],
                 linger_s: list[float]) -> None:
    """torch.multiprocessing entry: rank ``rank`` runs ``argvs[rank]`` over a file:// rendezvous
    (``linger_s[rank]``: see :func:`run_worker`)."""
    run_worker(argvs[rank], f"file://{init_file}", rank, world_size, linger_s[rank])


def launch_local(world_size: int, argv: list[str] | list[list[str]], workdir: str,
                 linger_s: list[float] | None = None) -> None:
    """Run the harness on ``world_size`` local processes without torchrun (no TCP ports needed).

    ``argv`` is one argument list for all ranks or one list per rank.
    """
    argvs = argv if argv and isinstance(argv[0], list) else [argv] * world_size
    with tempfile.NamedTemporaryFile(dir=workdir, prefix="rdzv-", delete=True) as f:
        init_file = f.name
    mp.spawn(spawn_worker, args=(world_size, init_file, argvs, linger_s or [0.0] * world_size),
             nprocs=world_size, join=True)


def main(argv: list[str] | None = None) -> int:
    """``torchrun ... -m validate.run`` entry point (rendezvous from torchrun's environment)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if "RANK" in os.environ:
            run_worker(argv)
        else:  # plain `python -m validate.run`: one process, world size 1, no ports
            print("[validate] RANK not set (not under torchrun): running as world size 1",
                  file=sys.stderr)
            with tempfile.TemporaryDirectory() as tmp:
                run_worker(argv, f"file://{os.path.join(tmp, 'rdzv')}", 0, 1)
    except HarnessError as exc:   # a configuration failed while running
        print(f"validate.run: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except ValueError as exc:     # bad input (options, sweep file): one line, exit 2 as moesim's CLI
        if os.environ.get("RANK", "0") == "0":  # every rank reads the same input: rank 0 says it, once
            print(f"validate.run: error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
