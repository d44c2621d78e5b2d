"""Small socket settings shared by the server and client adapters."""

from __future__ import annotations

import socket
import struct

from rtmprelay.media import flv

_LINGER_RESET = struct.pack("ii", 1, 0)


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


def reset_connection(transport) -> None:
    """Close at once with a TCP reset, dropping what is still queued to send.

    A peer that stopped reading keeps a plain close from ever completing: the
    FIN waits behind data it will not take, and the kernel holds the socket
    and its send buffer (megabytes) in FIN-WAIT-1 for minutes. nginx's
    ``reset_timedout_connection`` does the same.
    """
    try:
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except (AttributeError, OSError):
        pass
    transport.abortConnection()


class KeyframeGate:
    """Backpressure for one sink that must not grow memory without bound.

    While the sink's socket is paused, what is written still counts; past
    ``limit`` bytes the gate refuses frames up to the next keyframe (sequence
    headers always pass), so a slow reader loses whole GOPs and never sees a
    frame whose references it missed. nginx-rtmp drops for slow players the
    same way.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.paused = False
        self.skipping = False
        self.written_while_paused = 0
        self.dropped = 0

    def pause(self) -> None:
        self.paused = True
        self.written_while_paused = 0

    def resume(self) -> None:
        self.paused = False
        self.written_while_paused = 0

    def admit(self, type_id: int, payload: bytes) -> bool:
        if flv.is_video_sequence_header(payload) or flv.is_audio_sequence_header(payload):
            return True
        if self.skipping:
            if not (type_id == flv.VIDEO and flv.is_keyframe(payload)):
                self.dropped += 1
                return False
            self.skipping = False
        elif self.paused and self.written_while_paused > self.limit:
            self.skipping = True
            self.dropped += 1
            return False
        if self.paused:
            self.written_while_paused += len(payload)
        return True
