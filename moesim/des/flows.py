"""Max-min fair sharing of links by flows, as network.py computes it, for the fast engine (kernel.py).

The rates and their recomputation are network.py's, the same functions (`component`, `settle` / `fair_rates`:
progressive filling over the connected component of a flow's links, whenever a flow starts or ends);
read its notation block. Two
shortcuts that leave every time unchanged: a flow alone on its links runs at its cap or its
tightest link, and until another flow joins one of its links it is `lazy` - it schedules no end of
its own; the host schedules one event for a collective member's flows (`_lazy_end`), and a flow
that arrives on a lazy flow's link first takes it off when it has ended, or else turns it into an
ordinary flow (an end event per rate change). A third, for the common case of a collective member
whose egress and ingress ports are single links with nothing on them: its two lazy flows are one
record (a list, `_flows`) parked on the two ports (`lazy_on`), no _Flow objects and no entries in
`on_link`; a flow that arrives on one of those ports first turns that side into the lazy _Flow it
stands for (`_materialize`: same id, start, rate and end), so everything after is as above.

`FlowSharing` is a mixin: the host (kernel.Kernel) provides `now`, `push(time_s, action, arg)`, `heap`,
`seq`, `work` (devices to advance), `fabric`, `path(direction, device, level)` and `_arrive(device, op, key,
time_s)`; a flow's `done` is a list [flows left, device, operation, receive key, DeepEP stage part or None] (a
member record starts the same way).
"""

from __future__ import annotations

import heapq

from moesim.des.network import LinkUse, busiest_links, component, settle

# A collective member whose egress and ingress ports are single links with no live flow on them starts its
# two flows as one record instead of two _Flow objects (`_flows`): a list that is also their `done` list.
_COUNT, _DEVICE, _OP, _KEY, _PAIR, _EGRESS, _INGRESS, _CAP, _START, _FID, _END_E, _END_I, _MADE_E, _MADE_I, _LINK_E, \
    _LINK_I = range(16)


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
        self.lazy_on: list = []  # per link: the member record whose lazy flow is alone on it, or None
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
        self.lazy_on.append(None)
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
            if on or self.lazy_on[link] is not None:
                self._prune(link)
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
        lazy_on = self.lazy_on
        for link, _ in path:
            on = on_link[link]
            if on or lazy_on[link] is not None:
                self._prune(link)
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
                        self.work.extend(w)
                else:
                    self._arrive(done[1], done[2], done[3], now)

    def _pair(self, d, level: int) -> tuple:
        """(egress path, ingress path, single) of device `d` at `level` (the host's `path` and `fabric`), kept in
        `d.pairs`; `single` = (egress link, its rate bound, ingress link, its rate bound, egress multiplicity,
        ingress multiplicity) when both paths are one port of `d` alone, else None (no member records)."""
        eg, ig = self.path("egress", d.device, level), self.path("ingress", d.device, level)
        single = None
        # a port several devices share (a TPU chip's cores) has another member's flow on it at once: no record
        if len(eg) == 1 and len(ig) == 1 and len(self.fabric.mates(d.device, level)[0]) == 1:
            (le, me), (li, mi) = eg[0], ig[0]
            links = self.links
            single = (le, links[le].capacity_bytes_per_s / me, li, links[li].capacity_bytes_per_s / mi, me, mi)
        hit = d.pairs[level] = (eg, ig, single)
        return hit

    def _flows(self, arg) -> None:
        """Start each collective member's egress and ingress flows (the host's heap action after T(0)).

        A member whose two ports are single links without latency and carry no live flow (the common case) is
        started as `transfer` would start two flows alone (carried bytes, peak flows, fids, rates at the cap or
        the port, ends), held in one record that is also their `done` list and registered in `lazy_on`; one
        heap event ends both (`_member_end`). A flow that later arrives on one of the ports turns that side
        into a _Flow (`_materialize`) and shares the link with it, as it would share with a lazy _Flow. The
        other members go through `transfer`. `arg` = (members, level, cap, keyed): the flows' rate cap; keyed, each
        member's third item is the part its flows report to (a DeepEP stage, forwards.py)."""
        members, level, cap, keyed = arg
        transfer, heap, lazy_end, member_end = self.transfer, self.heap, self._lazy_end, self._member_end
        on_link, lazy_on, use, now = self.on_link, self.lazy_on, self.use, self.now
        plain = not self._latent
        push = heapq.heappush
        for d, i, key, egress, ingress in members:
            if not keyed:  # a member's third item is its join time; keyed, the part its flows report to
                key = None
            pair = d.pairs.get(level)
            if pair is None:
                pair = self._pair(d, level)
            single = pair[2]
            if single is not None and plain and egress > 0 and ingress > 0:
                le, li = single[0], single[2]
                on_e, on_i = on_link[le], on_link[li]
                if on_e or lazy_on[le] is not None:
                    self._prune(le)
                if on_i or lazy_on[li] is not None:
                    self._prune(li)
                if not on_e and not on_i:
                    u = use[le]
                    u.carried_bytes += single[4] * egress
                    if u.peak_flows < 1:
                        u.peak_flows = 1
                    u = use[li]
                    u.carried_bytes += single[5] * ingress
                    if u.peak_flows < 1:
                        u.peak_flows = 1
                    fid = self._next_fid + 1
                    self._next_fid = fid + 1
                    r = single[1]
                    end_e = now + egress / (cap if cap < r else r)
                    r = single[3]
                    end_i = now + ingress / (cap if cap < r else r)
                    rec = [2, d, i, key, pair, egress, ingress, cap, now, fid, end_e, end_i, None, None, le, li]
                    lazy_on[le] = lazy_on[li] = rec
                    self.seq += 1
                    push(heap, (end_e if end_e > end_i else end_i, self.seq, member_end, rec))
                    continue
            done = [2, d, i, key]
            a = transfer(pair[0], egress, cap, done)
            b = transfer(pair[1], ingress, cap, done)
            if a is not None:
                if b is not None:
                    self.seq += 1
                    push(heap, (a.end_s if a.end_s > b.end_s else b.end_s, self.seq, lazy_end, (a, b)))
                else:
                    self.seq += 1
                    push(heap, (a.end_s, self.seq, lazy_end, (a,)))
            elif b is not None:
                self.seq += 1
                push(heap, (b.end_s, self.seq, lazy_end, (b,)))

    def _materialize(self, link: int) -> None:
        """The member record on `link` as what `transfer` would have left there: a lazy _Flow still running, or,
        when its end has passed, nothing (a lazy flow a joiner purges)."""
        lazy_on = self.lazy_on
        rec = lazy_on[link]
        lazy_on[link] = None
        single = rec[_PAIR][2]
        side = 0 if link == single[0] else 1
        if rec[_END_E + side] <= self.now:
            return
        cap, bound = rec[_CAP], single[1 + 2 * side]
        flow = _Flow(rec[_PAIR][side], rec[_EGRESS + side], cap, rec, rec[_START], 0.0, rec[_FID] + side,
                     cap if cap < bound else bound)
        rec[_MADE_E + side] = flow
        self.on_link[link][flow.fid] = flow

    def _member_end(self, rec: list) -> None:
        """Both flows of a member record have ended (at their own ends, alone), unless one was shared since: a
        shared flow's own end counts it. The egress and ingress sides are written out, not looped: this runs
        once per collective member (~1.1 M times in a DeepSeek-V3 2048-GPU step)."""
        lazy_on = self.lazy_on
        ended = 0
        flow = rec[_MADE_E]
        if flow is None:
            link = rec[_LINK_E]
            if lazy_on[link] is rec:
                lazy_on[link] = None
            ended += 1
        elif flow.lazy:
            self._lazy_end((flow,))
        flow = rec[_MADE_I]
        if flow is None:
            link = rec[_LINK_I]
            if lazy_on[link] is rec:
                lazy_on[link] = None
            ended += 1
        elif flow.lazy:
            self._lazy_end((flow,))
        if ended:
            rec[_COUNT] -= ended
            if rec[_COUNT] == 0:
                d, i = rec[_DEVICE], rec[_OP]
                if rec[_KEY] is not None:  # one stage of a DeepEP member (forwards.py)
                    self._arrive(d, i, rec[_KEY], self.now)
                    return
                d.end[i] = self.now
                w = d.waiters.pop(i, None)
                if w:
                    self.work.extend(w)

    def _prune(self, link: int) -> None:
        """Take the lazy flows on `link` whose ends have passed off it (network.component's `prune`); a member
        record's flow still running there becomes a _Flow on the link first (it is about to be shared)."""
        if self.lazy_on[link] is not None:
            self._materialize(link)
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
