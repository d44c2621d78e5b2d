"""Which listen endpoints can be reached from beyond this machine.

Publish authorization is required by default where the relay listens beyond
loopback (``tcp:1935`` listens on every interface). An endpoint is local when
it is a Unix socket or a TCP/TLS port bound to a loopback address
(``interface=127.0.0.1``, ``interface=\\:\\:1``); anything else, including an
endpoint type this module does not know, counts as exposed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["exposed_endpoints", "listen_interface"]

_LOCAL_TYPES = {"unix"}
#: Endpoint types whose ``interface`` says where they listen, and its position among the positional
#: arguments after the port (``tcp:PORT:BACKLOG:INTERFACE``), where there is one.
_INET_TYPES = {"tcp": 1, "tcp6": 1, "ssl": None}


def listen_interface(description: str) -> str | None:
    """The address a TCP/TLS server endpoint binds (``""`` for all), or None for other kinds."""
    kind, args, kwargs = _parse(description)
    if kind not in _INET_TYPES:
        return None
    if "interface" in kwargs:
        return kwargs["interface"]
    position = _INET_TYPES[kind]
    if position is not None and len(args) > position + 1:
        return args[position + 1]
    return ""


def exposed_endpoints(descriptions: Iterable[str]) -> list[str]:
    """The endpoints of ``descriptions`` that listen beyond loopback."""
    return [d for d in descriptions if not _local(d)]


def _local(description: str) -> bool:
    kind, _args, _kwargs = _parse(description)
    if kind in _LOCAL_TYPES:
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


def _parse(description: str) -> tuple[str, list[str], dict[str, str]]:
    """Twisted's endpoint syntax: ``type:arg:key=value``, ``\\`` escaping the next character."""
    parts, current, escaped = [], [], False
    for char in description:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    kind, args, kwargs = parts[0].lower(), [], {}
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if eq:
            kwargs[key] = value
        else:
            args.append(part)
    return kind, args, kwargs
