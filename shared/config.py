"""Settings, one pydantic-settings class per service, built once at start and passed down.

Every variable is documented in the README's configuration table.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Connections, logging and time: shared by every process."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    amqp_url: str = Field("amqp://guest:guest@127.0.0.1:5672/", description="RabbitMQ URL")
    mongodb_url: str = Field(
        "mongodb://127.0.0.1:27017/?directConnection=true", description="MongoDB URL"
    )
    mongodb_db: str = Field("dialer", description="MongoDB database name")
    amqp_prefix: str = Field(
        "dialer", description="prefix of every exchange and queue name (one set per deployment)"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_json: bool | None = Field(
        None, description="JSON logs; default: JSON when stderr is not a terminal"
    )
    clock_rate: float = Field(
        1.0, gt=0, description="campaign seconds per wall second (60: one minute per second)"
    )
    clock_origin: datetime | None = Field(
        None,
        description="wall instant where accelerated time starts (ISO 8601); "
        "all processes of a stack must share it. Default: real time",
    )
    clock_sim_origin: datetime | None = Field(
        None, description="campaign time at clock_origin (default: clock_origin itself)"
    )
    metrics_port: int | None = Field(None, description="port of the Prometheus /metrics listener")
    drain_seconds: float = Field(
        120.0, gt=0, description="on SIGTERM, how long work in flight may take to finish"
    )
    session_fence_seconds: float = Field(
        10.0,
        gt=0,
        description="a process silent this long (wall s) is presumed dead: its open "
        "database transactions are aborted so they stop blocking others",
    )
    outbox_relay_seconds: float = Field(
        1.0, gt=0, description="how often the outbox relay looks for unpublished messages (wall s)"
    )
    outbox_grace_seconds: float = Field(
        5.0,
        gt=0,
        description="age (wall s) after which the relay publishes an outbox entry its "
        "writer did not (writer crashed or the broker was away)",
    )


class ApiSettings(CommonSettings):
    api_host: str = Field("127.0.0.1", description="address the API listens on")
    api_port: int = Field(8080, description="port the API listens on")
    api_max_body_bytes: int = Field(
        64 * 1024 * 1024, description="largest accepted request body (413 above it)"
    )
    api_key_cache_seconds: float = Field(
        2.0,
        ge=0,
        le=10,
        description="how long a looked-up API key is cached: a deactivation takes effect "
        "within this time (at most 10 s)",
    )
    default_firm_max_speed: int = Field(
        100, ge=1, description="concurrency limit of a firm without its own setting"
    )
    api_read_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="a connection must send its request headers, and then its body, within "
        "this time (idle keep-alive connections close after it too); 408 for a late body",
    )
    idempotency_ttl_seconds: float = Field(
        24 * 3600.0, gt=0, description="how long an Idempotency-Key and its answer are kept"
    )
    rate_limit_per_second: float = Field(
        50.0, ge=0, description="requests per second per API key, per API process (0: no limit)"
    )
    rate_limit_burst: int = Field(
        100, ge=1, description="requests an idle API key may send at once above the rate"
    )


class SchedulerSettings(CommonSettings):
    scheduler_id: str | None = Field(None, description="process id in leases (default: host:pid)")
    lease_seconds: float = Field(
        10.0,
        gt=0,
        description="campaign lease length (wall seconds); a dead scheduler's "
        "campaigns are taken over after it",
    )
    scheduler_tick_seconds: float = Field(
        1.0, gt=0, description="safety re-check of every owned campaign (wall seconds)"
    )
    attempt_lease_seconds: float = Field(
        600.0,
        gt=0,
        description="campaign seconds after which an unreported attempt is recovered as FAILED",
    )
    result_batch_size: int = Field(200, ge=1, description="results persisted per bulk write")


class WorkerSettings(CommonSettings):
    worker_concurrency: int = Field(100, ge=1, description="calls one worker places at once")
    attempt_heartbeat_seconds: float = Field(
        5.0,
        gt=0,
        description="how often a worker reports (wall s) that it lives and which calls it "
        "is placing; such a call is never taken for lost, however long it lasts. Keep it "
        "well below ATTEMPT_LEASE_SECONDS in wall seconds",
    )
    telephony_provider: str = Field("simulated", description="telephony provider: simulated")
    sim_answer_ratio: float = Field(0.6, ge=0, le=1, description="simulated: share answered")
    sim_busy_ratio: float = Field(0.1, ge=0, le=1, description="simulated: share busy")
    sim_failure_ratio: float = Field(0.05, ge=0, le=1, description="simulated: share failed")
    sim_ring_seconds: float = Field(8.0, ge=0, description="simulated: campaign seconds of ringing")
    sim_talk_seconds: float = Field(
        60.0, ge=0, description="simulated: campaign seconds of talk when answered"
    )
    sim_seed: int | None = Field(None, description="simulated: random seed for outcomes")
    sim_crash_drill: bool = Field(
        False,
        description="simulated: numbers ending 0007 make the worker exit right after "
        "placing their first attempt, before reporting it (crash drill for tests)",
    )
