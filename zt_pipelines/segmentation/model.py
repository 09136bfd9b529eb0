"""The segmentation world as frozen data: perimeters, networks, firewalls, reach.

Pure data and parsing of the small string grammars (reach entries, CIDRs, port lists); no IO.
Names are normalised so the evaluator compares like with like:

* networks ``projects/PROJECT_ID/global/networks/NAME`` (Vertex writes the project *number*;
  :func:`network_key` maps numbers to ids when the caller knows them),
* subnetworks ``projects/P/regions/R/subnetworks/NAME``,
* network attachments ``projects/P/regions/R/networkAttachments/NAME``,
* perimeters ``accessPolicies/N/servicePerimeters/NAME`` with member projects
  ``projects/NUMBER`` (as Access Context Manager writes them).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from zt_pipelines.errors import DeclarationError

IPV4_SPACE = (0, 2**32 - 1)

#: IANA protocol numbers of the names VPC firewall rules accept.
PROTOCOLS: dict[str, int] = {
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "sctp": 132,
}
#: protocols whose rules may name ports
PORTED = frozenset({6, 17, 132})

#: the Google APIs virtual IPs Private Google Access answers on (restricted, then private).
GOOGLE_API_VIPS = ("199.36.153.4/30", "199.36.153.8/30")

Range = tuple[int, int]  # inclusive IPv4 interval


def parse_cidr(text: str, *, where: str = "cidr") -> Range:
    """An IPv4 CIDR (``10.0.0.0/8``; a bare address is a /32) as an inclusive interval.

    Raises:
        DeclarationError: not an IPv4 CIDR (IPv6 is not modelled: see docs/segmentation.md).
    """
    found = _cidr(text.strip())
    if isinstance(found, str):
        raise DeclarationError(
            found, where=where, fix="declare IPv4 ranges" if "IPv6" in found else None
        )
    return found


@lru_cache(maxsize=65536)
def _cidr(text: str) -> Range | str:
    """The interval, or the error message (cached: snapshots repeat ranges)."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return f"{text!r} is not a CIDR range"
    if net.version != 4:
        return f"{text!r} is IPv6, which segmentation does not model"
    return int(net.network_address), int(net.broadcast_address)


def format_range(r: Range) -> str:
    """``a.b.c.d/len`` when the interval is one CIDR block, else ``first-last``."""
    lo, hi = r
    size = hi - lo + 1
    if size & (size - 1) == 0 and lo % size == 0:
        return f"{_dotted(lo)}/{32 - size.bit_length() + 1}"
    return f"{_dotted(lo)}-{_dotted(hi)}"


def _dotted(ip: int) -> str:
    """``a.b.c.d`` (what ``str(IPv4Address(ip))`` gives, without building one)."""
    return f"{ip >> 24 & 255}.{ip >> 16 & 255}.{ip >> 8 & 255}.{ip & 255}"


def protocol_number(name: str, *, where: str = "protocol") -> int | None:
    """``None`` for ``all``; the IANA number for a name or a number string.

    Raises:
        DeclarationError: an unknown protocol.
    """
    low = name.strip().lower()
    if low == "all":
        return None
    if low in PROTOCOLS:
        return PROTOCOLS[low]
    if low.isdigit() and 0 <= int(low) <= 255:
        return int(low)
    raise DeclarationError(f"{name!r} is not an IP protocol", where=where)


def parse_ports(ports: tuple[str, ...] | list[str], *, where: str = "ports") -> tuple[Range, ...]:
    """``["80", "8000-8080"]`` as inclusive intervals; empty means every port.

    Raises:
        DeclarationError: a malformed port or range.
    """
    out: list[Range] = []
    for p in ports:
        m = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", str(p).strip())
        if not m:
            raise DeclarationError(f"{p!r} is not a port or port range", where=where)
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if not 0 <= lo <= hi <= 65535:
            raise DeclarationError(f"{p!r} is not a port range within 0-65535", where=where)
        out.append((lo, hi))
    return tuple(out)


@dataclass(frozen=True)
class PortRule:
    """One ``allowed``/``denied`` entry of a firewall rule (or of a reach entry).

    Attributes:
        protocol: IANA number, or ``None`` for every protocol.
        ports: inclusive port intervals; empty means every port (and, for protocols without
            ports, the only choice).
    """

    protocol: int | None
    ports: tuple[Range, ...] = ()

    def matches(self, protocol: int, port: int | None) -> bool:
        """Whether a packet of ``protocol`` to ``port`` is covered."""
        if self.protocol is not None and self.protocol != protocol:
            return False
        if not self.ports or self.protocol is None:
            return True
        return port is not None and any(lo <= port <= hi for lo, hi in self.ports)


ALL_TRAFFIC = (PortRule(None),)


def parse_port_rules(text: str, *, where: str) -> tuple[PortRule, ...]:
    """``tcp:80,443 udp:53`` / ``all`` as :class:`PortRule` values."""
    rules = []
    for part in text.split():
        proto, _, ports = part.partition(":")
        number = protocol_number(proto, where=where)
        parsed = parse_ports(ports.split(","), where=where) if ports else ()
        if parsed and number not in PORTED:
            raise DeclarationError(f"{proto} has no ports", where=where)
        rules.append(PortRule(number, parsed))
    return tuple(rules) or ALL_TRAFFIC


# -- reach ------------------------------------------------------------------------------------

ReachKind = Literal["google-api", "cidr", "host", "vertex"]
#: most entries one step's ``reach`` may list (bounds the static evaluation)
MAX_REACH = 256
_GOOGLE_API = re.compile(r"^[a-z][a-z0-9-]*\.googleapis\.com$")
_VERTEX = re.compile(
    r"^projects/[^/\s]+/locations/[^/\s]+/(?:endpoints|indexEndpoints|featureOnlineStores)"
    r"/[^/\s]+$"
)
_HOST = re.compile(r"^host:([A-Za-z0-9][A-Za-z0-9.-]*)(?:=(\S+))?$")


@dataclass(frozen=True)
class ReachEntry:
    """One destination a step may reach (parsed from a ``reach=[...]`` string).

    Attributes:
        text: the declaration as written (canonical spacing).
        kind: ``google-api`` (``storage.googleapis.com``: through the perimeter's restricted
            VIP), ``cidr`` (``10.2.0.0/16 tcp:5432``), ``host`` (``host:db.internal=10.2.0.5``:
            DNS is not resolved offline, so only the address given is checked) or ``vertex``
            (a Vertex resource such as a private endpoint, located through the snapshot).
        ranges: the IPv4 intervals it covers (empty for ``vertex`` until resolved, and for a
            host without an address).
        ports: what traffic it covers (every protocol and port unless given).
    """

    text: str
    kind: ReachKind
    ranges: tuple[Range, ...] = ()
    ports: tuple[PortRule, ...] = ALL_TRAFFIC
    service: str = ""

    def covers(
        self, lo: int, hi: int, protocol: int, port_lo: int | None, port_hi: int | None
    ) -> bool:
        """Whether the whole box (addresses ``lo..hi``, one protocol, a port interval) is in."""
        if not any(a <= lo and hi <= b for a, b in self.ranges):
            return False
        for rule in self.ports:
            if rule.protocol is not None and rule.protocol != protocol:
                continue
            if rule.protocol is None or not rule.ports or port_lo is None or port_hi is None:
                return True
            if any(a <= port_lo and port_hi <= b for a, b in rule.ports):
                return True
        return False


def parse_reach(value: object, *, where: str) -> tuple[ReachEntry, ...]:
    """Validate a ``reach=[...]`` declaration (a list of strings; ``[]`` = reach nothing).

    Raises:
        DeclarationError: not a list of strings, or an entry in none of the forms.
    """
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise DeclarationError(
            f"reach must be a list of strings, not {value!r}",
            where=where,
            fix='write reach=["storage.googleapis.com", "10.2.0.0/16 tcp:5432"]',
        )
    if len(value) > MAX_REACH:
        raise DeclarationError(
            f"reach lists {len(value)} entries; at most {MAX_REACH}",
            where=where,
            fix="declare ranges (10.20.0.0/16) instead of single addresses",
        )
    out: list[ReachEntry] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise DeclarationError(f"reach entry {item!r} is not a non-empty string", where=where)
        try:
            out.append(_reach_entry(item))
        except DeclarationError as exc:
            raise DeclarationError(exc.what, where=f"{where}: {exc.where}", fix=exc.fix) from None
    return tuple(out)


@lru_cache(maxsize=4096)
def _reach_entry(text: str) -> ReachEntry:
    """:func:`reach_entry` without a location, cached (entries are frozen)."""
    return reach_entry(text, where="reach")


def reach_entry(text: str, *, where: str) -> ReachEntry:
    """Parse one reach string (see :class:`ReachEntry` for the forms)."""
    head, *rest = text.split()
    ports = parse_port_rules(" ".join(rest), where=f"{where}: reach {text!r}") if rest else None
    canonical = " ".join([head, *rest])
    if _GOOGLE_API.match(head):
        if rest:
            raise DeclarationError(
                f"reach {text!r}: a Google API is reached on tcp:443 only",
                where=where,
                fix=f"write {head!r}",
            )
        return ReachEntry(
            canonical,
            "google-api",
            tuple(parse_cidr(v) for v in GOOGLE_API_VIPS),
            (PortRule(6, ((443, 443),)),),
            service=head,
        )
    if _VERTEX.match(head):
        return ReachEntry(canonical, "vertex", (), ports or ALL_TRAFFIC)
    host = _HOST.match(head)
    if host:
        ranges = (
            (parse_cidr(host.group(2), where=f"{where}: reach {text!r}"),) if host.group(2) else ()
        )
        return ReachEntry(canonical, "host", ranges, ports or ALL_TRAFFIC)
    if re.fullmatch(r"[0-9.]+(?:/\d{1,2})?", head):
        return ReachEntry(
            canonical,
            "cidr",
            (parse_cidr(head, where=f"{where}: reach {text!r}"),),
            ports or ALL_TRAFFIC,
        )
    raise DeclarationError(
        f"reach entry {text!r} is not a Google API, CIDR, host:NAME[=ADDRESS] or Vertex resource",
        where=where,
        fix="e.g. storage.googleapis.com, 10.2.0.0/16 tcp:5432, host:db.internal=10.2.0.5, "
        "projects/P/locations/L/endpoints/E",
    )


# -- VPC Service Controls --------------------------------------------------------------------


@dataclass(frozen=True)
class IngressPolicy:
    """An ingress rule of a perimeter (who from where may call in, to which services)."""

    identity_type: str = ""  # ANY_IDENTITY, ANY_USER_ACCOUNT, ANY_SERVICE_ACCOUNT or ""
    identities: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # "projects/N", access levels, or "*"
    resources: tuple[str, ...] = ()  # target projects, or "*"
    services: tuple[str, ...] = ()  # operations' service names, or "*"


@dataclass(frozen=True)
class EgressPolicy:
    """An egress rule of a perimeter (who may call out, to which projects and services)."""

    identity_type: str = ""
    identities: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()  # "projects/N" or "*"
    services: tuple[str, ...] = ()
    external_resources: tuple[str, ...] = ()


@dataclass(frozen=True)
class PerimeterConfig:
    """A perimeter's enforced (``status``) or dry-run (``spec``) configuration."""

    resources: tuple[str, ...] = ()
    restricted_services: tuple[str, ...] = ()
    vpc_restriction: bool = False
    vpc_allowed_services: tuple[str, ...] = ()
    access_levels: tuple[str, ...] = ()
    ingress: tuple[IngressPolicy, ...] = ()
    egress: tuple[EgressPolicy, ...] = ()


@dataclass(frozen=True)
class Perimeter:
    """A VPC Service Controls service perimeter.

    ``status`` is enforced; ``spec`` is the dry-run configuration, used only when
    ``use_explicit_dry_run_spec`` (otherwise the dry-run configuration equals ``status``).
    """

    name: str
    title: str = ""
    bridge: bool = False
    status: PerimeterConfig | None = None
    spec: PerimeterConfig | None = None
    use_explicit_dry_run_spec: bool = False

    @property
    def dry_run(self) -> PerimeterConfig | None:
        """The configuration dry-run mode evaluates."""
        return self.spec if self.use_explicit_dry_run_spec else self.status


# -- networks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """A VPC network and the networks peered with it (ACTIVE peerings only)."""

    name: str
    peerings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Subnetwork:
    """A subnet: its network, region and primary/secondary ranges."""

    name: str
    network: str
    region: str
    ranges: tuple[Range, ...]
    private_google_access: bool = False


@dataclass(frozen=True)
class NetworkAttachment:
    """A PSC network attachment (what a Vertex PSC interface connects through)."""

    name: str
    network: str
    subnetworks: tuple[str, ...]
    connection_preference: str = "ACCEPT_MANUAL"


@dataclass(frozen=True)
class AllocatedRange:
    """A private services access range (a global address with purpose VPC_PEERING)."""

    name: str
    network: str
    range: Range


@dataclass(frozen=True)
class FirewallRule:
    """A VPC firewall rule, normalised.

    Attributes:
        name: ``projects/P/global/firewalls/NAME``.
        network: the normalised network it applies to.
        direction: ``INGRESS`` or ``EGRESS``.
        priority: 0 (first) .. 65535.
        allow: ``True`` for an allow rule, ``False`` for deny.
        traffic: the protocols/ports it matches.
        source_ranges, destination_ranges: IPv4 intervals (IPv6 ranges are not modelled).
        source_tags, target_tags, source_service_accounts, target_service_accounts: as in the
            Compute API (a rule uses tags or service accounts, never both).
        disabled: a disabled rule matches nothing.
    """

    name: str
    network: str
    direction: Literal["INGRESS", "EGRESS"]
    priority: int
    allow: bool
    traffic: tuple[PortRule, ...] = ALL_TRAFFIC
    source_ranges: tuple[Range, ...] = ()
    destination_ranges: tuple[Range, ...] = ()
    source_tags: tuple[str, ...] = ()
    target_tags: tuple[str, ...] = ()
    source_service_accounts: tuple[str, ...] = ()
    target_service_accounts: tuple[str, ...] = ()
    disabled: bool = False
    has_ipv6: bool = False
    # derived once (the evaluator asks them of every rule for every source)
    all_traffic: bool = field(init=False, repr=False, compare=False)
    all_destinations: bool = field(init=False, repr=False, compare=False)
    protocols: frozenset[int] | None = field(init=False, repr=False, compare=False)
    targeted_accounts: frozenset[str] = field(init=False, repr=False, compare=False)
    match_key: tuple[object, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        every = any(t.protocol is None for t in self.traffic)
        protocols = frozenset(t.protocol for t in self.traffic if t.protocol is not None)
        object.__setattr__(self, "all_traffic", every)
        object.__setattr__(
            self,
            "all_destinations",
            not self.destination_ranges or IPV4_SPACE in self.destination_ranges,
        )
        object.__setattr__(self, "protocols", None if every else protocols)
        object.__setattr__(
            self, "targeted_accounts", frozenset(s.lower() for s in self.target_service_accounts)
        )
        # what a packet must be for the rule to match it, as plain (fast-hashing) tuples
        object.__setattr__(
            self,
            "match_key",
            (self.destination_ranges, tuple((t.protocol, t.ports) for t in self.traffic)),
        )


@dataclass(frozen=True)
class VertexEndpoint:
    """A Vertex resource reachable on a VPC (e.g. a production private endpoint).

    Attributes:
        name: ``projects/PROJECT_ID/locations/L/endpoints/E`` (normalised like networks).
        network: the VPC network it is reachable on.
        ranges: the addresses it answers on there.
        via: ``peering`` (a private endpoint over private services access) or ``psc`` (a
            Private Service Connect endpoint in the network).
    """

    name: str
    network: str
    ranges: tuple[Range, ...] = ()
    via: str = "peering"


@dataclass(frozen=True)
class SegUnreadable:
    """A segmentation read that failed (fail closed: its subject is unverifiable)."""

    target: str
    what: str
    reason: str


@dataclass(frozen=True)
class SegmentationState:
    """What the snapshot knows about perimeters and networks.

    ``perimeters is None`` means the perimeters were not read (unknown, never "none"); an empty
    tuple means they were read and there are none. The same holds for ``networks``.
    """

    perimeters: tuple[Perimeter, ...] | None = None
    networks: dict[str, Network] | None = None
    subnetworks: dict[str, Subnetwork] = field(default_factory=dict)
    attachments: dict[str, NetworkAttachment] = field(default_factory=dict)
    allocated_ranges: tuple[AllocatedRange, ...] = ()
    firewalls: tuple[FirewallRule, ...] = ()
    endpoints: tuple[VertexEndpoint, ...] = ()
    project_numbers: dict[str, str] = field(default_factory=dict)
    unreadable: tuple[SegUnreadable, ...] = ()
    egress_table: EgressTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # indexed once when the snapshot is built, like the IAM snapshot's own indexes
        object.__setattr__(self, "egress_table", EgressTable.of(self.firewalls))


def rule_order(rule: FirewallRule) -> tuple[int, bool, str]:
    """The evaluation order of firewall rules: priority, then deny before allow, then name."""
    return (rule.priority, rule.allow, rule.name)


@dataclass(frozen=True)
class EgressTable:
    """The enabled egress rules by network in evaluation order, and the rules by the service
    accounts (lower-cased) and network tags they target.

    Attributes:
        by_network: network -> its egress rules that can decide a packet, in
            :func:`rule_order`.
        by_sa: network -> service account -> the names of the rules targeting it.
        by_tag: network -> tag -> the names of the rules targeting it.
        sa_rules: service account -> the names of the rules (any network) targeting it.
    """

    by_network: dict[str, tuple[FirewallRule, ...]]
    by_sa: dict[str, dict[str, tuple[str, ...]]]
    by_tag: dict[str, dict[str, tuple[str, ...]]]
    sa_rules: dict[str, tuple[str, ...]]
    # network (or (network, service account)) -> its firewall compiled for a source no other
    # conditional rule applies to (:func:`zt_pipelines.segmentation.firewall.compile_table`,
    # when the snapshot is loaded)
    compiled: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, rules: tuple[FirewallRule, ...] | list[FirewallRule]) -> EgressTable:
        """The table of ``rules`` (any order)."""
        by_network: dict[str, list[FirewallRule]] = {}
        by_sa: dict[str, dict[str, tuple[str, ...]]] = {}
        by_tag: dict[str, dict[str, tuple[str, ...]]] = {}
        sa_rules: dict[str, tuple[str, ...]] = {}
        # shadowed rules are dropped here, once: a rule that applies to every source (no
        # targets, no source ranges) decides every packet it matches, so a later rule matching
        # exactly the same packets, or any rule after one matching every packet, never decides
        shadowing: dict[str, set[tuple[object, ...]]] = {}
        closed: set[str] = set()
        for r in sorted(rules, key=rule_order):
            if r.direction != "EGRESS" or r.disabled or r.network in closed:
                continue
            seen = shadowing.setdefault(r.network, set())
            if r.match_key in seen:
                continue
            if not (r.target_service_accounts or r.target_tags or r.source_ranges):
                seen.add(r.match_key)
                if r.all_traffic and r.all_destinations:
                    closed.add(r.network)
            by_network.setdefault(r.network, []).append(r)
            for sa in {s.lower() for s in r.target_service_accounts}:
                per = by_sa.setdefault(r.network, {})
                per[sa] = (*per.get(sa, ()), r.name)
                sa_rules[sa] = (*sa_rules.get(sa, ()), r.name)
            for tag in set(r.target_tags):
                tags = by_tag.setdefault(r.network, {})
                tags[tag] = (*tags.get(tag, ()), r.name)
        return cls({n: tuple(v) for n, v in by_network.items()}, by_sa, by_tag, sa_rules)


_NET = re.compile(r"(?:^|/)projects/([^/]+)/global/networks/([^/]+)$")
_REGIONAL = re.compile(
    r"(?:^|/)projects/([^/]+)/regions/([^/]+)/(subnetworks|networkAttachments)/([^/]+)$"
)


def network_key(name: str, numbers: dict[str, str] | None = None) -> str:
    """``projects/ID/global/networks/N`` from a self link, a relative name or a number form.

    ``numbers`` maps project numbers to ids (Vertex names networks by project number).
    """
    m = _NET.search(name.strip())
    if not m:
        return name.strip()
    project = m.group(1)
    if numbers and project in numbers:
        project = numbers[project]
    return f"projects/{project}/global/networks/{m.group(2)}"


_VERTEX_NAME = re.compile(r"^projects/([^/]+)/(locations/[^/]+/[A-Za-z]+/[^/]+)$")


def vertex_key(name: str, numbers: dict[str, str] | None = None) -> str:
    """``projects/PROJECT_ID/locations/L/endpoints/E`` from the number form Vertex returns
    (``numbers`` maps project numbers to ids)."""
    m = _VERTEX_NAME.match(name.strip())
    if not m or not numbers or m.group(1) not in numbers:
        return name.strip()
    return f"projects/{numbers[m.group(1)]}/{m.group(2)}"


def regional_key(name: str, numbers: dict[str, str] | None = None) -> str:
    """``projects/ID/regions/R/{subnetworks|networkAttachments}/N`` from any of its forms."""
    m = _REGIONAL.search(name.strip())
    if not m:
        return name.strip()
    project = m.group(1)
    if numbers and project in numbers:
        project = numbers[project]
    return f"projects/{project}/regions/{m.group(2)}/{m.group(3)}/{m.group(4)}"
