"""Twisted endpoint descriptions (``tcp:1935:interface=127.0.0.1``), read without making the endpoint.

Twisted's own syntax: ``:`` separates the type, positional arguments and
``key=value`` arguments; ``\\`` escapes the next character
(``tcp6:1935:interface=\\:\\:1``).
"""

from __future__ import annotations

__all__ = ["ALL_INTERFACES", "listen_interface", "split_endpoint"]

#: The ``interface`` values that mean every interface.
ALL_INTERFACES = ("", "0.0.0.0", "::", "::0")
#: Server endpoint types whose ``interface`` says where they listen, with the position of the
#: interface among the positional arguments after the port (``tcp:PORT:BACKLOG:INTERFACE``).
_INET_TYPES = {"tcp": 1, "tcp6": 1, "ssl": None}


def split_endpoint(description: str) -> tuple[str, list[str], dict[str, str]]:
    """``tcp:8888:interface=127.0.0.1`` -> ``("tcp", ["8888"], {"interface": "127.0.0.1"})``."""
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
        key, equals, value = part.partition("=")
        if equals:
            kwargs[key] = value
        else:
            args.append(part)
    return kind, args, kwargs


def listen_interface(description: str) -> str | None:
    """The address a TCP/TLS server endpoint binds (``""`` for all), or None for other kinds."""
    kind, args, kwargs = split_endpoint(description)
    if kind not in _INET_TYPES:
        return None
    if "interface" in kwargs:
        return kwargs["interface"]
    position = _INET_TYPES[kind]
    if position is not None and len(args) > position + 1:
        return args[position + 1]
    return ""
