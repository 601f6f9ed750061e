"""The pipeline server's own Prometheus metrics, in a registry per server (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tether_server_requests",
            "Requests and streams handled, by outcome (ok or an error code).",
            ["pipeline", "transport", "kind", "outcome"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "tether_server_request_seconds",
            "Time from request or stream start to its end.",
            ["pipeline", "transport", "kind"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.active_streams = Gauge(
            "tether_server_active_streams",
            "Streams open now.",
            ["transport"],
            registry=self.registry,
        )
        self.stream_frames = Counter(
            "tether_server_stream_frames",
            "Stream frames, by direction (in from clients, out to them).",
            ["transport", "direction"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
