"""A small evaluator of Kubernetes NetworkPolicy semantics, for asserting who reaches whom.

It implements what the rendered policies use: podSelector.matchLabels, namespaceSelector
(namespace labels), ipBlock with except, numbered and named ports, policyTypes; a connection
is allowed when the source's egress and the destination's ingress both allow it (a pod no
policy of a direction selects is open in that direction), as the API documents.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Pod:
    name: str
    labels: dict[str, str]
    ip: str
    ports: dict[str, int] = field(default_factory=dict)  # named ports
    namespace: str = "sciplat"
    namespace_labels: dict[str, str] = field(
        default_factory=lambda: {"kubernetes.io/metadata.name": "sciplat"}
    )


@dataclass
class Address:
    """Something outside the cluster's pods (the internet, the metadata server)."""

    name: str
    ip: str


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _selected(policy: dict[str, Any], pod: Pod) -> bool:
    return policy["metadata"].get("namespace", pod.namespace) == pod.namespace and _matches(
        policy["spec"]["podSelector"], pod.labels
    )


def _peer_matches(peer: dict[str, Any], target: Pod | Address, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(target.ip)
        block = peer["ipBlock"]
        if ip not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if not isinstance(target, Pod):
        return False
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], target.namespace_labels):
            return False
    elif target.namespace != policy_ns:
        return False
    if "podSelector" in peer:
        return _matches(peer["podSelector"], target.labels)
    return True


def _port_matches(rule: dict[str, Any], dst: Pod | Address, port: int) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        want = p.get("port")
        if want is None or want == port:
            return True
        if isinstance(want, str) and isinstance(dst, Pod) and dst.ports.get(want) == port:
            return True
    return False


def _direction_allows(
    policies: list[dict], pod: Pod, other: Pod | Address, port: int, dst: Pod | Address, kind: str
) -> bool:
    key, peers_key = ("egress", "to") if kind == "Egress" else ("ingress", "from")
    selecting = [
        p
        for p in policies
        if _selected(p, pod) and kind in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(peer, other, pod.namespace) for peer in peers)
            if peer_ok and _port_matches(rule, dst, port):
                return True
    return False


def allowed(policies: list[dict], src: Pod, dst: Pod | Address, port: int) -> bool:
    """Whether *src* may open a TCP connection to *dst*:*port* under *policies*."""
    if not _direction_allows(policies, src, dst, port, dst, "Egress"):
        return False
    if isinstance(dst, Pod):
        return _direction_allows(policies, dst, src, port, dst, "Ingress")
    return True
