"""The static firewall evaluator against a small, independent reference.

The reference below is written from the VPC firewall rules documentation
(https://cloud.google.com/firewall/docs/firewalls), deliberately in another shape than
``zt_pipelines.segmentation.firewall``: it collects *every* rule that matches a packet, keeps
those at the lowest priority number, and lets a deny among them win ("if two rules have the same
priority, deny takes precedence"); nothing matching means the implied rules (allow egress,
deny ingress, priority 65535). Hypothesis (fixed seed) draws rule sets with ties, tags,
service accounts and ranges from a small universe so collisions are common.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from hypothesis import given, seed, settings
from hypothesis import strategies as st

from zt_pipelines.segmentation.firewall import (
    FirewallIndex,
    Instance,
    Source,
    compile_table,
    decide_egress,
    decide_ingress,
    egress_boxes,
)
from zt_pipelines.segmentation.model import EgressTable, FirewallRule, PortRule

NETWORKS = ["projects/p/global/networks/a", "projects/p/global/networks/b"]
TAGS = ["web", "db", "ml"]
SAS = ["one@p.iam.gserviceaccount.com", "two@p.iam.gserviceaccount.com"]
CIDRS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "192.168.0.0/16", "0.0.0.0/0"]
PROTOS = [None, 6, 17, 1]


def _r(cidr: str) -> tuple[int, int]:
    n = ipaddress.ip_network(cidr)
    return int(n.network_address), int(n.broadcast_address)


# -- the reference (from the docs) -----------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    network: str
    direction: str
    src_ip: int
    dst_ip: int
    protocol: int
    port: int | None
    inst_tags: tuple[str, ...]  # the target instance (sender for egress, receiver for ingress)
    inst_sa: str | None
    peer_tags: tuple[str, ...] = ()  # the other VM, same network (ingress source tags/SAs)
    peer_sa: str | None = None


def reference(rules: list[FirewallRule], pkt: Packet) -> bool:
    """True when the packet is allowed."""

    def within(ranges: tuple[tuple[int, int], ...], ip: int) -> bool:
        return any(a <= ip <= b for a, b in ranges)

    matching = []
    for rule in rules:
        if rule.disabled or rule.network != pkt.network or rule.direction != pkt.direction:
            continue
        # "Target": all instances, instances with a tag, or instances with a service account
        if rule.target_service_accounts and pkt.inst_sa not in rule.target_service_accounts:
            continue
        if rule.target_tags and not set(rule.target_tags) & set(pkt.inst_tags):
            continue
        if pkt.direction == "INGRESS":
            sourced = rule.source_ranges or rule.source_tags or rule.source_service_accounts
            if sourced:
                by_range = within(rule.source_ranges, pkt.src_ip)
                by_tag = bool(set(rule.source_tags) & set(pkt.peer_tags))
                by_sa = pkt.peer_sa is not None and pkt.peer_sa in rule.source_service_accounts
                if not (by_range or by_tag or by_sa):
                    continue
            if rule.destination_ranges and not within(rule.destination_ranges, pkt.dst_ip):
                continue
        else:
            if rule.destination_ranges and not within(rule.destination_ranges, pkt.dst_ip):
                continue  # no destination ranges: 0.0.0.0/0
            if rule.source_ranges and not within(rule.source_ranges, pkt.src_ip):
                continue
        hit = False
        for t in rule.traffic:
            if t.protocol is None or (
                t.protocol == pkt.protocol
                and (
                    not t.ports
                    or (pkt.port is not None and any(a <= pkt.port <= b for a, b in t.ports))
                )
            ):
                hit = True
        if hit:
            matching.append(rule)
    if not matching:
        return pkt.direction == "EGRESS"  # implied allow egress / deny ingress
    best = min(r.priority for r in matching)
    top = [r for r in matching if r.priority == best]
    return not any(not r.allow for r in top)


# -- strategies -----------------------------------------------------------------------------


@st.composite
def rules(draw: st.DrawFn) -> FirewallRule:
    proto = draw(st.sampled_from(PROTOS))
    ports: tuple[tuple[int, int], ...] = ()
    if proto in (6, 17) and draw(st.booleans()):
        lo = draw(st.integers(0, 100))
        ports = ((lo, lo + draw(st.integers(0, 20))),)
    target = draw(st.sampled_from(["all", "tags", "sas"]))
    source = draw(st.sampled_from(["none", "ranges", "tags", "sas"]))
    direction = draw(st.sampled_from(["INGRESS", "EGRESS"]))
    return FirewallRule(
        name=f"r{draw(st.integers(0, 10**6))}",
        network=draw(st.sampled_from(NETWORKS)),
        direction=direction,
        priority=draw(st.sampled_from([0, 10, 1000, 1000, 65535])),
        allow=draw(st.booleans()),
        traffic=(PortRule(proto, ports if proto is not None else ()),),
        source_ranges=tuple(_r(c) for c in draw(st.lists(st.sampled_from(CIDRS), max_size=2)))
        if source == "ranges" or (direction == "EGRESS" and draw(st.booleans()))
        else (),
        destination_ranges=tuple(_r(c) for c in draw(st.lists(st.sampled_from(CIDRS), max_size=2))),
        source_tags=tuple(draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=2)))
        if source == "tags" and direction == "INGRESS"
        else (),
        source_service_accounts=tuple(draw(st.lists(st.sampled_from(SAS), min_size=1, max_size=1)))
        if source == "sas" and direction == "INGRESS"
        else (),
        target_tags=tuple(draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=2)))
        if target == "tags"
        else (),
        target_service_accounts=tuple(draw(st.lists(st.sampled_from(SAS), min_size=1, max_size=1)))
        if target == "sas"
        else (),
        disabled=draw(st.integers(0, 9)) == 0,
    )


IPS = st.sampled_from(
    [_r(c)[0] for c in CIDRS] + [_r(c)[1] for c in CIDRS] + [_r("10.1.2.3/32")[0] + 1, 3232235777]
)


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    proto = draw(st.sampled_from([6, 17, 1, 47]))
    return Packet(
        network=draw(st.sampled_from(NETWORKS)),
        direction=draw(st.sampled_from(["INGRESS", "EGRESS"])),
        src_ip=draw(IPS),
        dst_ip=draw(IPS),
        protocol=proto,
        port=draw(st.integers(0, 130)) if proto in (6, 17) else None,
        inst_tags=tuple(draw(st.lists(st.sampled_from(TAGS), max_size=2))),
        inst_sa=draw(st.sampled_from([None, *SAS])),
        peer_tags=tuple(draw(st.lists(st.sampled_from(TAGS), max_size=2))),
        peer_sa=draw(st.sampled_from([None, *SAS])),
    )


def _ours(rules_: list[FirewallRule], pkt: Packet) -> bool:
    if pkt.direction == "EGRESS":
        src = Instance(pkt.network, pkt.src_ip, pkt.inst_tags, pkt.inst_sa)
        return decide_egress(rules_, src, pkt.dst_ip, pkt.protocol, pkt.port).allowed
    dst = Instance(pkt.network, pkt.dst_ip, pkt.inst_tags, pkt.inst_sa)
    peer = Instance(pkt.network, pkt.src_ip, pkt.peer_tags, pkt.peer_sa)
    return decide_ingress(rules_, dst, pkt.src_ip, pkt.protocol, pkt.port, src=peer).allowed


@seed(20261129)
@settings(max_examples=400, deadline=None)
@given(st.lists(rules(), max_size=8), packets())
def test_one_packet_matches_the_reference(rules_: list[FirewallRule], pkt: Packet) -> None:
    assert _ours(rules_, pkt) == reference(rules_, pkt)


@seed(20261129)
@settings(max_examples=150, deadline=None)
@given(
    st.lists(rules(), max_size=8),
    st.sampled_from(NETWORKS),
    IPS,
    st.tuples(st.lists(st.sampled_from(TAGS), max_size=1), st.sampled_from([None, *SAS])),
)
def test_static_boxes_match_the_reference_everywhere(
    rules_: list[FirewallRule], network: str, src_ip: int, who: tuple[list[str], str | None]
) -> None:
    """Every box's decision holds at its corners for a single-address source."""
    tags, sa = tuple(who[0]), who[1]
    boxes = egress_boxes(rules_, Source(network, ((src_ip, src_ip),), tags, sa))
    for box in boxes:
        ports = [None] if box.port_lo is None else sorted({box.port_lo, box.port_hi})
        for ip in sorted({box.lo, box.hi}):
            for port in ports:
                pkt = Packet(network, "EGRESS", src_ip, ip, box.protocol, port, tags, sa)
                assert box.allowed == reference(rules_, pkt), (box, pkt)


def test_documented_cases() -> None:
    """The examples the documentation spells out, one by one."""
    net = NETWORKS[0]
    deny = FirewallRule("d", net, "EGRESS", 1000, False)
    allow = FirewallRule("a", net, "EGRESS", 1000, True)
    src = Instance(net, _r("10.1.2.3/32")[0], ("web",), SAS[0])
    # deny wins at equal priority, whatever the order
    assert not decide_egress([allow, deny], src, 1, 6, 443).allowed
    assert not decide_egress([deny, allow], src, 1, 6, 443).allowed
    # a lower number wins
    assert decide_egress([deny, FirewallRule("a0", net, "EGRESS", 999, True)], src, 1, 6, 1).allowed
    # implied: egress allowed, ingress denied
    assert decide_egress([], src, 1, 17, 53).allowed
    assert decide_egress([], src, 1, 17, 53).rule is None
    assert not decide_ingress([], src, 1, 6, 22).allowed
    # target service account vs target tags
    by_sa = FirewallRule("s", net, "EGRESS", 10, False, target_service_accounts=(SAS[1],))
    by_tag = FirewallRule("t", net, "EGRESS", 10, False, target_tags=("db",))
    assert decide_egress([by_sa, by_tag], src, 1, 6, 1).allowed
    assert not decide_egress([by_sa], Instance(net, 1, (), SAS[1]), 1, 6, 1).allowed
    # another network's rules never apply
    other = FirewallRule("o", NETWORKS[1], "EGRESS", 0, False)
    assert decide_egress([other], src, 1, 6, 1).allowed
    # a deny covering only part of a source range is not relied on; a partial allow counts
    half = _r("10.1.2.0/25")
    partial_deny = FirewallRule("pd", net, "EGRESS", 10, False, source_ranges=(half,))
    boxes = egress_boxes([partial_deny], Source(net, (_r("10.1.2.0/24"),)))
    assert all(b.allowed for b in boxes)


@seed(20261129)
@settings(max_examples=150, deadline=None)
@given(
    st.lists(rules(), max_size=8),
    st.sampled_from(NETWORKS),
    IPS,
    st.booleans(),
)
def test_fast_path_finds_exactly_the_allowed_boxes(
    rules_: list[FirewallRule], network: str, src_ip: int, catch_all: bool
) -> None:
    """``allowed_only`` (the checks' fast path) skips what a catch-all deny decides: every
    corner of every allowed box of the full enumeration is inside a fast-path box, and every
    fast-path box is allowed by the reference."""
    if catch_all:
        rules_ = [*rules_, FirewallRule("deny-all", network, "EGRESS", 65000, False)]
    source = Source(network, ((src_ip, src_ip),))
    fast = egress_boxes(rules_, source, allowed_only=True)
    for box in fast:
        pkt = Packet(network, "EGRESS", src_ip, box.lo, box.protocol, box.port_lo, (), None)
        assert box.allowed and reference(rules_, pkt)
        # the evidence: the rule named is the one that decides the packet
        verdict = decide_egress(
            rules_, Instance(network, src_ip), box.lo, box.protocol, box.port_lo
        )
        assert verdict.rule == box.rule, (box, verdict)
    for box in egress_boxes(rules_, source):
        if not box.allowed:
            continue
        for ip in {box.lo, box.hi}:
            assert any(
                f.lo <= ip <= f.hi
                and (f.protocol == box.protocol or (f.other and box.other))
                and (f.port_lo is None or f.port_lo <= (box.port_lo or 0) <= (f.port_hi or 0))
                for f in fast
            ), (box, fast)


@seed(20261129)
@settings(max_examples=400, deadline=None)
@given(
    st.lists(rules(), max_size=8),
    st.lists(st.tuples(st.integers(0, 7), st.sampled_from([0, 10, 1000]), st.booleans())),
    st.sampled_from(NETWORKS),
    IPS,
    st.tuples(st.lists(st.sampled_from(TAGS), max_size=1), st.sampled_from([None, *SAS])),
    st.booleans(),
    st.lists(st.sampled_from(CIDRS), max_size=3),
    st.dictionaries(
        st.sampled_from([6, 17]),
        st.lists(st.tuples(st.integers(0, 100), st.integers(0, 30)), min_size=1, max_size=2),
        max_size=2,
    ),
)
def test_the_index_decides_like_the_rules(
    rules_: list[FirewallRule],
    copies: list[tuple[int, int, bool]],
    network: str,
    src_ip: int,
    who: tuple[list[str], str | None],
    catch_all: bool,
    extra_cidrs: list[str],
    extra_port_draw: dict[int, list[tuple[int, int]]],
) -> None:
    """The snapshot's index (shadowed rules dropped at load, rules by network and targeted
    identity, each network compiled once for the common source and cut at the reach) gives
    exactly the boxes — and deciding rules — of the raw rule list."""
    # copies of drawn rules under other names/priorities/targets: shadowing is common
    for i, priority, untarget in copies:
        if i < len(rules_):
            r = rules_[i]
            rules_.append(
                replace(
                    r,
                    name=f"{r.name}-copy{len(rules_)}",
                    priority=priority,
                    target_tags=() if untarget else r.target_tags,
                    target_service_accounts=() if untarget else r.target_service_accounts,
                    source_ranges=() if untarget else r.source_ranges,
                )
            )
    if catch_all:
        rules_.append(FirewallRule("deny-all", network, "EGRESS", 1000, False))
    source = Source(network, ((src_ip, src_ip),), tuple(who[0]), who[1])
    extra = [_r(c) for c in extra_cidrs]
    ports = {p: [(lo, lo + n) for lo, n in v] for p, v in extra_port_draw.items()}
    direct = egress_boxes(rules_, source, extra_ranges=extra, extra_ports=ports, allowed_only=True)
    assert FirewallIndex(EgressTable.of(rules_)).allowed_boxes(source, extra, ports) == direct
    compiled = EgressTable.of(rules_)
    compile_table(compiled)
    assert FirewallIndex(compiled).allowed_boxes(source, extra, ports) == direct


def test_compiled_boxes_are_cut_at_the_reach() -> None:
    """The compiled path cuts addresses and ports at the reach exactly as the evaluator does,
    and leaves a protocol the reach names but no rule does to the evaluator."""
    net = NETWORKS[0]
    rules_ = [
        FirewallRule("deny-all", net, "EGRESS", 65000, False),
        FirewallRule(
            "db", net, "EGRESS", 10, True, (PortRule(6, ((0, 100),)),), (), (_r("10.0.0.0/8"),)
        ),
        FirewallRule("dns", net, "EGRESS", 20, True, (PortRule(17, ((53, 53),)),)),
    ]
    table = EgressTable.of(rules_)
    compile_table(table)
    source = Source(net, ((1, 1),), (), SAS[0])
    for extra, ports in (
        ([_r("10.1.0.0/16")], {6: [(50, 60)]}),
        ([_r("10.1.2.3/32"), _r("192.168.0.0/16")], {6: [(0, 0), (100, 120)], 17: [(53, 60)]}),
        ([], {132: [(1, 2)]}),  # sctp: no rule names it, behind the catch-all: nothing opens it
    ):
        direct = egress_boxes(
            rules_, source, extra_ranges=extra, extra_ports=ports, allowed_only=True
        )
        assert FirewallIndex(table).allowed_boxes(source, extra, ports) == direct
    cut = FirewallIndex(table).allowed_boxes(source, [_r("10.1.0.0/16")], {6: [(50, 60)]})
    assert len([b for b in cut if b.protocol == 6]) == 3 * 3  # 3 address pieces × 3 port pieces
