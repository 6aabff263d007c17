"""DeepEP's internode all-to-all in the fast engine as its two stages (collectives/dispatch.py): each member's
(token, remote node) records over the network and its NVLink forwards inside the destination node, each paced
at its own term of the estimate's T = T(0) + max(network, forwards) (CommSpec.network_s, forward_s).

`ForwardStages` is a mixin of kernel.Kernel: the host provides `contention`, `trace`, `fabric`, `devices`,
`links`, `use`, `path(direction, device, level)`, `push`, `complete`, `_account`, `_pair` and `_flows`
(flows.py) and `_arrive` (which
counts a stage's end into its member: a part [parent, trace label, start], the parent [stages left, device,
operation, end not before]). The simpy engine (engine.py) runs the same model with flows only.
"""

from __future__ import annotations

from moesim.des.schedule import FORWARD_SUFFIX


class ForwardStages:
    """Launch of a DeepEP all-to-all's two stages."""

    def _launch_stages(self, members: list, spec, start: float, level: int) -> None:
        """A DeepEP all-to-all across nodes: after T(0) each member moves its network records on `level` and its
        NVLink forwards on level 0 (each side the network's bytes × forward / wire bytes: routing loads scale
        both stages alike), each stage paced at its own time (CommSpec); the member ends with its later stage.
        With flows, a stage's flows report to a part [parent, trace label, start] (`_arrive`), the parent
        [stages left, device, operation, end not before] to the member. Where nothing else ever uses an NVLink
        port (`forwards_alone`, and always without contention) the forwards run alone, at the slower of their
        pace and the port: no flows, their end is known at once, and a member whose network stage cannot end
        before it (its records at their pace) is an ordinary one-stage member (DeepSeek-V3's tp = 1 step)."""
        begin = start + spec.latency_s if spec.latency_s > 0 else start
        ratio = spec.forward_bytes / spec.wire_bytes if spec.wire_bytes > 0 else 0.0
        cap, forward_cap = spec.cap_bytes_per_s, spec.forward_cap_bytes_per_s
        trace, contention = self.trace, self.contention
        if contention and not self.forwards_alone:
            network, nvlink = [], []
            for d, i, _, egress, ingress in members:
                parent = [2, d, i, 0.0]
                label = d.code.ops[i].name + FORWARD_SUFFIX if trace is not None else ""
                network.append((d, i, [parent, "", begin], egress, ingress))
                nvlink.append((d, i, [parent, label, begin], egress * ratio, ingress * ratio))
            self.push(begin, self._stage_flows, ((network, level, cap, True), (nvlink, 0, forward_cap, True)))
            return
        use = self.use
        plain, floored = [], []
        for member in members:
            d, i, _, egress, ingress = member
            pair = d.pairs.get(0)
            if pair is None:
                pair = self._pair(d, 0)
            single = pair[2]
            if single is not None and contention:  # one port each way (a GPU's NVLink): written out, ~4 M calls
                end = begin
                nv_egress, nv_ingress = egress * ratio, ingress * ratio
                le, bound_e, li, bound_i, me, mi = single
                if nv_egress > 0:
                    u = use[le]
                    u.carried_bytes += me * nv_egress
                    if u.peak_flows < 1:
                        u.peak_flows = 1
                    end = begin + nv_egress / (forward_cap if forward_cap < bound_e else bound_e)
                if nv_ingress > 0:
                    u = use[li]
                    u.carried_bytes += mi * nv_ingress
                    if u.peak_flows < 1:
                        u.peak_flows = 1
                    e = begin + nv_ingress / (forward_cap if forward_cap < bound_i else bound_i)
                    if e > end:
                        end = e
            else:
                end = self._alone_end(pair, egress * ratio, ingress * ratio, forward_cap, begin)
            if trace is not None:
                op = d.code.ops[i]
                trace.append((d.device, op.stream, op.name + FORWARD_SUFFIX, op.phase, op.layer, op.mb, begin, end))
            most = egress if egress > ingress else ingress
            network_end = begin + (most / cap if most > 0 else 0.0)  # the earliest it can end: at its pace
            if not contention:
                self._account(self.path("egress", d.device, level), egress)
                self._account(self.path("ingress", d.device, level), ingress)
                self.complete(d, i, network_end if network_end > end else end)
            elif network_end >= end:
                plain.append(member)
            else:
                floored.append((d, i, [[1, d, i, end], "", begin], egress, ingress))
        if plain:
            self.push(begin, self._flows, (plain, level, cap, False))
        if floored:
            self.push(begin, self._flows, (floored, level, cap, True))

    def _alone_end(self, pair: tuple, nv_egress: float, nv_ingress: float, forward_cap: float, begin: float) -> float:
        """End of a member's forwards run alone over its level-0 paths `pair` (egress, ingress, ...) from `begin`:
        each side at the slower of the pace and its links (with contention; without, at the pace), bytes counted."""
        use, links, contention = self.use, self.links, self.contention
        end = begin
        for path, nbytes in ((pair[0], nv_egress), (pair[1], nv_ingress)):
            if nbytes > 0:
                rate = forward_cap
                for link, mult in path:
                    u = use[link]
                    u.carried_bytes += mult * nbytes
                    if contention:
                        if u.peak_flows < 1:
                            u.peak_flows = 1
                        bound = links[link].capacity_bytes_per_s / mult
                        if bound < rate:
                            rate = bound
                e = begin + nbytes / rate
                if e > end:
                    end = e
        return end

    @property
    def forwards_alone(self) -> bool:
        """Whether nothing but DeepEP's NVLink forwards ever uses a level-0 port (no collective or send of any
        program on level 0, no port shared by devices): one device runs one collective at a time (its comm
        stream), so its forwards would always be alone there. Decided once, from the devices' programs."""
        if self._forwards_alone is None:
            alone = self.fabric.sharers(0) == 1
            for code in {id(d.code): d.code for d in self.devices}.values() if alone else ():
                for op in code.ops:
                    spec = op.comm
                    if spec is not None and spec.forward_bytes <= 0 and self.fabric.level(spec.span) == 0:
                        alone = False
                        break
                if not alone:
                    break
            self._forwards_alone = alone
        return self._forwards_alone

    def _stage_flows(self, stages) -> None:
        """Start each stage's member flows (the host's heap action after T(0))."""
        for arg in stages:
            self._flows(arg)


__all__ = ["ForwardStages"]
