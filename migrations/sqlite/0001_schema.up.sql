-- The plan's six tables on SQLite, with the nearest types: BIGSERIAL becomes
-- INTEGER PRIMARY KEY, VARCHAR becomes TEXT, DECIMAL becomes REAL, JSONB
-- becomes TEXT, and timestamps are UTC text in one sortable format
-- (2026-01-31T12:00:00.000Z) so that comparisons on them are correct.
-- Column names and defaults are the plan's. The capacity forecast function
-- exists only on PostgreSQL.

CREATE TABLE IF NOT EXISTS service_capacity_metrics (
    id INTEGER PRIMARY KEY,
    service_name TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    cpu_usage_percent REAL DEFAULT 0.0,
    memory_usage_percent REAL DEFAULT 0.0,
    disk_usage_percent REAL DEFAULT 0.0,
    network_io_mbps REAL DEFAULT 0.0,
    request_count INTEGER DEFAULT 0,
    active_connections INTEGER DEFAULT 0,
    queue_depth INTEGER DEFAULT 0,
    response_time_p95_ms REAL DEFAULT 0.0,
    error_rate_percent REAL DEFAULT 0.0,
    recorded_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_capacity_metrics_service_time
    ON service_capacity_metrics (service_name, recorded_at DESC);
CREATE INDEX IF NOT EXISTS idx_capacity_metrics_recorded_at
    ON service_capacity_metrics (recorded_at DESC);
CREATE INDEX IF NOT EXISTS idx_capacity_metrics_high_usage
    ON service_capacity_metrics (service_name)
    WHERE cpu_usage_percent > 80.0 OR memory_usage_percent > 80.0;

CREATE TABLE IF NOT EXISTS scaling_policies (
    id INTEGER PRIMARY KEY,
    service_name TEXT NOT NULL UNIQUE,
    min_instances INTEGER NOT NULL DEFAULT 1,
    max_instances INTEGER NOT NULL DEFAULT 10,
    target_cpu_percent REAL DEFAULT 70.0,
    target_memory_percent REAL DEFAULT 80.0,
    target_response_time_ms REAL DEFAULT 200.0,
    scale_up_threshold REAL DEFAULT 80.0,
    scale_down_threshold REAL DEFAULT 30.0,
    scale_up_cooldown_minutes INTEGER DEFAULT 5,
    scale_down_cooldown_minutes INTEGER DEFAULT 10,
    enabled BOOLEAN DEFAULT true,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS scaling_events (
    id INTEGER PRIMARY KEY,
    service_name TEXT NOT NULL,
    event_type TEXT NOT NULL,
    trigger_metric TEXT NOT NULL,
    trigger_value REAL NOT NULL,
    threshold_value REAL NOT NULL,
    instances_before INTEGER NOT NULL,
    instances_after INTEGER NOT NULL,
    success BOOLEAN DEFAULT false,
    error_message TEXT,
    execution_time_seconds REAL DEFAULT 0.0,
    occurred_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_scaling_events_service_time
    ON scaling_events (service_name, occurred_at DESC);
CREATE INDEX IF NOT EXISTS idx_scaling_events_occurred_at
    ON scaling_events (occurred_at DESC);

CREATE TABLE IF NOT EXISTS load_balancer_config (
    id INTEGER PRIMARY KEY,
    service_name TEXT NOT NULL UNIQUE,
    algorithm TEXT NOT NULL DEFAULT 'round_robin',
    health_check_path TEXT NOT NULL DEFAULT '/health',
    health_check_interval_seconds INTEGER DEFAULT 30,
    health_check_timeout_seconds INTEGER DEFAULT 5,
    unhealthy_threshold INTEGER DEFAULT 3,
    healthy_threshold INTEGER DEFAULT 2,
    session_affinity BOOLEAN DEFAULT false,
    circuit_breaker_enabled BOOLEAN DEFAULT true,
    max_retries INTEGER DEFAULT 3,
    retry_timeout_seconds INTEGER DEFAULT 1,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS capacity_planning_forecasts (
    id INTEGER PRIMARY KEY,
    service_name TEXT NOT NULL,
    forecast_type TEXT NOT NULL,
    time_horizon_days INTEGER NOT NULL,
    predicted_peak_rps REAL NOT NULL,
    predicted_avg_cpu REAL NOT NULL,
    predicted_avg_memory REAL NOT NULL,
    recommended_instances INTEGER NOT NULL,
    confidence_score REAL DEFAULT 0.0,
    forecast_data TEXT NOT NULL,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_forecasts_horizon
    ON capacity_planning_forecasts (service_name, time_horizon_days, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_forecasts_created_at
    ON capacity_planning_forecasts (created_at DESC);

CREATE TABLE IF NOT EXISTS resource_quotas (
    id INTEGER PRIMARY KEY,
    service_name TEXT NOT NULL UNIQUE,
    max_cpu_cores REAL NOT NULL,
    max_memory_gb REAL NOT NULL,
    max_storage_gb REAL NOT NULL,
    max_network_mbps REAL NOT NULL,
    max_instances INTEGER NOT NULL,
    cost_budget_monthly REAL,
    priority_level INTEGER DEFAULT 3,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS config_seeds (
    table_name TEXT NOT NULL,
    service_name TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    seeded_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (table_name, service_name)
);

CREATE TABLE IF NOT EXISTS sample_batches (
    batch_key TEXT PRIMARY KEY,
    written_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_sample_batches_written_at ON sample_batches (written_at);
