"""Forwarding without sockets: URL templates, the upstream forwarder's ordering,
its bounded queue, and backpressure from a slow upstream to the publisher."""

from __future__ import annotations

import pytest
from twisted.internet.testing import StringTransport

from rtmprelay.errors import ConfigError
from rtmprelay.relay.client import RTMPClientProtocol, UpstreamConfig, UpstreamForwarder
from rtmprelay.names import StreamName
from rtmprelay.relay.forward import UrlTemplate
from rtmprelay.relay.registry import LiveStream
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp import session as s
from rtmprelay.testing.memory import publishing_pair

AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"
AAC_HEADER = b"\xaf\x00\x12\x10"
KEY = b"\x17\x01\x00\x00\x00" + b"K" * 1000
INTER = b"\x27\x01\x00\x00\x00" + b"P" * 1000


@pytest.mark.parametrize(
    ("template", "path", "url"),
    [
        ("rtmp://up/live/{path}", "live/u1/s1", "rtmp://up/live/u1/s1"),
        ("rtmps://live.cloudflare.com:443/live/{streamId}", "live/u1/s1", "rtmps://live.cloudflare.com:443/live/s1"),
        ("rtmp://up/{app}/{userId}-{streamId}", "live/u1/s1", "rtmp://up/live/u1-s1"),
        ("rtmp://up/live/{streamId}", "live/u_1/a.b-c", "rtmp://up/live/a.b-c"),
    ],
)
def test_url_template(template, path, url):
    assert UrlTemplate(template).render(path) == url


def test_url_template_rejects_unknown_placeholders_and_schemes():
    with pytest.raises(ConfigError, match="unknown placeholder"):
        UrlTemplate("rtmp://up/live/{user}")
    with pytest.raises(ConfigError):
        UrlTemplate("http://up/live/{path}")


def test_stream_name_parts():
    assert StreamName.from_path("live/u1/s1") == StreamName("live", "u1/s1", "u1", "s1")
    assert StreamName.from_path("live/s1") == StreamName("live", "s1", "", "s1")


class FakePublisher:
    def __init__(self):
        self.paused = 0

    def pause_reading(self):
        self.paused += 1

    def resume_reading(self):
        self.paused -= 1


def publishing_client():
    """A ClientSession that has completed connect/createStream/publish against a ServerSession."""
    client, server, _, _, _ = publishing_pair("rtmp://up/live/u1/s1")
    assert client.publishing
    return client, server


def connected_forwarder(queue_bytes=8 * 1024 * 1024):
    publisher = FakePublisher()
    stream = LiveStream("live/u1/s1", publisher)
    forwarder = UpstreamForwarder(None, stream, "rtmp://up/live/u1/s1", UpstreamConfig(queue_bytes=queue_bytes))
    stream.attach(forwarder)
    client, server = publishing_client()
    protocol = RTMPClientProtocol(client, forwarder)
    protocol.transport = StringTransport()
    return publisher, stream, forwarder, protocol, server


def received_media(server, data):
    return [(e.type_id, e.timestamp, e.payload) for e in server.receive_data(data) if type(e) is s.MediaReceived]


def test_headers_and_metadata_go_first_then_the_queue_in_order():
    publisher, stream, forwarder, protocol, server = connected_forwarder()
    stream.publish_metadata({"width": 1.0})
    stream.publish_media(9, 0, AVC_HEADER)
    stream.publish_media(8, 0, AAC_HEADER)
    stream.publish_media(9, 0, KEY)
    stream.publish_media(9, 33, INTER)
    forwarder.upstream_publishing(protocol)
    stream.publish_media(9, 66, INTER)
    wire = protocol.transport.value()
    server_events = server.receive_data(wire)
    metadata = [e for e in server_events if type(e) is s.MetadataReceived]
    media = [(e.type_id, e.timestamp, e.payload) for e in server_events if type(e) is s.MediaReceived]
    assert metadata and metadata[0].metadata == {"width": 1.0}
    assert media == [(9, 0, AVC_HEADER), (8, 0, AAC_HEADER), (9, 0, KEY), (9, 33, INTER), (9, 66, INTER)]
    assert forwarder.dropped == 0


def test_queue_before_the_upstream_accepts_is_bounded_and_keeps_a_whole_gop():
    publisher, stream, forwarder, protocol, server = connected_forwarder(queue_bytes=12_000)
    stream.publish_media(9, 0, AVC_HEADER)
    for i in range(25):
        stream.publish_media(9, i * 33, KEY if i % 10 == 0 else INTER)
    assert forwarder._queued_bytes <= 12_000
    forwarder.upstream_publishing(protocol)
    media = received_media(server, protocol.transport.value())
    assert media[0] == (9, 0, AVC_HEADER)
    assert media[1] == (9, 20 * 33, KEY)  # the queue restarts at the newest keyframe
    assert len(media) == 1 + 5
    assert forwarder.dropped == 20


def test_a_gop_larger_than_the_queue_waits_for_the_next_keyframe():
    publisher, stream, forwarder, protocol, server = connected_forwarder(queue_bytes=3_000)
    for i in range(25):
        stream.publish_media(9, i * 33, KEY if i % 10 == 0 else INTER)
    assert forwarder._queued_bytes <= 3_000
    forwarder.upstream_publishing(protocol)
    assert received_media(server, protocol.transport.value()) == []
    assert forwarder.dropped == 25
    stream.publish_media(9, 25 * 33, INTER)  # still waiting for a keyframe
    stream.publish_media(9, 26 * 33, KEY)
    media = received_media(server, protocol.transport.value())
    assert media == [(9, 26 * 33, KEY)]


def test_a_full_upstream_pauses_the_publisher_and_resumes_it():
    publisher, stream, forwarder, protocol, server = connected_forwarder()
    forwarder.upstream_publishing(protocol)
    protocol.pauseProducing()  # what the upstream transport does when its buffer fills
    assert publisher.paused == 1
    protocol.resumeProducing()
    assert publisher.paused == 0


def test_writes_while_paused_are_bounded_by_skipping_to_a_keyframe():
    publisher, stream, forwarder, protocol, server = connected_forwarder(queue_bytes=5_000)
    forwarder.upstream_publishing(protocol)
    protocol.pauseProducing()
    for i in range(20):
        stream.publish_media(9, i * 33, KEY if i == 15 else INTER)
    # 5 frames of 1 KB fit the bound; the rest is skipped up to the keyframe, which
    # goes out, and (still paused, still over the bound) skipping starts again after it.
    assert forwarder.dropped == (15 - 5) + (20 - 16)
    protocol.resumeProducing()
    stream.publish_media(9, 20 * 33, INTER)
    assert forwarder.dropped == 14 + 1  # no keyframe yet: the skip goes on after resuming
    media = received_media(server, protocol.transport.value())
    payloads = [p for _, _, p in media]
    assert payloads == [INTER] * 5 + [KEY]


def test_stop_unpublishes_upstream():
    publisher, stream, forwarder, protocol, server = connected_forwarder()
    forwarder.upstream_publishing(protocol)
    forwarder.stop()
    events = server.receive_data(protocol.transport.value())
    assert any(type(e) is s.PublishEnded for e in events)
    assert protocol.transport.disconnecting


def test_keyframe_gate_used_by_players_and_upstreams():
    from rtmprelay.relay.transport import KeyframeGate

    gate = KeyframeGate(limit=2_000)
    assert all(gate.admit(9, INTER) for _ in range(10))  # not paused: no bound
    gate.pause()
    admitted = [gate.admit(9, INTER) for _ in range(5)]
    assert admitted == [True, True, False, False, False]  # 2,010 bytes written > 2,000: skip
    assert gate.admit(9, AVC_HEADER) and gate.admit(8, AAC_HEADER)  # headers always pass
    assert gate.admit(9, KEY)  # the keyframe ends the skip
    gate.resume()
    assert gate.admit(9, INTER) and gate.dropped == 3
