"""RTMP sessions talking in memory: a client and a server session wired
together with no sockets, for tests and benchmarks of the sans-IO core."""

from __future__ import annotations

from rtmprelay.rtmp import session as s


def accept_all(server: s.ServerSession, event) -> None:
    """The decisions a permissive server makes: accept every connect, publish and play."""
    if type(event) is s.ConnectRequested:
        server.accept_connect()
    elif type(event) is s.PublishRequested:
        server.accept_publish(event.stream_id)
    elif type(event) is s.PlayRequested:
        server.accept_play(event.stream_id)


def pump(client, server, server_events: list, client_events: list, *, decide=accept_all, rounds: int = 20) -> bytes:
    """Shuttle bytes both ways until both sides go quiet; return what the client sent."""
    sent = bytearray()
    for _ in range(rounds):
        to_server = client.data_to_send()
        sent += to_server
        if to_server:
            new = server.receive_data(to_server)
            server_events.extend(new)
            if decide:
                for event in new:
                    decide(server, event)
        to_client = server.data_to_send()
        if to_client:
            client_events.extend(client.receive_data(to_client))
        if not to_server and not to_client:
            break
    return bytes(sent)


def publishing_pair(url: str = "rtmp://127.0.0.1/live/user1/stream1", decide=accept_all):
    """A ClientSession that went through connect, createStream and publish against a
    ServerSession: (client, server, server_events, client_events, client_bytes)."""
    client = s.ClientSession.for_url(url)
    server = s.ServerSession()
    server_events: list = []
    client_events: list = []
    client.initiate()
    sent = pump(client, server, server_events, client_events, decide=decide)
    return client, server, server_events, client_events, sent
