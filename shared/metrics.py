"""Prometheus metrics: one registry per process, created on first use (nothing at import).

Every metric is listed in docs/METRICS.md. The API serves ``GET /metrics`` on its own
port; the scheduler and the dialer worker serve it on ``METRICS_PORT`` when it is set.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Attempt durations are campaign seconds: ringing plus talking.
_ATTEMPT_SECONDS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)
#: The AMQP timestamp has a resolution of one second.
_LAG_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
_BATCH = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Metrics:
    """The metrics of every Dialer process (a process only moves its own)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        # API
        self.api_requests = Counter(
            "dialer_api_requests_total",
            "API requests by matched route, method and response status",
            ["route", "method", "status"],
            registry=r,
        )
        self.api_request_seconds = Histogram(
            "dialer_api_request_seconds",
            "API request handling time (wall seconds)",
            ["route", "method"],
            buckets=_SECONDS,
            registry=r,
        )
        # Scheduler
        self.calls_dispatched = Counter(
            "dialer_calls_dispatched_total",
            "dial commands published (attempts dispatched)",
            ["campaign_uuid"],
            registry=r,
        )
        self.calls_finished = Counter(
            "dialer_calls_finished_total",
            "attempt results stored, by attempt outcome and the call's new status",
            ["outcome", "status"],
            registry=r,
        )
        self.calls_in_progress = Gauge(
            "dialer_calls_in_progress",
            "calls in progress of a campaign owned by this scheduler (stats.IN_PROGRESS)",
            ["campaign_uuid"],
            registry=r,
        )
        self.lease_takeovers = Counter(
            "dialer_lease_takeovers_total",
            "campaigns taken by this scheduler (lease acquired, runner started)",
            registry=r,
        )
        self.result_batch_size = Histogram(
            "dialer_result_batch_size",
            "attempt results persisted per bulk write",
            buckets=_BATCH,
            registry=r,
        )
        # Dialer worker
        self.attempt_seconds = Histogram(
            "dialer_attempt_seconds",
            "attempt durations by outcome (campaign seconds, started_at to ended_at)",
            ["outcome"],
            buckets=_ATTEMPT_SECONDS,
            registry=r,
        )
        self.dial_commands = Counter(
            "dialer_dial_commands_total",
            "dial commands handled: dialed, duplicate (dropped) or not_dialed",
            ["result"],
            registry=r,
        )
        self.dial_queue_lag = Histogram(
            "dialer_dial_queue_lag_seconds",
            "wall seconds from publishing a dial command to a worker taking it",
            buckets=_LAG_SECONDS,
            registry=r,
        )

        # Every process that writes or consumes messages
        self.outbox_backlog = Gauge(
            "dialer_outbox_backlog",
            "outbox entries not yet published and deleted (all processes' entries)",
            registry=r,
        )
        self.outbox_relayed = Counter(
            "dialer_outbox_relayed_total",
            "outbox entries published by this process's relay (left by a crash or outage)",
            registry=r,
        )
        self.messages_dead_lettered = Counter(
            "dialer_messages_dead_lettered_total",
            "messages this process sent to the dead-letter queue, by queue and reason",
            ["queue", "reason"],
            registry=r,
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_metrics: Metrics | None = None


def metrics() -> Metrics:
    """This process's metrics, created on first use."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def start_metrics_server(port: int | None) -> None:
    """Serve this process's registry on ``port`` (a daemon thread); nothing when unset."""
    if port is None:
        return
    start_http_server(port, registry=metrics().registry)
