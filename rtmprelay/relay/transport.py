"""Small socket settings shared by the server and client adapters."""

from __future__ import annotations

import socket


def set_tcp_nodelay(transport) -> None:
    """One write per message and no Nagle delay: a keyframe's last chunk must not
    wait 40 ms for an ACK (nginx-rtmp's p99 stalls come from exactly that)."""
    set_nodelay = getattr(transport, "setTcpNoDelay", None)
    if set_nodelay is not None:
        try:
            set_nodelay(True)
        except OSError:
            pass


def quick_ack(transport) -> None:
    """Acknowledge at once (Linux ``TCP_QUICKACK``; it resets itself, so call it per read).

    During the RTMP command exchange a server such as nginx-rtmp holds its next
    small write until our ACK, which Linux delays by ~40 ms: without this the
    upstream publish takes ~45 ms to start instead of ~2 ms (bench/relay_forward.py).
    """
    option = getattr(socket, "TCP_QUICKACK", None)
    if option is None:
        return
    try:
        transport.getHandle().setsockopt(socket.IPPROTO_TCP, option, 1)
    except (AttributeError, OSError):
        pass
