"""Small socket settings shared by the server and client adapters, and how they write.

Writing (issue 11). A connection's output is a list of pieces
(``Connection.parts_to_send``: chunk headers, payloads, chunked forms shared
with other connections). ``TURN.write(transport, parts)`` hands them over:

* inside ``with TURN:`` (the server protocol's ``dataReceived``, where one
  publisher's bytes fan out to its players and its upstream forwarder) the
  pieces are kept per transport, and when the block ends each transport's
  pieces for the whole turn leave together;
* they leave through ``send_parts``: when Twisted has nothing queued for a TCP
  transport, straight to its socket in one ``sendmsg`` (gathered, not joined;
  whatever the socket does not take goes to Twisted's buffer), else through
  ``writeSequence``.

Twisted's own ``write`` appends to a list, asks epoll for writability
(``epoll_ctl``), joins the list and ``send``s it on the next reactor iteration,
then takes writability off again (``epoll_ctl``): one ``send`` per turn already,
but three syscalls, one copy of the turn's bytes, and a wait for the next
iteration (bench/write_syscalls.py, docs/performance.md).
"""

from __future__ import annotations

import socket
import struct

from twisted.internet import tcp

_LINGER_RESET = struct.pack("ii", 1, 0)
#: The TCP transports whose socket ``send_parts`` may write to itself (not TLS,
#: not test transports: those get ``writeSequence``).
_TCP_TRANSPORTS = (tcp.Server, tcp.Client)
#: Pieces gathered into one ``sendmsg`` at most (Linux's IOV_MAX is 1024); more are joined first.
_MAX_PARTS = 512


def send_parts(transport, parts: list[bytes]) -> None:
    """Write ``parts`` to ``transport`` in order, straight to the socket when nothing is queued before them.

    The socket write is Twisted's own ``doWrite`` done at once: ``sendmsg`` of the
    pieces as they are. What it does not take (a full socket buffer), or any
    error, goes to ``writeSequence``: Twisted then queues the rest, pauses the
    producer past its buffer size, and finds the error and closes as it would.
    """
    if type(transport) in _TCP_TRANSPORTS and _idle(transport):
        try:
            sent = transport.socket.sendmsg(parts if len(parts) <= _MAX_PARTS else [b"".join(parts)])
        except OSError:
            sent = 0
        if sent:
            parts = _unsent(parts, sent)
            if not parts:
                return
    transport.writeSequence(parts)


def _idle(transport) -> bool:
    """Whether nothing is queued before our bytes and the connection is open. These are
    Twisted's private attributes (pinned by a test on a real ``tcp.Server``): a
    Twisted without them gets ``writeSequence`` for every write, never an error."""
    try:
        return not (
            transport._tempDataLen
            or transport.dataBuffer
            or not transport.connected
            or transport.disconnecting
            or transport._aborting
        )
    except AttributeError:
        return False


def _unsent(parts: list[bytes], sent: int) -> list[bytes]:
    for i, part in enumerate(parts):
        size = len(part)
        if sent < size:
            return [part[sent:], *parts[i + 1 :]]
        sent -= size
    return []


class TurnWrites:
    """Each transport's writes for one reactor turn, sent as one (see the module doc).

    ``with TURN:`` opens a turn (they nest; the outermost one sends);
    ``write(transport, parts)`` keeps the parts until the turn ends, or sends
    them at once outside a turn. One instance serves the reactor's thread.
    """

    def __init__(self) -> None:
        self._depth = 0
        self._pending: dict = {}

    def write(self, transport, parts: list[bytes]) -> None:
        if not parts:
            return
        if not self._depth:
            send_parts(transport, parts)
            return
        queued = self._pending.get(transport)
        if queued is None:
            self._pending[transport] = parts
        else:
            queued += parts

    def __enter__(self) -> "TurnWrites":
        self._depth += 1
        return self

    def __exit__(self, *exc_info) -> None:
        self._depth -= 1
        if self._depth or not self._pending:
            return
        pending, self._pending = self._pending, {}
        for transport, parts in pending.items():
            send_parts(transport, parts)


#: The reactor thread's turn.
TURN = TurnWrites()


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

