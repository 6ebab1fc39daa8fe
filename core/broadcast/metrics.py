"""`/metrics`: the `/health` figures in Prometheus text format.

A custom collector reads the `HealthReport` at scrape time, so publishing an event costs
nothing extra for metrics and the two endpoints can never disagree.
"""

from __future__ import annotations

from typing import Callable, Iterator, get_args

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from core.contracts.health import HealthReport, Status


class HealthCollector:
    def __init__(self, health: Callable[[], HealthReport]) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        report = self._health()
        connection = report.connection

        status = GaugeMetricFamily("vectra_status", "1 for the current /health status", labels=["status"])
        for name in get_args(Status):
            status.add_metric([name], 1.0 if report.status == name else 0.0)
        yield status

        connected = GaugeMetricFamily(
            "vectra_connection_connected", "1 while the primary feed source is connected", labels=["source"]
        )
        connected.add_metric([report.source], 1.0 if connection.state == "connected" else 0.0)
        yield connected
        yield CounterMetricFamily(
            "vectra_connection_reconnects", "Reconnects of all feed sources since start", value=connection.reconnects
        )
        yield from _optional_gauge(
            "vectra_last_event_age_seconds", "Time since the last event", _seconds(connection.last_event_age_ms)
        )
        yield from _optional_gauge(
            "vectra_last_frame_age_seconds",
            "Time since the last event from the feed",
            _seconds(connection.last_frame_age_ms),
        )

        yield CounterMetricFamily("vectra_events", "Events published since start", value=report.events_total)
        by_family = CounterMetricFamily("vectra_family_events", "Events published since start, by channel family", labels=["family"])
        for family, count in sorted(report.events_by_family.items()):
            by_family.add_metric([family], count)
        yield by_family
        yield GaugeMetricFamily("vectra_events_per_second", "Event rate over the last 5 s", value=report.events_per_s)
        yield GaugeMetricFamily("vectra_seq", "Last sequence number published", value=report.seq)

        latency = report.latency_ms
        yield from _optional_gauge("vectra_feed_rtt_seconds", "Feed round trip", _seconds(latency.feed_rtt))
        pipeline = GaugeMetricFamily(
            "vectra_pipeline_latency_seconds", "Receive-to-publish latency over recent events", labels=["quantile"]
        )
        for quantile, milliseconds in (("0.5", latency.pipeline.p50), ("0.99", latency.pipeline.p99)):
            if milliseconds is not None:
                pipeline.add_metric([quantile], milliseconds / 1000.0)
        yield pipeline

        subscribers = GaugeMetricFamily("vectra_subscribers", "Connected subscribers", labels=["transport"])
        for transport, count in sorted(report.subscribers.model_dump().items()):
            subscribers.add_metric([transport], count)
        yield subscribers

        recording = report.recording
        yield GaugeMetricFamily("vectra_recording_on", "1 while recording", value=1.0 if recording.on else 0.0)
        yield GaugeMetricFamily("vectra_recording_rows", "Rows written to the current recording", value=recording.rows)
        yield GaugeMetricFamily("vectra_uptime_seconds", "Seconds since start", value=report.uptime_s)


def _seconds(milliseconds: float | None) -> float | None:
    return milliseconds / 1000.0 if milliseconds is not None else None


def _optional_gauge(name: str, documentation: str, value: float | None) -> Iterator[Metric]:
    """A gauge that is left out while it has no value (no event yet), rather than reported as 0."""
    if value is not None:
        yield GaugeMetricFamily(name, documentation, value=value)


def metrics_registry(health: Callable[[], HealthReport]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(health))
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
