"""The one guard on every address a connector reaches: OpenAPI imports, REST and MCP calls.

A host is resolved and every address it resolves to must be public, or inside a network the
operator allows (``AUTONOMY_CONNECTOR_ALLOWED_NETWORKS``, CIDRs; loopback in development for
the demo systems). Link-local (cloud metadata), unspecified, multicast and reserved addresses
are refused whatever that setting says. Every refusal, whatever the reason (not allowed, does
not resolve), is the same ``OutboundRefused`` with the same message, so the guard never tells
a caller which internal hosts exist.

HTTP through ``session()`` is pinned: the address checked is the address connected to (the
host name still goes in the ``Host`` header and the TLS handshake), so a DNS answer that
changes between the check and the connection (rebinding) cannot reach a refused address.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from autonomy.connectors.errors import ConnectorError

REFUSED_MESSAGE = "The connector's address is not allowed or cannot be reached."
# Cloud metadata services outside 169.254.0.0/16: AWS's IPv6 one, Alibaba's.
METADATA = (ipaddress.ip_network("fd00:ec2::254/128"), ipaddress.ip_network("100.100.100.200/32"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(ConnectorError):
    """A connector address the guard refuses; always the same message."""

    def __init__(self):
        super().__init__(REFUSED_MESSAGE)


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_network(cidr, strict=False)
        for cidr in settings.AUTONOMY_CONNECTOR_ALLOWED_NETWORKS
    ]


def address_allowed(address: Address) -> bool:
    """Whether a connector may reach ``address`` (an IPv4-mapped IPv6 address is its IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if (
        address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or any(address in network for network in METADATA)
    ):
        return False
    if address.is_global:
        return True
    return any(address in network for network in allowed_networks())


def resolve(host: str, port: int) -> str:
    """The address to connect to for ``host``, once every address it resolves to is allowed."""
    if not host:
        raise OutboundRefused()
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, proto=socket.IPPROTO_TCP)
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    except (OSError, UnicodeError, ValueError):
        raise OutboundRefused() from None
    if not addresses or not all(address_allowed(address) for address in addresses):
        raise OutboundRefused()
    return str(addresses[0])


def check_url(url: str) -> str:
    """The address ``url`` reaches, if it is an http(s) URL whose host the guard allows."""
    try:
        parts = urlsplit(str(url))
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundRefused() from None
    if parts.scheme not in ("http", "https"):
        raise OutboundRefused()
    return resolve(parts.hostname or "", port)


class PinnedAdapter(HTTPAdapter):
    """Connects to the address the guard checked, not to a second DNS answer."""

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        host = host_params["host"]
        port = host_params["port"] or (443 if host_params["scheme"] == "https" else 80)
        host_params["host"] = resolve(host, port)
        request.headers.setdefault("Host", urlsplit(request.url).netloc.rpartition("@")[2])
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = host
            pool_kwargs["assert_hostname"] = host
        return host_params, pool_kwargs


def session() -> requests.Session:
    """A requests session whose every connection goes through the guard, pinned; ``trust_env``
    off, so no proxy variable or ~/.netrc adds a hop or credentials the config does not show."""
    guarded = requests.Session()
    guarded.trust_env = False
    adapter = PinnedAdapter()
    guarded.mount("http://", adapter)
    guarded.mount("https://", adapter)
    return guarded
