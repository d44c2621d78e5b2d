"""Which listen endpoints can be reached from beyond this machine.

Publish authorization is required by default where the relay listens beyond
loopback (``tcp:1935`` listens on every interface). An endpoint is local when
it is a Unix socket or a TCP/TLS port bound to a loopback address
(``interface=127.0.0.1``, ``interface=\\:\\:1``, ``interface=localhost``);
anything else, including an endpoint type this module does not know, counts
as exposed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from rtmprelay.endpoints import listen_interface, split_endpoint

__all__ = ["exposed_endpoints"]

_LOCAL_TYPES = {"unix"}


def exposed_endpoints(descriptions: Iterable[str]) -> list[str]:
    """The endpoints of ``descriptions`` that listen beyond loopback."""
    return [d for d in descriptions if not _local(d)]


def _local(description: str) -> bool:
    if split_endpoint(description)[0] in _LOCAL_TYPES:
        return True
    interface = listen_interface(description)
    if not interface:
        return False  # unknown type, or every interface
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False
