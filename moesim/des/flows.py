"""Max-min fair sharing of links by flows, as network.py computes it, for the fast engine (kernel.py).

The rates and their recomputation are network.py's, the same functions (`component`, `settle` / `fair_rates`:
progressive filling over the connected component of a flow's links, whenever a flow starts or ends);
read its notation block. Two
shortcuts that leave every time unchanged: a flow alone on its links runs at its cap or its
tightest link, and until another flow joins one of its links it is `lazy` - it schedules no end of
its own; the host schedules one event for a collective member's flows (`_lazy_end`), and a flow
that arrives on a lazy flow's link first takes it off when it has ended, or else turns it into an
ordinary flow (an end event per rate change).

`FlowSharing` is a mixin: the host (kernel.Kernel) provides `now`, `push(time_s, action, arg)`,
`work` (devices to advance) and `_arrive(device, op, key, time_s)`; a flow's `done` is a list
[flows left, device, operation, receive key or None].
"""

from __future__ import annotations

from moesim.des.network import LinkUse, busiest_links, component, settle


class _Flow:
    __slots__ = ("path", "size_bytes", "cap_bytes_per_s", "done", "remaining_bytes", "rate_bytes_per_s", "updated_s",
                 "version", "latency_s", "fid", "lazy", "end_s", "registered")

    def __init__(self, path, size, cap, done, now, latency, fid, alone_rate=0.0) -> None:
        """`alone_rate` > 0: the flow starts alone on its links at that rate, lazy (as `_alone` makes it)."""
        self.path = path
        self.size_bytes = size
        self.cap_bytes_per_s = cap
        self.done = done
        self.remaining_bytes = size
        self.updated_s = now
        self.latency_s = latency
        self.fid = fid
        self.registered = True
        self.rate_bytes_per_s = alone_rate
        if alone_rate > 0:
            self.version = 1
            self.lazy = True
            self.end_s = now + size / alone_rate
        else:
            self.version = 0
            self.lazy = False
            self.end_s = 0.0


def _alone(flow: _Flow, rate_bytes_per_s: float, now: float) -> _Flow:
    """A flow alone on its links runs at `rate_bytes_per_s` to its end, which its caller schedules (lazy)."""
    flow.rate_bytes_per_s = rate_bytes_per_s
    flow.version = 1
    flow.lazy = True
    flow.end_s = now + flow.size_bytes / rate_bytes_per_s
    return flow


class FlowSharing:
    """Links, the flows on them, and their ends."""

    def _init_links(self) -> None:
        self.links: list = []
        self.index: dict[str, int] = {}
        self.use: list[LinkUse] = []
        self.on_link: list[dict] = []
        self._latent = False  # some link has a latency of its own (PortFabric's have none)
        self._next_fid = 0

    def _add_link(self, link) -> int:
        if link.name in self.index:
            return self.index[link.name]
        self.index[link.name] = len(self.links)
        self._latent = self._latent or link.latency_s > 0
        self.links.append(link)
        self.use.append(LinkUse())
        self.on_link.append({})
        return self.index[link.name]


    def _account(self, path, size_bytes: float) -> None:
        use = self.use
        for link, mult in path:
            use[link].carried_bytes += mult * size_bytes

    def transfer(self, path, size_bytes: float, cap_bytes_per_s: float, done: list):
        """Start a flow; returns it when it is alone on its links (lazy: the caller schedules its end with
        `_lazy_end`, and a flow that joins it later turns it into an ordinary one), else None."""
        if len(path) == 1 and size_bytes > 0 and not self._latent:  # the common case, without the loops below
            link, mult = path[0]
            use = self.use[link]
            use.carried_bytes += mult * size_bytes
            on = self.on_link[link]
            now = self.now
            if on:
                for other in [f for f in on.values() if f.lazy and f.end_s <= now]:
                    self._purge(other)
            self._next_fid += 1
            flow = _Flow(path, size_bytes, cap_bytes_per_s, done, now, 0.0, self._next_fid)
            if on:
                on[flow.fid] = flow
                if len(on) > use.peak_flows:
                    use.peak_flows = len(on)
                self._reshare(path)
                return None
            on[flow.fid] = flow
            if use.peak_flows < 1:
                use.peak_flows = 1
            rate = self.links[link].capacity_bytes_per_s / mult
            return _alone(flow, cap_bytes_per_s if cap_bytes_per_s < rate else rate, now)
        latency = sum(self.links[link].latency_s for link, _ in path) if self._latent else 0.0
        use = self.use
        for link, mult in path:
            use[link].carried_bytes += mult * size_bytes
        if size_bytes <= 0 or not path:
            if size_bytes > 0:  # no link: paced at its cap alone
                latency += size_bytes / cap_bytes_per_s
            self._finish(done, latency)
            return None
        self._next_fid += 1
        now = self.now
        flow = _Flow(path, size_bytes, cap_bytes_per_s, done, now, latency, self._next_fid)
        alone = True
        on_link = self.on_link
        for link, _ in path:
            on = on_link[link]
            if on:
                for other in [f for f in on.values() if f.lazy and f.end_s <= now]:
                    self._purge(other)
                if on:
                    alone = False
            on[flow.fid] = flow
            if len(on) > use[link].peak_flows:
                use[link].peak_flows = len(on)
        if alone and latency == 0:  # nothing else on its links: its cap or its tightest link, as _reshare gives
            rate = cap_bytes_per_s
            links = self.links
            for link, w in path:
                c = links[link].capacity_bytes_per_s / w
                if c < rate:
                    rate = c
            return _alone(flow, rate, now)
        self._reshare(path)
        return None

    def _finish(self, done: list, latency_s: float) -> None:
        if latency_s > 0:
            self.push(self.now + latency_s, self._flow_done, done)
        else:
            self._flow_done(done)

    def _purge(self, flow: _Flow) -> None:
        """Take a lazy flow whose end has passed off its links (its end is counted by `_lazy_end`)."""
        if flow.registered:
            flow.registered = False
            for link, _ in flow.path:
                del self.on_link[link][flow.fid]

    def _lazy_end(self, flows) -> None:
        """The end of a collective member's lazy flows (those not joined since: a joined flow's own end event
        counts it). Nothing refers to an ended lazy flow once it is off its links, so only that is undone."""
        on_link, now = self.on_link, self.now
        for flow in flows:
            if not flow.lazy:
                continue
            flow.lazy = False  # it ended at its own end_s, alone
            if flow.registered:
                for link, _ in flow.path:
                    del on_link[link][flow.fid]
            done = flow.done
            done[0] -= 1
            if done[0] == 0:
                if done[3] is None:
                    d, i = done[1], done[2]
                    d.end[i] = now
                    w = d.waiters.pop(i, None)
                    if w:
                        self.work.extend([(d, s) for s in w])
                else:
                    self._arrive(done[1], done[2], done[3], now)

    def _prune(self, link: int) -> None:
        """Take the lazy flows on `link` whose ends have passed off it (network.component's `prune`)."""
        on = self.on_link[link]
        if on:
            for f in [f for f in on.values() if f.lazy and f.end_s <= self.now]:
                self._purge(f)

    def _reshare(self, seed) -> None:
        now = self.now
        flows = component(self.on_link, seed, self._prune)
        if not flows:
            return
        rates = settle(flows, self.links, now)
        for flow in flows:
            flow.lazy = False  # joined: from now on its end is an ordinary event
            flow.rate_bytes_per_s = rates[flow.fid]
            flow.version += 1
            delay = max(flow.remaining_bytes, 0.0) / flow.rate_bytes_per_s
            self.push(now + delay, self._end, (flow, flow.version))

    def _end(self, arg) -> None:
        flow, version = arg
        if version != flow.version:
            return
        flow.remaining_bytes = 0.0
        flow.rate_bytes_per_s = 0.0
        flow.version += 1
        others = False
        for link, _ in flow.path:
            on = self.on_link[link]
            del on[flow.fid]
            if on:
                others = True
        self._finish(flow.done, flow.latency_s)
        if others:
            self._reshare(flow.path)

    def busiest(self, elapsed_s: float, count: int = 5) -> list[dict]:
        """The `count` links with the highest utilisation, as Network.busiest."""
        return busiest_links(self.links, self.use, elapsed_s, count)


__all__ = ["FlowSharing"]
