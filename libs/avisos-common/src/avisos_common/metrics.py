"""Prometheus metrics helpers shared by the services.

Re-exports the metric types so services depend on one place, and renders the default
registry for a ``/metrics`` endpoint.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Counter", "Gauge", "Histogram", "render"]


def render() -> tuple[bytes, str]:
    """Return (body, content type) for the process's metrics."""
    return generate_latest(), CONTENT_TYPE_LATEST
