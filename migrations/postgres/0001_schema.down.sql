-- Reverses 0001_schema.up.sql: the forecast function, then every table (their
-- indexes go with them), in the reverse order of creation.
DROP FUNCTION IF EXISTS generate_capacity_forecast(VARCHAR(100), INTEGER);
DROP TABLE IF EXISTS sample_batches;
DROP TABLE IF EXISTS config_seeds;
DROP TABLE IF EXISTS resource_quotas;
DROP TABLE IF EXISTS capacity_planning_forecasts;
DROP TABLE IF EXISTS load_balancer_config;
DROP TABLE IF EXISTS scaling_events;
DROP TABLE IF EXISTS scaling_policies;
DROP TABLE IF EXISTS service_capacity_metrics;
