"""A static evaluator of VPC firewall semantics (pure, no IO).

What it implements, from the VPC firewall rules documentation:

* a rule applies to one network and one direction; a disabled rule applies to nothing;
* targets: a rule with target service accounts applies to instances running as one of them,
  one with target tags to instances carrying one of them, one with neither to every instance;
* ingress sources: source ranges OR source tags OR source service accounts (tags and service
  accounts only for instances of the same network); no source at all means ``0.0.0.0/0``;
  optional destination ranges narrow the rule further;
* egress: destination ranges (none means ``0.0.0.0/0``), optional source ranges;
* protocols and ports: any listed ``allowed``/``denied`` entry matches;
* order: the lowest priority number wins; at equal priority a deny rule wins over an allow;
* implied rules at priority 65535: allow every egress, deny every ingress.

:func:`decide_egress` / :func:`decide_ingress` decide one packet; :func:`egress_boxes` decides
*every* packet a source could send, as a partition of (address, protocol, port) space into
boxes on which the decision is constant — the static "connectivity test" the checks use.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from zt_pipelines.segmentation.model import PORTED, EgressTable, FirewallRule, Range, rule_order

IMPLIED_PRIORITY = 65535


@dataclass(frozen=True)
class Instance:
    """One end of a connection: an address on a network, with its tags and identity."""

    network: str
    ip: int
    tags: tuple[str, ...] = ()
    service_account: str | None = None


@dataclass(frozen=True)
class Verdict:
    """A decision and the rule that made it (``None``: the implied rule)."""

    allowed: bool
    rule: FirewallRule | None


def ordered(rules: Iterable[FirewallRule]) -> list[FirewallRule]:
    """Rules in evaluation order: priority, then deny before allow, then name (stable)."""
    return sorted(rules, key=rule_order)


def _in(ranges: Sequence[Range], ip: int) -> bool:
    return any(lo <= ip <= hi for lo, hi in ranges)


def targets(rule: FirewallRule, instance: Instance) -> bool:
    """Whether ``rule`` applies to ``instance`` as its target."""
    if rule.target_service_accounts:
        sa = instance.service_account
        if sa is None:
            return False
        sa = sa.lower()
        return sa in rule.target_service_accounts or any(
            s.lower() == sa for s in rule.target_service_accounts
        )
    if rule.target_tags:
        return bool(set(rule.target_tags) & set(instance.tags))
    return True


def _traffic(rule: FirewallRule, protocol: int, port: int | None) -> bool:
    return any(t.matches(protocol, port) for t in rule.traffic)


def decide_egress(
    rules: Iterable[FirewallRule], src: Instance, dst_ip: int, protocol: int, port: int | None
) -> Verdict:
    """The decision for one packet leaving ``src``."""
    for rule in ordered(rules):
        if rule.disabled or rule.direction != "EGRESS" or rule.network != src.network:
            continue
        if not targets(rule, src):
            continue
        if rule.destination_ranges and not _in(rule.destination_ranges, dst_ip):
            continue
        if rule.source_ranges and not _in(rule.source_ranges, src.ip):
            continue
        if _traffic(rule, protocol, port):
            return Verdict(rule.allow, rule)
    return Verdict(True, None)


def decide_ingress(
    rules: Iterable[FirewallRule],
    dst: Instance,
    src_ip: int,
    protocol: int,
    port: int | None,
    *,
    src: Instance | None = None,
) -> Verdict:
    """The decision for one packet arriving at ``dst`` from ``src_ip`` (``src``: the sending
    instance, when it is a VM of the same network, for source tags / service accounts)."""
    for rule in ordered(rules):
        if rule.disabled or rule.direction != "INGRESS" or rule.network != dst.network:
            continue
        if not targets(rule, dst):
            continue
        if not _source_matches(rule, src_ip, src):
            continue
        if rule.destination_ranges and not _in(rule.destination_ranges, dst.ip):
            continue
        if _traffic(rule, protocol, port):
            return Verdict(rule.allow, rule)
    return Verdict(False, None)


def _source_matches(rule: FirewallRule, src_ip: int, src: Instance | None) -> bool:
    if not (rule.source_ranges or rule.source_tags or rule.source_service_accounts):
        return True  # no source: 0.0.0.0/0
    if _in(rule.source_ranges, src_ip):
        return True
    if src is None or src.network != rule.network:
        return False
    if rule.source_tags and set(rule.source_tags) & set(src.tags):
        return True
    return bool(
        rule.source_service_accounts
        and src.service_account is not None
        and src.service_account.lower() in {s.lower() for s in rule.source_service_accounts}
    )


# -- the static partition ----------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a step's traffic leaves from: its network, the address ranges it may use, and what
    a firewall rule could target it by."""

    network: str
    ranges: tuple[Range, ...]
    tags: tuple[str, ...] = ()
    service_account: str | None = None


@dataclass(frozen=True)
class Box:
    """Addresses ``lo..hi``, one protocol (``other`` = any protocol no rule names), a port
    interval (``None`` for protocols without ports), and the decision there."""

    lo: int
    hi: int
    protocol: int
    other: bool
    port_lo: int | None
    port_hi: int | None
    allowed: bool
    rule: FirewallRule | None


def _applies(rule: FirewallRule, source: Source) -> bool:
    """Whether ``rule`` may decide traffic from ``source``: an allow that applies to *some*
    address of the source counts (it could open the path), a deny only if it covers *every*
    address (it can be relied on) — fail closed both ways."""
    if rule.disabled or rule.direction != "EGRESS" or rule.network != source.network:
        return False
    if rule.target_service_accounts:
        sa = source.service_account
        if sa is None or sa.lower() not in rule.targeted_accounts:
            return False
    elif rule.target_tags and not set(rule.target_tags) & set(source.tags):
        return False
    if not rule.source_ranges:
        return True
    if rule.allow:
        return any(lo <= b and a <= hi for a, b in source.ranges for lo, hi in rule.source_ranges)
    return _covers_source(rule, source)


def _covers_source(rule: FirewallRule, source: Source) -> bool:
    """Whether the rule's source ranges (if any) hold every address of ``source``."""
    return not rule.source_ranges or all(
        any(lo <= a and b <= hi for lo, hi in rule.source_ranges) for a, b in source.ranges
    )


def _cuts(intervals: Iterable[Range], space: Range) -> list[int]:
    """Sorted interval starts partitioning ``space`` at every boundary of ``intervals``."""
    points = {space[0]}
    for lo, hi in intervals:
        if space[0] < lo <= space[1]:
            points.add(lo)
        if space[0] <= hi < space[1]:
            points.add(hi + 1)
    return sorted(points)


def _merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, non-overlapping, non-adjacent union of ``ranges``."""
    out: list[Range] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _spans(cuts: list[int], end: int) -> list[Range]:
    return [(c, (cuts[i + 1] - 1) if i + 1 < len(cuts) else end) for i, c in enumerate(cuts)]


def _catch_all(rule: FirewallRule, source: Source) -> bool:
    """Whether ``rule`` matches every packet from every address of ``source``: nothing after
    it in evaluation order can decide anything."""
    return rule.all_traffic and rule.all_destinations and _covers_source(rule, source)


def _relevant(applicable: list[FirewallRule], allows: list[FirewallRule]) -> list[FirewallRule]:
    """The rules that can decide a packet some allow rule could open (behind a catch-all deny).

    A deny rule that shares no address or no protocol with every allow rule decides only
    packets the catch-all denies anyway; a rule matching exactly what an earlier rule matches
    is never reached (first match wins). Dropping both leaves every allowed box, and the rule
    that allows it, unchanged.
    """
    every = any(r.all_traffic for r in allows)
    protocols = {p for r in allows for p in r.protocols or ()}
    interest = _merge(d for r in allows for d in (r.destination_ranges or [(0, 2**32 - 1)]))
    starts = [a for a, _ in interest]

    def touches(ranges: tuple[Range, ...]) -> bool:
        if not ranges:
            return bool(interest)
        for lo, hi in ranges:
            i = bisect.bisect_right(starts, hi) - 1
            if i >= 0 and interest[i][1] >= lo:
                return True
        return False

    out: list[FirewallRule] = []
    seen: set[tuple[object, ...]] = set()
    for r in applicable:
        if not r.allow and not (
            touches(r.destination_ranges)
            and (every or r.protocols is None or not r.protocols.isdisjoint(protocols))
        ):
            continue
        match = r.match_key
        if match in seen:
            continue
        seen.add(match)
        out.append(r)
    return out


def egress_boxes(
    rules: Iterable[FirewallRule],
    source: Source,
    *,
    extra_ranges: Iterable[Range] = (),
    extra_ports: dict[int, list[Range]] | None = None,
    allowed_only: bool = False,
    presorted: bool = False,
) -> list[Box]:
    """Every egress decision for ``source``, as boxes on which the decision is constant.

    ``extra_ranges`` / ``extra_ports`` add boundaries (e.g. the declared reach) so each box is
    entirely inside or outside them. With ``allowed_only``, regions a catch-all deny decides
    are skipped: the boxes returned are exactly the allowed ones (the fast path of the checks).
    ``presorted``: ``rules`` are already in :func:`ordered` order.
    """
    return _egress(rules, source, extra_ranges, extra_ports, allowed_only, presorted)[0]


def _egress(
    rules: Iterable[FirewallRule],
    source: Source,
    extra_ranges: Iterable[Range],
    extra_ports: dict[int, list[Range]] | None,
    allowed_only: bool,
    presorted: bool,
) -> tuple[list[Box], frozenset[int], frozenset[int] | None]:
    """:func:`egress_boxes`, with the protocols that have spans of their own and the protocols
    an allow rule can open (``None``: every one)."""
    applicable = []
    closed = False
    network = source.network
    for r in rules if presorted else ordered(rules):
        if r.network != network or not (
            # the common rule (no targets, no source ranges) applies to every source
            _applies(r, source)
            if r.target_service_accounts or r.target_tags or r.source_ranges
            else not r.disabled and r.direction == "EGRESS"
        ):
            continue
        applicable.append(r)
        if _catch_all(r, source):
            closed = not r.allow
            break  # later rules never decide
    allows = [r for r in applicable if r.allow]
    if allowed_only and closed:
        applicable = _relevant(applicable, allows)
    ip_bounds: list[Range] = list(extra_ranges)
    protocols: set[int] = set()
    port_bounds: dict[int, list[Range]] = {p: list(v) for p, v in (extra_ports or {}).items()}
    for r in applicable:
        ip_bounds.extend(r.destination_ranges)
        for t in r.traffic:
            if t.protocol is not None:
                protocols.add(t.protocol)
                if t.ports:
                    port_bounds.setdefault(t.protocol, []).extend(t.ports)
    protocols |= set(port_bounds)
    other = next(p for p in range(256) if p not in protocols and p not in PORTED)
    wanted: set[int] | None = None  # protocols an allow rule can open (None: every one)
    interest: list[Range] | None = None
    if allowed_only and closed:
        if any(t.protocol is None for r in allows for t in r.traffic):
            wanted = None
        else:
            wanted = {t.protocol for r in allows for t in r.traffic if t.protocol is not None}
        interest = [d for r in allows for d in (r.destination_ranges or [(0, 2**32 - 1)])]
    if interest is not None:
        interest = _merge(interest)
        starts = [a for a, _ in interest]

        def touches(lo: int, hi: int) -> bool:
            i = bisect.bisect_right(starts, hi) - 1  # the last interest range starting <= hi
            return i >= 0 and interest[i][1] >= lo  # type: ignore[index]

        # boundaries outside what an allow rule could open cut nothing we look at
        ip_bounds = [(lo, hi) for lo, hi in ip_bounds if touches(lo, hi)] + interest
    ip_cuts = _cuts(ip_bounds, (0, 2**32 - 1))
    proto_spans: list[tuple[int, bool, int | None, int | None]] = []
    for p in sorted(protocols):
        if wanted is not None and p not in wanted:
            continue
        if p in PORTED:
            for lo, hi in _spans(_cuts(port_bounds.get(p, []), (0, 65535)), 65535):
                proto_spans.append((p, False, lo, hi))
        else:
            proto_spans.append((p, False, None, None))
    if wanted is None:
        proto_spans.append((other, True, None, None))
    # first match as bit arithmetic: bit i = applicable[i]; the lowest set bit of (rules whose
    # destination holds the span) & (rules whose traffic matches the protocol span) decides
    proto_masks = [0] * len(proto_spans)
    by_proto: dict[int, tuple[list[int], list[int]]] = {}  # protocol -> (port starts, spans)
    for k, (proto, is_other, plo, _) in enumerate(proto_spans):
        if not is_other:
            port_starts, ks = by_proto.setdefault(proto, ([], []))
            port_starts.append(plo if plo is not None else 0)
            ks.append(k)
    for i, r in enumerate(applicable):
        bit = 1 << i
        for t in r.traffic:
            if t.protocol is None:
                for k in range(len(proto_masks)):
                    proto_masks[k] |= bit
                break
            found = by_proto.get(t.protocol)
            if found is None:
                continue  # a protocol no span stands for (not wanted here)
            port_starts, ks = found
            if not t.ports or t.protocol not in PORTED:
                for k in ks:
                    proto_masks[k] |= bit
                continue
            # port spans are cut at every port boundary: a span is inside a range iff it
            # starts inside it
            for lo, hi in t.ports:
                for k in ks[
                    bisect.bisect_left(port_starts, lo) : bisect.bisect_right(port_starts, hi)
                ]:
                    proto_masks[k] |= bit
    allow_bits = 0
    everywhere = 0
    for i, r in enumerate(applicable):
        if r.allow:
            allow_bits |= 1 << i
        if not r.destination_ranges:
            everywhere |= 1 << i
    ranged = [(i, r.destination_ranges) for i, r in enumerate(applicable) if r.destination_ranges]
    spans = list(zip(proto_spans, proto_masks, strict=True))
    boxes: list[Box] = []
    for lo, hi in _spans(ip_cuts, 2**32 - 1):
        if interest is not None and not touches(lo, lo):
            continue
        here = everywhere
        for i, dests in ranged:
            if _in(dests, lo):
                here |= 1 << i
        if allowed_only and closed and not here & allow_bits:
            continue  # only denies match here (the catch-all among them)
        for (proto, is_other, plo, phi), mask in spans:
            hit = here & mask
            if hit:
                rule: FirewallRule | None = applicable[(hit & -hit).bit_length() - 1]
                allowed = rule.allow  # type: ignore[union-attr]
            else:
                rule, allowed = None, True
            if allowed_only and not allowed:
                continue
            boxes.append(Box(lo, hi, proto, is_other, plo, phi, allowed, rule))
    named = frozenset(p for p, is_other, _, _ in proto_spans if not is_other)
    return boxes, named, None if wanted is None else frozenset(wanted)


def compile_table(table: EgressTable) -> None:
    """Fill ``table.compiled``: per network without source-ranged egress rules, the allowed
    boxes of a source no targeted rule applies to — what most steps are — and of each service
    account its rules target. Built once with the snapshot; :meth:`FirewallIndex.allowed_boxes`
    then only cuts them at a step's reach."""
    for network, rules in table.by_network.items():
        if any(r.source_ranges for r in rules):
            continue  # which rules apply depends on the step's own addresses
        common = [r for r in rules if not (r.target_service_accounts or r.target_tags)]
        table.compiled[network] = _egress(common, Source(network, ((0, 0),)), (), None, True, True)
        # and for each service account a rule of the network targets (tagged sources are
        # evaluated in full: Vertex steps carry no network tags)
        for sa in table.by_sa.get(network, {}):
            own = [
                r
                for r in rules
                if not (r.target_service_accounts or r.target_tags) or sa in r.targeted_accounts
            ]
            table.compiled[(network, sa)] = _egress(
                own, Source(network, ((0, 0),), (), sa), (), None, True, True
            )


def _pieces(lo: int, hi: int, points: list[int]) -> list[Range]:
    """``lo..hi`` cut at every point inside it (a point starts a piece)."""
    inside = points[bisect.bisect_right(points, lo) : bisect.bisect_right(points, hi)]
    starts = [lo, *inside]
    return [(a, (starts[i + 1] - 1) if i + 1 < len(starts) else hi) for i, a in enumerate(starts)]


def _split(
    compiled: tuple[list[Box], frozenset[int], frozenset[int] | None],
    extra_ranges: list[Range],
    extra_ports: dict[int, list[Range]],
) -> list[Box] | None:
    """The compiled boxes cut at the extra boundaries — exactly what :func:`egress_boxes` gives
    with them — or ``None`` when an extra protocol would need spans of its own."""
    boxes, named, wanted = compiled
    if any(p not in named and (wanted is None or p in wanted) for p in extra_ports):
        return None
    if not extra_ranges and not extra_ports:
        return boxes
    ip_points = sorted({a for a, _ in extra_ranges} | {b + 1 for _, b in extra_ranges})
    port_points = {
        p: sorted({a for a, _ in v} | {b + 1 for _, b in v}) for p, v in extra_ports.items()
    }
    out: list[Box] = []
    for b in boxes:
        ips = _pieces(b.lo, b.hi, ip_points)
        ports: list[tuple[int | None, int | None]] = [(b.port_lo, b.port_hi)]
        if b.port_lo is not None and b.port_hi is not None and b.protocol in port_points:
            ports = list(_pieces(b.port_lo, b.port_hi, port_points[b.protocol]))
        for lo, hi in ips:
            for plo, phi in ports:
                out.append(Box(lo, hi, b.protocol, b.other, plo, phi, b.allowed, b.rule))
    out.sort(key=lambda b: (b.lo, b.other, b.protocol, b.port_lo or 0))
    return out


class FirewallIndex:
    """The egress rules of a snapshot grouped by network in evaluation order, indexed by the
    service accounts and tags they target, with :func:`egress_boxes` results memoised per
    (source, the rules that target its identity, extra boundaries): steps that share a network
    and differ only in an identity no rule names share one evaluation."""

    def __init__(self, rules: Iterable[FirewallRule] | EgressTable) -> None:
        table = rules if isinstance(rules, EgressTable) else EgressTable.of(list(rules))
        self._by_network = table.by_network
        self._by_sa = table.by_sa
        self._by_tag = table.by_tag
        self._sa_rules = table.sa_rules
        self._compiled = table.compiled
        self._cache: dict[tuple[object, ...], list[Box]] = {}

    def targeting(self, network: str | None, service_account: str | None) -> tuple[str, ...]:
        """The names of ``network``'s egress rules that target ``service_account`` (any
        network's when ``network`` is ``None``)."""
        sa = (service_account or "").lower()
        if not sa:
            return ()
        if network is None:
            return self._sa_rules.get(sa, ())
        return self._by_sa.get(network, {}).get(sa, ())

    def key(
        self,
        source: Source,
        extra_ranges: Iterable[Range] = (),
        extra_ports: dict[int, list[Range]] | None = None,
    ) -> tuple[object, ...]:
        """What :meth:`allowed_boxes` depends on (equal keys, equal boxes)."""
        sa = (source.service_account or "").lower()
        named = self._by_sa.get(source.network, {}).get(sa, ()) if sa else ()
        tagged: tuple[str, ...] = ()
        if source.tags:
            by_tag = self._by_tag.get(source.network, {})
            tagged = tuple(sorted({n for t in source.tags for n in by_tag.get(t, ())}))
        ranges = tuple(sorted(set(extra_ranges)))
        ports = tuple(sorted((p, tuple(sorted(set(v)))) for p, v in (extra_ports or {}).items()))
        return (source.network, source.ranges, named, tagged, ranges, ports)

    def allowed_boxes(
        self,
        source: Source,
        extra_ranges: Iterable[Range] = (),
        extra_ports: dict[int, list[Range]] | None = None,
    ) -> list[Box]:
        """``egress_boxes(..., allowed_only=True)`` for ``source``, memoised."""
        ranges = list(extra_ranges)
        key = self.key(source, ranges, extra_ports)
        found = self._cache.get(key)
        compiled = None
        if not key[3]:  # no rule targets the source's tags
            sa = (source.service_account or "").lower()
            compiled = self._compiled.get((source.network, sa) if key[2] else source.network)
        if found is None and compiled is not None:
            found = _split(compiled, ranges, {p: list(v) for p, v in (extra_ports or {}).items()})
            if found is not None:
                self._cache[key] = found
        if found is None:
            found = egress_boxes(
                self._by_network.get(source.network, ()),
                source,
                extra_ranges=ranges,
                extra_ports={p: list(v) for p, v in (extra_ports or {}).items()},
                allowed_only=True,
                presorted=True,
            )
            self._cache[key] = found
        return found
