"""Where a clone or a push may go (DESIGN section 18), checked before `git` runs.

`https://` only, to a host in IMPORT_ALLOWED_HOSTS that resolves to public addresses only; the
address checked is the one `git` connects to (commands.py pins it), so a name that resolves
elsewhere a moment later (DNS rebinding) changes nothing. An entry written with its scheme and
port (`http://127.0.0.1:8417`) allows exactly that origin, plain HTTP and private address
included: an operator's own Git server.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from orchestrator.errors import InvalidRequest

DEFAULT_ALLOWED_HOSTS = ("github.com", "gitlab.com", "bitbucket.org")
Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class Remote:
    """A checked remote: its URL, and the address `git` must connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def pin(self) -> str:
        """`http.curloptResolve`'s entry: this host and port reach the checked address only."""
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.host}:{self.port}:{address}"


@dataclass(frozen=True)
class Origin:
    """An IMPORT_ALLOWED_HOSTS entry written with its scheme (and port): exactly that origin."""

    scheme: str
    host: str
    port: int


def parse_allowed(entries: Sequence[str]) -> tuple[tuple[str, ...], tuple[Origin, ...]]:
    """Plain host names (https, public addresses) and exact origins, from the setting's entries."""
    hosts: list[str] = []
    origins: list[Origin] = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        if "://" not in entry:
            hosts.append(entry.lower().rstrip("."))
            continue
        parts = urlsplit(entry)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {entry!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origins.append(Origin(parts.scheme, parts.hostname.lower(), port))
    return tuple(hosts), tuple(origins)


def system_resolver(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequest(f"The host {host} of the repository URL cannot be resolved") from exc
    return [str(info[4][0]) for info in found]


def check(url: str, allowed: Sequence[str], resolve: Resolver = system_resolver) -> Remote:
    """The remote `url` names, or InvalidRequest with a sentence saying why it may not be used."""
    hosts, origins = parse_allowed(allowed)
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise InvalidRequest("url must be an https:// URL of a Git repository")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InvalidRequest("The repository URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest("The repository URL is not a valid URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise InvalidRequest(
            f"Only https:// repository URLs can be used, not {scheme or 'this'}:// ones"
            if scheme
            else "The repository URL must start with https://"
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidRequest(
            "The repository URL must not carry credentials; send a private repository's "
            "token in the `token` field instead"
        )
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise InvalidRequest("The repository URL has no host")
    port = port or (443 if scheme == "https" else 80)
    if Origin(scheme, host, port) in origins:
        # An operator's own server, exactly as configured: its address is trusted as it is.
        return Remote(url, scheme, host, port, _first(resolve(host, port), host))
    if scheme != "https":
        raise InvalidRequest("Only https:// repository URLs can be used")
    if host not in hosts:
        raise InvalidRequest(
            f"Repositories can be imported from {', '.join(hosts) or 'no host'} only; "
            f"{host} is not allowed (IMPORT_ALLOWED_HOSTS)"
        )
    if port != 443:
        raise InvalidRequest(
            f"{host} is allowed on the https port (443) only; an operator can allow another "
            "origin by its scheme and port (IMPORT_ALLOWED_HOSTS)"
        )
    addresses = resolve(host, port)
    for address in addresses:
        if not is_public(address):
            raise InvalidRequest(
                f"The host {host} resolves to a non-public address; repositories are only "
                "fetched from public addresses"
            )
    return Remote(url, scheme, host, port, _first(addresses, host))


def _first(addresses: list[str], host: str) -> str:
    if not addresses:
        raise InvalidRequest(f"The host {host} of the repository URL cannot be resolved")
    return addresses[0]


def is_public(address: str) -> bool:
    """A globally routable unicast address: no loopback, private, link-local (the cloud metadata
    service at 169.254.169.254), shared, reserved or multicast one, nor one mapped onto them."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return is_public(str(mapped))
    return ip.is_global and not ip.is_multicast
