"""One tree of errors for the whole project.

Every error a peer can provoke is a ``ProtocolError`` (or a ``MediaError``) that
says *what* was wrong and *where*, so the adapter that catches it can log one
line naming both and close only the connection that sent it.

Our own misuse of a session (h11's split) is a ``LocalProtocolError``: a bug in
rtmprelay, never the peer's doing, so no adapter catches it to close a
connection or to steer its control flow.
"""

from __future__ import annotations


class RelayError(Exception):
    """Root of every error rtmprelay raises on purpose."""


class ParseError(RelayError):
    """Input that cannot be understood: names what was wrong and where."""

    def __init__(self, what: str, where: str | None = None) -> None:
        self.what = what
        self.where = where
        super().__init__(f"{what} (at {where})" if where else what)


class ProtocolError(ParseError):
    """The RTMP peer broke the protocol."""


class HandshakeError(ProtocolError):
    """Bad C0/C1/C2 or S0/S1/S2, or a handshake that stalled."""


class ChunkStreamError(ProtocolError):
    """Bad chunk header, chunk size, message length or chunk stream id."""


class AMFError(ProtocolError):
    """Malformed, truncated or too deeply nested AMF0/AMF3 data."""


class MessageError(ProtocolError):
    """A message whose payload does not match its type."""


class SessionError(ProtocolError):
    """The peer sent what its session's state does not allow.

    For an input the session's transition table has no entry for, ``state`` and
    ``input`` name the missing key (``rtmprelay.rtmp.session``); for a command
    the table allows but whose arguments cannot be acted on (a connect without an
    app, a 17th stream) both are None.
    """

    def __init__(self, what: str, where: str | None = None, *, state: str | None = None, input: str | None = None) -> None:
        self.state = state
        self.input = input
        super().__init__(what, where)


class LocalProtocolError(RelayError):
    """Our own code used a session wrongly: sent media before the publish was
    accepted, accepted a publish nobody asked for. Names the session's state and
    the call (``state``, ``input``), and where. Not a ``ProtocolError``: the peer
    did nothing wrong, so nothing closes its connection for it or catches it to
    decide what to do; check the session's state first instead.
    """

    def __init__(self, what: str, where: str | None = None, *, state: str | None = None, input: str | None = None) -> None:
        self.what = what
        self.where = where
        self.state = state
        self.input = input
        super().__init__(f"{what} (at {where})" if where else what)


class MediaError(ParseError):
    """Malformed FLV, AVC or AAC data."""


class ConfigError(RelayError):
    """Configuration that cannot work (bad URL template, bad endpoint, ...)."""
