"""Price a broad grid of collectives and record every answer exactly, to show a speed change priced nothing differently.

Run: python benchmarks/collective_grid.py --out FILE [--compare OLD_FILE] [--quick] [--reference]
Grid: every shipped hardware profile; ops all_reduce, all_gather, reduce_scatter, all_to_all, broadcast,
send_recv; sizes 0 B, 8 B .. 16 GiB (every power of two, and 3·2^k); groups of 2 .. 2048 members
(powers of two, 3·2^k, 72, 576), strides 1 .. 16, alone or with the concurrent groups of a full job; on
GPUs every NCCL_ALGO setting below, CollNet off and on. Each answer is kept as (time_s in float.hex,
algorithm, bottleneck) or the SpecError's message, so two trees compare bit for bit; the file's sha256 is
printed. Each model is a fresh TopologyModel, called in grid order (its caches warm as a search's do).
`--reference` prices every call on a model of its own through `candidates` (nothing memoised, the first
fastest candidate): its file must equal the default run's on the same tree (slower: a placement per call).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from moesim.collectives.base import OPS, Group
from moesim.collectives.topo_model import TopologyModel
from moesim.errors import SpecError
from moesim.specs.load import load_hardware

PROFILES = Path(__file__).resolve().parent.parent / "hardware_profiles"
NCCL_ALGOS = ("", "ring", "tree", "ring,tree", "nvls", "nvlstree", "^nvls,nvlstree", "collnet", "collnetdirect",
              "collnetchain", "pat", "^ring")


def sizes(quick: bool) -> list[int]:
    powers = [2**k for k in range(3, 35)]
    odd = [3 * 2**k for k in range(2, 33)]
    out = sorted({0, *powers, *odd})
    return out[::4] if quick else out


def groups(max_devices: int, quick: bool) -> list[Group]:
    members = sorted({2**k for k in range(1, 12)} | {3 * 2**k for k in range(0, 10)} | {72, 576})
    strides = (1, 2, 8) if quick else (1, 2, 4, 8, 16)
    out = []
    for n in members:
        for stride in strides:
            if n * stride > max_devices:
                continue
            out.append(Group(size=n, stride=stride))
            job = max_devices // (n * stride) * n * stride
            out.append(Group(size=n, stride=stride, concurrent=job // n, devices=job))
    return out


def price(model: TopologyModel, op: str, size: int, group: Group) -> list:
    try:
        c = model.cost(op, size, group)
    except SpecError as err:
        return ["error", str(err)]
    return [float(c.time_s).hex(), c.algorithm, c.bottleneck]


def price_uncached(model: TopologyModel, op: str, size: int, group: Group) -> list:
    """`price` on a fresh copy of `model`, from its candidates' first minimum."""
    fresh = TopologyModel(model.hardware, nccl_algo=model.nccl_algo, collnet=model.collnet)
    if group.size == 1:
        return price(fresh, op, size, group)
    try:
        found = fresh.candidates(op, size, group)
        if not found:
            fresh.cost(op, size, group)  # raises the cost path's own error
    except SpecError as err:
        return ["error", str(err)]
    best = min(found, key=lambda c: c.time_s + c.tuner_offset_s)  # NCCL's pick by its own model
    return [float(best.time_s).hex(), best.label, best.bottleneck]


def grid(quick: bool = False, reference: bool = False) -> dict[str, list]:
    pricer = price_uncached if reference else price
    out = {}
    for path in sorted(PROFILES.glob("*.toml")):
        hw = load_hardware(path.stem)
        variants = [(a, c) for a in NCCL_ALGOS for c in (False, True)] if hw.device_kind == "gpu" else [("", False)]
        for algo, collnet in variants:
            if quick and (algo, collnet) not in (("", False), ("", True), ("ring", False), ("^nvls,nvlstree", True)):
                continue
            model = TopologyModel(hw, nccl_algo=algo, collnet=collnet)
            grid_sizes = sizes(quick or bool(algo) or collnet)  # NCCL_ALGO / CollNet variants: every 4th size
            for group in groups(hw.max_devices, quick):
                g = f"{group.size}/{group.stride}/{group.concurrent}/{group.devices}"
                for op in OPS:
                    for size in grid_sizes:
                        out[f"{path.stem}|{algo}|{int(collnet)}|{op}|{size}|{g}"] = pricer(model, op, size, group)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="write the answers here (JSON)")
    parser.add_argument("--compare", type=Path, help="a file an earlier run wrote: report every difference")
    parser.add_argument("--quick", action="store_true", help="a smaller grid")
    parser.add_argument("--reference", action="store_true", help="price each call uncached (a fresh model's candidates)")
    args = parser.parse_args()
    start = time.perf_counter()
    answers = grid(args.quick, args.reference)
    text = json.dumps(answers, sort_keys=True)
    args.out.write_text(text)
    print(f"{len(answers)} collectives priced in {time.perf_counter() - start:.1f} s; "
          f"sha256 {hashlib.sha256(text.encode()).hexdigest()}")
    if args.compare:
        old = json.loads(args.compare.read_text())
        differ = [k for k in sorted(set(old) | set(answers)) if old.get(k) != answers.get(k)]
        for key in differ[:20]:
            print(f"DIFFERS {key}: {old.get(key)} -> {answers.get(key)}")
        print(f"{len(differ)} of {len(answers)} differ from {args.compare}")
        raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
