"""Operator micro-benchmarks: time moesim's operator kinds over a shape sweep on the machine at hand.

    python -m validate.ops --out ops.jsonl [--quick] [--dtypes float32,bfloat16] [--repeats 7] [--seed 0]
        [--threads 1] [--estimator median|min] [--procs N] [--clock wall|cpu] [--after-wait]

Each record (one JSON line) is one operator at one shape, in moesim's operator conventions
(moesim/ops/base.py): kind (gemm, grouped_gemm, attention, memory), pass (fwd, dgrad, wgrad, bwd), op
(the operator name; memory ops: MEMORY_CASES below, the memory-bound operators of moesim's layers
and of the validate/ harness's Switch layer, moesim/calibrate/harness_ops.py), dtype, shape (OP_DIMS order,
specs/efficiency.py), flops (kernel work; attention: the computed tiles of its mask) or bytes, and its
time over `repeats` timed calls after a warm-up: the median on a GPU (CUDA events around each call);
on a CPU (time.perf_counter) the minimum, since other processes on a shared host only ever add time
(a 2-core box under load shows single calls 10-200x slower than their neighbours). With `--clock cpu`
(CPU only) each call is timed by time.thread_time, the calling thread's CPU time, as the harness's
`--clock cpu` times its compute phases (validate/timing.py): what the call costs on an idle core.
Memory operators run from 1 row up, so the smallest sizes pin the fixed cost of one call; the
`launch` records are that cost directly: a chain of tiny elementwise calls on a tensor that requires
grad, forward and autograd backward (as the harness's calls run), divided by its ATen call count, each
timed chain run after a LAUNCH_WAIT_S sleep, as the harness's calls run after a barrier or a collective
wait: a thread back from a wait runs its first calls with cold caches and branch predictors (on this
2-core box 1.7-2.7x the back-to-back cost per call, more under load). `--after-wait` times every CPU
call that way (a sleep before each; records say `after_wait_s`).
`moesim calibrate ops.jsonl --hardware P -o OUT.toml` fits a profile's operator
tables from them (moesim/calibrate/ops.py).

GEMM passes: fwd C[m, n] = A[m, k]·B[k, n]; dgrad [m, n]·[n, k]; wgrad [k, m]·[m, n] (moesim.ops.base).
Grouped GEMM: torch.bmm over `groups` equal groups (the CPU has no grouped kernel; the batched GEMM is
the equal-tokens case). Attention: torch scaled_dot_product_attention, causal, forward and its autograd
backward (backward time = forward+backward − forward).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SCHEMA_VERSION = 1
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
GEMM_SIZES = (64, 128, 256, 512, 1024)
QUICK_GEMM_SIZES = (64, 256, 512)


CLOCK = ["wall"]  # set by --clock
WAIT_S = [0.0]  # set by --after-wait: sleep before each timed CPU call


def _timer(device):
    if device.type == "cuda":
        def run(fn, repeats):
            out = []
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                out.append(start.elapsed_time(end) / 1e3)
            return out
    else:
        clock = time.thread_time if CLOCK[0] == "cpu" else time.perf_counter

        def run(fn, repeats):
            out = []
            for _ in range(repeats):
                if WAIT_S[0]:
                    time.sleep(WAIT_S[0])
                t0 = clock()
                fn()
                out.append(clock() - t0)
            return out
    return run


def _time(fn, repeats, device) -> list[float]:
    fn()  # warm-up
    return _timer(device)(fn, repeats)


def gemm_records(sizes, dtype, device, repeats, rng):
    out = []
    for m in sizes:
        for n in sizes:
            for k in sizes:
                if rng.random() > 0.5:  # a seeded half of the grid keeps the sweep short
                    continue
                for pass_, (a, b) in (("fwd", ((m, k), (k, n))), ("dgrad", ((m, n), (n, k))),
                                      ("wgrad", ((k, m), (m, n)))):
                    x = torch.randn(*a, dtype=dtype, device=device)
                    w = torch.randn(*b, dtype=dtype, device=device)
                    times = _time(lambda: torch.matmul(x, w), repeats, device)
                    out.append(_record("gemm", pass_, "any", dtype, (m, n, k), 2.0 * m * n * k, 0.0, times))
    return out


def grouped_records(dtype, device, repeats, quick):
    out = []
    shapes = [(4, 64, 256, 256), (8, 128, 512, 256), (16, 32, 256, 512)] if quick else \
        [(g, m, n, k) for g in (4, 16) for m in (32, 128, 512) for n, k in ((256, 512), (512, 256))]
    for g, m, n, k in shapes:
        for pass_, (a, b), shape in (("fwd", ((g, m, k), (g, k, n)), (g, m, n, k)),
                                     ("dgrad", ((g, m, n), (g, n, k)), (g, m, k, n)),
                                     ("wgrad", ((g, k, m), (g, m, n)), (g, k, n, m))):
            x = torch.randn(*a, dtype=dtype, device=device)
            w = torch.randn(*b, dtype=dtype, device=device)
            times = _time(lambda: torch.bmm(x, w), repeats, device)
            out.append(_record("grouped_gemm", pass_, "any", dtype, shape, 2.0 * g * m * n * k, 0.0, times))
    return out


def attention_records(dtype, device, repeats, quick):
    from moesim.ops.attention import work_fraction

    out = []
    # The quick sweep varies the length alone: a held-out middle length is interpolated (in log length) between
    # the other two; with (512, 2, 64) as the third shape two points left varied in two coordinates, which
    # moesim/ops/tables.py answers by the nearest shape only (docs/operators.md "Attention's held-out miss").
    shapes = [(128, 4, 64), (256, 4, 64), (512, 4, 64)] if quick else \
        [(s, bh, d) for s in (128, 256, 512, 1024) for bh in (2, 8) for d in (32, 64)]
    for s, bh, d in shapes:
        q, k, v = (torch.randn(1, bh, s, d, dtype=dtype, device=device, requires_grad=True) for _ in range(3))
        frac = work_fraction("causal", s, s)
        fwd_flops = 4.0 * s * s * d * bh * frac

        def fwd():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

        def both():
            y = fwd()
            y.backward(torch.ones_like(y))

        t_fwd = _time(fwd, repeats, device)
        t_both = _time(both, repeats, device)
        t_bwd = [max(b - min(t_fwd), 1e-9) for b in t_both]
        out.append(_record("attention", "fwd", "causal", dtype, (s, bh, d), fwd_flops, 0.0, t_fwd))
        out.append(_record("attention", "bwd", "causal", dtype, (s, bh, d), 2.5 * fwd_flops, 0.0, t_bwd))
    return out


def memory_records(dtype, device, repeats, quick):
    out = []
    q = torch.tensor([], dtype=dtype).element_size()
    rows_list = (1, 32, 256, 2048, 8192) if quick else (1, 8, 32, 128, 512, 2048, 8192, 32768)
    for rows in rows_list:
        h = 512
        x = torch.randn(rows, h, dtype=dtype, device=device)
        g = torch.randn(rows, h, dtype=dtype, device=device)
        y = torch.zeros(rows, h, dtype=dtype, device=device)
        index = torch.randperm(rows, device=device)
        ints = torch.randint(0, 8, (rows, h), device=device)
        chunks = x.split(max(rows // 4, 1))
        for name, (fn, nbytes) in memory_cases(x, g, y, index, ints, chunks, q).items():
            out.append(_record("memory", "fwd", name, dtype, (nbytes,), 0.0, float(nbytes), _time(fn, repeats, device)))
    out.append(launch_record(dtype, device, repeats))
    return out


def memory_cases(x, g, y, index, ints, chunks, q) -> dict:
    """name -> (call, bytes it moves): the memory-bound operators of moesim's layers and of the harness."""
    n = x.numel()
    return {
        "layer_norm": (lambda: F.layer_norm(x, (x.shape[1],)), 2 * n * q),
        "activation": (lambda: F.silu(x) * g, 3 * n * q),  # SwiGLU's gate
        "relu": (lambda: torch.relu(x), 2 * n * q),  # the harness's expert activation
        "softmax": (lambda: torch.softmax(x, dim=-1), 2 * n * q),
        "permute": (lambda: x.index_select(0, index), 2 * n * q),  # gather rows
        "gather": (lambda: x[index], 2 * n * q),  # gather rows by advanced indexing (aten::index), as the harness
        "index_put": (lambda: y.index_put_((index,), x, accumulate=True), 3 * n * q),  # its backward
        "scatter_add": (lambda: y.index_add_(0, index, x), 3 * n * q),  # scatter-add rows (unpermute)
        "fill": (lambda: torch.zeros_like(x), n * q),
        "add": (lambda: x + g, 3 * n * q),
        "copy": (lambda: torch.cat(chunks), 2 * n * q),  # concatenation of per-expert outputs
        "index": (lambda: torch.cumsum(ints, dim=0), 2 * ints.numel() * ints.element_size()),  # int64 bookkeeping
    }


LAUNCH_CHAIN = 32  # tiny elementwise calls per launch measurement
LAUNCH_WAIT_S = 2e-3  # sleep before each timed chain: about one collective wait of the CPU harness


def launch_record(dtype, device, repeats) -> dict:
    """Per-ATen-call cost: a chain of LAUNCH_CHAIN tiny multiplies on a tensor that requires grad, forward
    and backward, timed whole and divided by the number of ATen calls it makes (counted by a
    TorchDispatchMode on one untimed run)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    w = torch.randn(8, dtype=dtype, device=device, requires_grad=True)

    def chain():
        y = w
        for _ in range(LAUNCH_CHAIN):
            y = y * 1.0001
        y.sum().backward()

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    with Count():
        chain()
    calls = Count.calls
    times = []
    for _ in range(repeats):
        if not WAIT_S[0]:
            time.sleep(LAUNCH_WAIT_S)
        times += [t / calls for t in _timer(device)(chain, 1)]
    nbytes = float(w.numel() * w.element_size())
    return _record("memory", "fwd", "launch", dtype, (nbytes,), 0.0, nbytes, times)


ESTIMATORS = {"median": statistics.median, "min": min}
ESTIMATOR = [statistics.median if torch.cuda.is_available() else min]  # set by --estimator


def _record(kind, pass_, op, dtype, shape, flops, nbytes, times) -> dict:
    return {"schema_version": SCHEMA_VERSION, "record": "op", "kind": kind, "pass": pass_, "op": op,
            "dtype": {torch.float32: "float32", torch.bfloat16: "bfloat16"}[dtype],
            "shape": [float(x) for x in shape], "flops": float(flops), "bytes": float(nbytes),
            "time_s": ESTIMATOR[0](times), "samples_s": [float(t) for t in times]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Time moesim's operator kinds over a shape sweep.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="a small sweep (CI)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--estimator", choices=tuple(ESTIMATORS), default=None,
                    help="time of a record from its timed calls (default: median on a GPU, min on a CPU)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="CPU only: 'cpu' times each call by the thread's CPU time (time.thread_time), as the "
                         "harness's --clock cpu does; default wall (time.perf_counter)")
    ap.add_argument("--after-wait", action="store_true",
                    help=f"CPU only: sleep {LAUNCH_WAIT_S * 1e3:g} ms before every timed call, as the harness's calls "
                         "run after a barrier or a collective wait (launch records always do)")
    ap.add_argument("--procs", type=int, default=1,
                    help="run the sweep in this many processes at once and keep the first one's records: "
                         "the contention of the harness's ranks on a shared CPU (default 1)")
    args = ap.parse_args(argv)
    if args.estimator:
        ESTIMATOR[0] = ESTIMATORS[args.estimator]
    if args.clock == "cpu" and torch.cuda.is_available():
        print("error: --clock cpu times CPU calls; on a GPU calls are timed by CUDA events", file=sys.stderr)
        return 2
    CLOCK[0] = args.clock
    WAIT_S[0] = LAUNCH_WAIT_S if args.after_wait and not torch.cuda.is_available() else 0.0
    shadows = []
    if args.procs > 1:
        import os
        import subprocess
        import tempfile

        extra = [a for a in (argv if argv is not None else sys.argv[1:])]
        for i in range(1, args.procs):
            out = os.path.join(tempfile.gettempdir(), f"validate-ops-shadow-{os.getpid()}-{i}.jsonl")
            cmd = [sys.executable, "-m", "validate.ops", *_replace_arg(extra, "--out", out), "--procs", "1"]
            shadows.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
    dtypes = [d for d in args.dtypes.split(",") if d]
    bad = [d for d in dtypes if d not in DTYPES]
    if bad or args.repeats < 1:
        print(f"error: --dtypes takes {', '.join(DTYPES)}; --repeats >= 1", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    import random

    rng = random.Random(args.seed)
    meta = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "threads": args.threads, "procs": args.procs,
            "timer": "cuda_events" if device.type == "cuda" else
            ("thread_time" if args.clock == "cpu" else "perf_counter"), "after_wait_s": WAIT_S[0], "seed": args.seed}
    records = []
    for name in dtypes:
        dtype = DTYPES[name]
        sizes = QUICK_GEMM_SIZES if args.quick else GEMM_SIZES
        records += gemm_records(sizes, dtype, device, args.repeats, rng)
        records += grouped_records(dtype, device, args.repeats, args.quick)
        records += attention_records(dtype, device, args.repeats, args.quick)
        records += memory_records(dtype, device, args.repeats, args.quick)
    try:
        with open(args.out, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps({**rec, **meta}) + "\n")
    except OSError as err:
        print(f"error: cannot write {args.out}: {err.strerror}", file=sys.stderr)
        return 2
    for proc in shadows:
        proc.wait()
    print(f"wrote {len(records)} operator records to {args.out} ({meta['device']}, {meta['timer']}, "
          f"{args.procs} process(es) at once)")
    return 0


def _replace_arg(argv: list[str], flag: str, value: str) -> list[str]:
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == flag:
            out += [flag, value]
            skip = True
        elif a.startswith(flag + "="):
            out += [flag, value]
        elif a == "--procs":
            skip = True
        elif not a.startswith("--procs="):
            out.append(a)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
