"""Small socket settings shared by the server and client adapters."""

from __future__ import annotations


def set_tcp_nodelay(transport) -> None:
    """One write per message and no Nagle delay: a keyframe's last chunk must not
    wait 40 ms for an ACK (nginx-rtmp's p99 stalls come from exactly that)."""
    set_nodelay = getattr(transport, "setTcpNoDelay", None)
    if set_nodelay is not None:
        try:
            set_nodelay(True)
        except OSError:
            pass
