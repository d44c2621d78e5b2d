"""ReactorLagMonitor: how late its timer fires, over a window."""

from twisted.internet.task import Clock

from rtmprelay.relay.lag import ReactorLagMonitor


def test_lateness_is_measured_and_summarised():
    clock = Clock()
    monitor = ReactorLagMonitor(clock, interval=0.05, window_s=1.0)
    monitor.startService()
    for _ in range(10):
        clock.advance(0.05)  # on time
    assert monitor.summary()["max_ms"] == 0.0
    clock.advance(0.05 + 0.2)  # the reactor was busy for 200 ms
    summary = monitor.summary()
    assert 199 < summary["max_ms"] < 201 and summary["worst_ms"] == summary["max_ms"]
    assert summary["p50_ms"] == 0.0
    assert summary["samples"] == 11
    for _ in range(40):  # the window (20 samples) forgets the late one; the worst remembers
        clock.advance(0.05)
    summary = monitor.summary()
    assert summary["max_ms"] == 0.0 and summary["samples"] == 20 and summary["worst_ms"] > 199
    monitor.stopService()
    assert not clock.getDelayedCalls()
