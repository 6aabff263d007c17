"""Flow-level network: directed links with capacities, shared max-min fairly by the flows on them.

Notation: a link l has capacity c_l (bytes/s, one direction) and latency λ_l (s); a flow f moves
S_f bytes over a path of links, each with a multiplicity w_{f,l} (how many identical flows the
flow stands for on that link: 1 in a full simulation, the number of symmetric devices sharing the
link when one representative device stands for many), and may be capped at u_f bytes/s (the rate
the collective's algorithm paces it at).

Rates are the max-min fair allocation with caps, by progressive filling (Bertsekas & Gallager,
*Data Networks*, 2nd ed., §6.5.2): all unfrozen flows rise together; a flow freezes at its cap or
when a link on its path saturates (Σ_f w_{f,l}·r_f = c_l). Rates are recomputed, for the flows
that share links with it (its connected component), whenever a flow starts or ends. A flow ends
when its bytes are through plus its path latency Σ λ_l. Without contention every flow runs at its
cap on a private copy of the network (the analytical model's assumption).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import simpy

TIE_TOLERANCE = 1e-9  # relative: links and caps this close to the fill level freeze together

@dataclass(frozen=True)
class Link:
    """One direction of one link (or of a port that bundles parallel links)."""

    name: str
    capacity_bytes_per_s: float
    latency_s: float = 0.0


@dataclass(eq=False)
class Flow:
    """A transfer in flight; `path` holds (link index, multiplicity) pairs."""

    path: tuple[tuple[int, int], ...]
    size_bytes: float
    cap_bytes_per_s: float
    done: simpy.Event
    remaining_bytes: float = 0.0
    rate_bytes_per_s: float = 0.0
    updated_s: float = 0.0
    version: int = 0
    latency_s: float = 0.0
    fid: int = 0


@dataclass
class LinkUse:
    """Bytes a link carried, for utilisation reports."""

    carried_bytes: float = 0.0
    peak_flows: int = 0


def max_min_rates(flows: Sequence[Flow], capacity: dict[int, float]) -> dict[int, float]:
    """Max-min fair rates with caps (progressive filling), keyed by flow id.

    `capacity` maps every link index on the flows' paths to its capacity. Deterministic: ties
    freeze together, iteration follows the order of `flows`.
    """
    residual = dict(capacity)
    rates: dict[int, float] = {}
    active = list(flows)
    while active:
        weight: dict[int, float] = {}
        for f in active:
            for link, mult in f.path:
                weight[link] = weight.get(link, 0.0) + mult
        level = min((f.cap_bytes_per_s for f in active), default=math.inf)
        for link, w in weight.items():
            level = min(level, max(residual[link], 0.0) / w)
        if math.isinf(level):
            raise ValueError("a flow with no finite cap crosses no link: its rate is unbounded")
        tight = {link for link, w in weight.items() if max(residual[link], 0.0) / w <= level * (1 + TIE_TOLERANCE)}
        still = []
        for f in active:
            if f.cap_bytes_per_s <= level * (1 + TIE_TOLERANCE) or any(link in tight for link, _ in f.path):
                rate = min(level, f.cap_bytes_per_s)
                rates[f.fid] = rate
                for link, mult in f.path:
                    residual[link] -= mult * rate
            else:
                still.append(f)
        active = still
    return rates


def component(on_link: Sequence[dict], seed, prune: Callable[[int], None] | None = None) -> list:
    """Flows connected to the links of `seed` ((link, multiplicity) pairs) through shared links, in start (id)
    order: the flows whose rates a start or an end on `seed` can change. `prune(link)`, when given, runs on
    each link before its flows are read (the fast engine takes ended lazy flows off there)."""
    if len(seed) == 1:
        if prune is not None:
            prune(seed[0][0])
        on = on_link[seed[0][0]]
        if len(on) <= 1 and all(len(f.path) == 1 for f in on.values()):
            return list(on.values())
    seen = set()
    stack = [link for link, _ in seed]
    flows: dict = {}
    while stack:
        link = stack.pop()
        if link in seen:
            continue
        seen.add(link)
        if prune is not None:
            prune(link)
        for fid, flow in on_link[link].items():
            if fid not in flows:
                flows[fid] = flow
                stack.extend(l for l, _ in flow.path if l not in seen)
    return [flows[fid] for fid in sorted(flows)]


def fair_rates(flows: Sequence, links: Sequence[Link]) -> dict[int, float]:
    """Rates of one connected component of flows, keyed by flow id: a flow alone runs at its cap or its
    tightest link (c_l / w_{f,l}), several share max-min fairly (max_min_rates)."""
    if len(flows) == 1:
        f = flows[0]
        rate = f.cap_bytes_per_s
        for link, w in f.path:
            c = links[link].capacity_bytes_per_s / w
            if c < rate:
                rate = c
        return {f.fid: rate}
    capacity = {link: links[link].capacity_bytes_per_s for f in flows for link, _ in f.path}
    return max_min_rates(flows, capacity)


class Network:
    """Links and the flows on them, inside a simpy environment."""

    def __init__(self, env: simpy.Environment, links: Sequence[Link] = (), *, contention: bool = True) -> None:
        self.env = env
        self.contention = contention
        self.links: list[Link] = []
        self.index: dict[str, int] = {}
        self.use: list[LinkUse] = []
        self.on_link: list[dict[int, Flow]] = []
        self._next_id = 0
        for link in links:
            self.add_link(link)

    def add_link(self, link: Link) -> int:
        """Index of `link` (added once; a second link of the same name must be identical)."""
        if link.name in self.index:
            return self.index[link.name]
        self.index[link.name] = len(self.links)
        self.links.append(link)
        self.use.append(LinkUse())
        self.on_link.append({})
        return self.index[link.name]

    def account(self, path: Sequence[tuple[int, int]], size_bytes: float) -> None:
        """Count `size_bytes` on every link of `path` (a transfer timed elsewhere, without contention)."""
        for link, mult in path:
            self.use[link].carried_bytes += mult * size_bytes

    def transfer(self, path: Sequence[tuple[int, int]], size_bytes: float,
                 cap_bytes_per_s: float = math.inf) -> simpy.Event:
        """Start a flow of `size_bytes` over `path` ((link index, multiplicity), ...); the event fires at its end."""
        done = self.env.event()
        latency = sum(self.links[link].latency_s for link, _ in path)
        for link, mult in path:
            self.use[link].carried_bytes += mult * size_bytes
        if size_bytes <= 0:
            self._finish(done, latency)
            return done
        if not self.contention or not path:
            if math.isinf(cap_bytes_per_s):
                if not path:
                    raise ValueError("a flow over no link needs a finite cap")
                cap_bytes_per_s = min(self.links[link].capacity_bytes_per_s / mult for link, mult in path)
            timer = self.env.timeout(size_bytes / cap_bytes_per_s + latency)
            timer.callbacks.append(lambda _event: done.succeed())
            return done
        self._next_id += 1
        flow = Flow(tuple(path), size_bytes, cap_bytes_per_s, done, remaining_bytes=size_bytes,
                    updated_s=self.env.now, latency_s=latency, fid=self._next_id)
        for link, _ in flow.path:
            self.on_link[link][flow.fid] = flow
            self.use[link].peak_flows = max(self.use[link].peak_flows, len(self.on_link[link]))
        self._reshare(flow.path)
        return done

    def _finish(self, done: simpy.Event, latency_s: float) -> None:
        if latency_s > 0:
            self.env.timeout(latency_s).callbacks.append(lambda _event: done.succeed())
        else:
            done.succeed()

    def _reshare(self, seed_links) -> None:
        now = self.env.now
        flows = component(self.on_link, seed_links)
        if not flows:
            return
        rates = settle(flows, self.links, now)
        for flow in flows:
            flow.rate_bytes_per_s = rates[flow.fid]
            flow.version += 1
            delay = max(flow.remaining_bytes, 0.0) / flow.rate_bytes_per_s
            timer = self.env.timeout(delay)
            timer.callbacks.append(lambda _event, f=flow, v=flow.version: self._end(f, v))

    def _end(self, flow: Flow, version: int) -> None:
        if version != flow.version:
            return  # rescheduled since
        flow.remaining_bytes = 0.0
        flow.rate_bytes_per_s = 0.0
        flow.version += 1
        for link, _ in flow.path:
            del self.on_link[link][flow.fid]
        self._finish(flow.done, flow.latency_s)
        self._reshare(flow.path)

    def busiest(self, elapsed_s: float, count: int = 5) -> list[dict]:
        """The `count` links with the highest utilisation carried/(capacity·elapsed), highest first."""
        return busiest_links(self.links, self.use, elapsed_s, count)


def settle(flows: Sequence, links: Sequence[Link], now_s: float) -> dict[int, float]:
    """Bring each flow's remaining bytes up to `now_s` at its old rate; return the new max-min fair rates."""
    for flow in flows:
        flow.remaining_bytes -= flow.rate_bytes_per_s * (now_s - flow.updated_s)
        flow.updated_s = now_s
    return fair_rates(flows, links)


def busiest_links(links, uses, elapsed_s: float, count: int) -> list[dict]:
    """The `count` links with the highest utilisation carried/(capacity·elapsed), highest first (ties by name)."""
    rows = []
    for link, use in zip(links, uses):
        if use.carried_bytes <= 0 or elapsed_s <= 0:
            continue
        rows.append({"link": link.name, "carried_bytes": float(use.carried_bytes),
                     "capacity_bytes_per_s": float(link.capacity_bytes_per_s),
                     "utilisation": float(use.carried_bytes / (link.capacity_bytes_per_s * elapsed_s)),
                     "peak_concurrent_flows": use.peak_flows})
    rows.sort(key=lambda r: (-r["utilisation"], r["link"]))
    return rows[:count]


__all__ = ["Flow", "Link", "LinkUse", "Network", "busiest_links", "component", "fair_rates", "max_min_rates", "settle"]
