"""Prometheus metrics of one gateway instance, on a registry of its own (``/metrics``)."""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("avisos_gateway_connections", "Open connections", registry=r)
        self.users = Gauge("avisos_gateway_users", "Users with at least one connection", registry=r)
        self.handshakes = Counter(
            "avisos_gateway_handshakes_total", "Handshakes by result", ["result"], registry=r
        )
        self.bus_messages = Counter(
            "avisos_gateway_bus_messages_total",
            "Realtime bus messages by kind",
            ["kind"],
            registry=r,
        )
        self.pushed = Counter(
            "avisos_gateway_frames_pushed_total", "Frames written to clients", registry=r
        )
        self.replays = Counter(
            "avisos_gateway_replays_total",
            "Catch-ups from PostgreSQL by reason and result",
            ["reason", "result"],
            registry=r,
        )
        self.replayed = Counter(
            "avisos_gateway_replayed_notifications_total", "Notifications replayed", registry=r
        )
        self.drops = Counter(
            "avisos_gateway_drops_total",
            "Connections dropped or frames not sent, by reason",
            ["reason"],
            registry=r,
        )
        self.send_latency = Histogram(
            "avisos_gateway_send_latency_seconds",
            "From the bus message's produced_at to the frame written to the last socket",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.gc_pause = Histogram(
            "avisos_gateway_gc_pause_seconds",
            "Cyclic garbage collector pauses by generation (they stall every socket)",
            ["generation"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self._gc_started = 0.0

    def watch_gc(self) -> None:
        """Record every collection's pause (call once per process)."""
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._gc_started
            self.gc_pause.labels(str(info.get("generation", "?"))).observe(pause)
