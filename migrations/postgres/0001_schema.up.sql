-- The plan's six tables, with its column names, types and defaults.
--
-- Differences from the plan's sketch, all deliberate:
-- * indexes are created with CREATE INDEX after each table (PostgreSQL has no
--   inline INDEX clause) and without CONCURRENTLY (this file runs in a
--   transaction);
-- * the partial index on recent scaling events is gone: its NOW() predicate is
--   not immutable, and (service_name, occurred_at DESC) serves those queries;
-- * generate_capacity_forecast derives request rates from the sample interval
--   and fits growth by least squares instead of assuming 5% a month;
-- * two small tables of tidegate's own (config_seeds, sample_batches) record
--   which config values were seeded and which sample batches were written.

CREATE TABLE IF NOT EXISTS service_capacity_metrics (
    id BIGSERIAL PRIMARY KEY,
    service_name VARCHAR(100) NOT NULL,
    instance_id VARCHAR(100) NOT NULL,
    cpu_usage_percent DECIMAL(5,2) DEFAULT 0.0,
    memory_usage_percent DECIMAL(5,2) DEFAULT 0.0,
    disk_usage_percent DECIMAL(5,2) DEFAULT 0.0,
    network_io_mbps DECIMAL(10,2) DEFAULT 0.0,
    request_count INTEGER DEFAULT 0,
    active_connections INTEGER DEFAULT 0,
    queue_depth INTEGER DEFAULT 0,
    response_time_p95_ms DECIMAL(8,2) DEFAULT 0.0,
    error_rate_percent DECIMAL(5,2) DEFAULT 0.0,
    recorded_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_capacity_metrics_service_time
    ON service_capacity_metrics (service_name, recorded_at DESC);
CREATE INDEX IF NOT EXISTS idx_capacity_metrics_recorded_at
    ON service_capacity_metrics (recorded_at DESC);
CREATE INDEX IF NOT EXISTS idx_capacity_metrics_high_usage
    ON service_capacity_metrics (service_name)
    WHERE cpu_usage_percent > 80.0 OR memory_usage_percent > 80.0;

CREATE TABLE IF NOT EXISTS scaling_policies (
    id BIGSERIAL PRIMARY KEY,
    service_name VARCHAR(100) NOT NULL UNIQUE,
    min_instances INTEGER NOT NULL DEFAULT 1,
    max_instances INTEGER NOT NULL DEFAULT 10,
    target_cpu_percent DECIMAL(5,2) DEFAULT 70.0,
    target_memory_percent DECIMAL(5,2) DEFAULT 80.0,
    target_response_time_ms DECIMAL(8,2) DEFAULT 200.0,
    scale_up_threshold DECIMAL(5,2) DEFAULT 80.0,
    scale_down_threshold DECIMAL(5,2) DEFAULT 30.0,
    scale_up_cooldown_minutes INTEGER DEFAULT 5,
    scale_down_cooldown_minutes INTEGER DEFAULT 10,
    enabled BOOLEAN DEFAULT true,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS scaling_events (
    id BIGSERIAL PRIMARY KEY,
    service_name VARCHAR(100) NOT NULL,
    event_type VARCHAR(20) NOT NULL, -- 'scale_up', 'scale_down', 'scale_failed'
    trigger_metric VARCHAR(50) NOT NULL, -- 'cpu', 'memory', 'response_time', 'request_count'
    trigger_value DECIMAL(10,2) NOT NULL,
    threshold_value DECIMAL(10,2) NOT NULL,
    instances_before INTEGER NOT NULL,
    instances_after INTEGER NOT NULL,
    success BOOLEAN DEFAULT false,
    error_message TEXT,
    execution_time_seconds DECIMAL(8,2) DEFAULT 0.0,
    occurred_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_scaling_events_service_time
    ON scaling_events (service_name, occurred_at DESC);
CREATE INDEX IF NOT EXISTS idx_scaling_events_occurred_at
    ON scaling_events (occurred_at DESC);

CREATE TABLE IF NOT EXISTS load_balancer_config (
    id BIGSERIAL PRIMARY KEY,
    service_name VARCHAR(100) NOT NULL UNIQUE,
    algorithm VARCHAR(30) NOT NULL DEFAULT 'round_robin', -- 'round_robin', 'weighted', 'least_connections', 'ip_hash'
    health_check_path VARCHAR(200) NOT NULL DEFAULT '/health',
    health_check_interval_seconds INTEGER DEFAULT 30,
    health_check_timeout_seconds INTEGER DEFAULT 5,
    unhealthy_threshold INTEGER DEFAULT 3,
    healthy_threshold INTEGER DEFAULT 2,
    session_affinity BOOLEAN DEFAULT false,
    circuit_breaker_enabled BOOLEAN DEFAULT true,
    max_retries INTEGER DEFAULT 3,
    retry_timeout_seconds INTEGER DEFAULT 1,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS capacity_planning_forecasts (
    id BIGSERIAL PRIMARY KEY,
    service_name VARCHAR(100) NOT NULL,
    forecast_type VARCHAR(30) NOT NULL, -- 'linear', 'exponential', 'seasonal', 'ml_based'
    time_horizon_days INTEGER NOT NULL,
    predicted_peak_rps DECIMAL(10,2) NOT NULL,
    predicted_avg_cpu DECIMAL(5,2) NOT NULL,
    predicted_avg_memory DECIMAL(5,2) NOT NULL,
    recommended_instances INTEGER NOT NULL,
    confidence_score DECIMAL(5,2) DEFAULT 0.0,
    forecast_data JSONB NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_forecasts_horizon
    ON capacity_planning_forecasts (service_name, time_horizon_days, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_forecasts_created_at
    ON capacity_planning_forecasts (created_at DESC);

CREATE TABLE IF NOT EXISTS resource_quotas (
    id BIGSERIAL PRIMARY KEY,
    service_name VARCHAR(100) NOT NULL UNIQUE,
    max_cpu_cores DECIMAL(5,2) NOT NULL,
    max_memory_gb DECIMAL(8,2) NOT NULL,
    max_storage_gb DECIMAL(10,2) NOT NULL,
    max_network_mbps DECIMAL(10,2) NOT NULL,
    max_instances INTEGER NOT NULL,
    cost_budget_monthly DECIMAL(10,2),
    priority_level INTEGER DEFAULT 3, -- 1=critical, 2=high, 3=medium, 4=low
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

-- tidegate's own: the hash of the config value last seeded into a row of
-- scaling_policies, load_balancer_config or resource_quotas. A row is
-- overwritten from the config only when the config's value changed since.
CREATE TABLE IF NOT EXISTS config_seeds (
    table_name VARCHAR(64) NOT NULL,
    service_name VARCHAR(100) NOT NULL,
    config_hash VARCHAR(16) NOT NULL,
    seeded_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    PRIMARY KEY (table_name, service_name)
);

-- tidegate's own: one row per committed batch of samples, written in the same
-- transaction as the samples, so a retried batch is never inserted twice.
CREATE TABLE IF NOT EXISTS sample_batches (
    batch_key VARCHAR(40) PRIMARY KEY,
    written_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_sample_batches_written_at ON sample_batches (written_at);

-- Forecast of a service's daily request rate, CPU and memory for the next
-- p_days_ahead days, from up to 90 days of samples.
--
-- Rates: a sample's request_count counts the requests of one sample interval,
-- taken per instance as the median time between its consecutive samples, so a
-- day's rate is the sum over instances of requests / (samples * interval).
-- Growth: each series is fitted by least squares over days (regr_slope and
-- regr_intercept); with one day of history the slope is 0. No samples at all
-- return no rows: no data, no forecast.
-- recommended_instances: the predicted CPU of the current instance count
-- brought back to the policy's target_cpu_percent (70 without a policy).
CREATE OR REPLACE FUNCTION generate_capacity_forecast(
    p_service_name VARCHAR(100),
    p_days_ahead INTEGER DEFAULT 30
)
RETURNS TABLE(
    forecast_date DATE,
    predicted_rps DECIMAL(10,2),
    predicted_cpu DECIMAL(5,2),
    predicted_memory DECIMAL(5,2),
    recommended_instances INTEGER
) LANGUAGE plpgsql STABLE AS $$
DECLARE
    target_cpu DOUBLE PRECISION;
    fit RECORD;
BEGIN
    SELECT p.target_cpu_percent::DOUBLE PRECISION INTO target_cpu
    FROM scaling_policies p
    WHERE p.service_name = p_service_name;
    IF target_cpu IS NULL OR target_cpu <= 0 THEN
        target_cpu := 70.0;
    END IF;

    WITH samples AS (
        SELECT m.instance_id,
               m.recorded_at,
               m.request_count,
               m.cpu_usage_percent::DOUBLE PRECISION AS cpu,
               m.memory_usage_percent::DOUBLE PRECISION AS memory,
               EXTRACT(EPOCH FROM m.recorded_at - LAG(m.recorded_at)
                   OVER (PARTITION BY m.instance_id ORDER BY m.recorded_at)) AS gap_seconds
        FROM service_capacity_metrics m
        WHERE m.service_name = p_service_name
          AND m.recorded_at > NOW() - INTERVAL '90 days'
    ),
    intervals AS (
        SELECT s.instance_id,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY s.gap_seconds) AS interval_seconds
        FROM samples s
        WHERE s.gap_seconds > 0
        GROUP BY s.instance_id
    ),
    instance_days AS (
        SELECT (s.recorded_at AT TIME ZONE 'UTC')::DATE AS day,
               s.instance_id,
               SUM(s.request_count) / NULLIF(COUNT(*) * i.interval_seconds, 0) AS rps,
               SUM(s.cpu) AS cpu_sum,
               SUM(s.memory) AS memory_sum,
               COUNT(*) AS sample_count
        FROM samples s
        LEFT JOIN intervals i ON i.instance_id = s.instance_id
        GROUP BY 1, s.instance_id, i.interval_seconds
    ),
    days AS (
        SELECT (d.day - (NOW() AT TIME ZONE 'UTC')::DATE)::DOUBLE PRECISION AS x,
               COALESCE(SUM(d.rps), 0) AS rps,
               SUM(d.cpu_sum) / SUM(d.sample_count) AS cpu,
               SUM(d.memory_sum) / SUM(d.sample_count) AS memory,
               COUNT(*) AS instances
        FROM instance_days d
        GROUP BY d.day
    )
    SELECT COUNT(*) AS day_count,
           COALESCE(regr_slope(d.rps, d.x), 0) AS rps_slope,
           COALESCE(regr_intercept(d.rps, d.x), AVG(d.rps)) AS rps_base,
           COALESCE(regr_slope(d.cpu, d.x), 0) AS cpu_slope,
           COALESCE(regr_intercept(d.cpu, d.x), AVG(d.cpu)) AS cpu_base,
           COALESCE(regr_slope(d.memory, d.x), 0) AS memory_slope,
           COALESCE(regr_intercept(d.memory, d.x), AVG(d.memory)) AS memory_base,
           (ARRAY_AGG(d.instances ORDER BY d.x DESC))[1] AS instances
    INTO fit
    FROM days d;

    IF fit.day_count = 0 THEN
        RETURN;
    END IF;

    RETURN QUERY
    SELECT ((NOW() AT TIME ZONE 'UTC')::DATE + k)::DATE,
           LEAST(99999999.99, GREATEST(0, fit.rps_base + fit.rps_slope * k))::DECIMAL(10,2),
           LEAST(999.99, GREATEST(0, fit.cpu_base + fit.cpu_slope * k))::DECIMAL(5,2),
           LEAST(999.99, GREATEST(0, fit.memory_base + fit.memory_slope * k))::DECIMAL(5,2),
           GREATEST(1, CEIL(GREATEST(0, fit.cpu_base + fit.cpu_slope * k)
               * fit.instances / target_cpu))::INTEGER
    FROM generate_series(1, p_days_ahead) AS k;
END;
$$;
