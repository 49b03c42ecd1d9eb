-- Reverses 0001_schema.up.sql; indexes go with their tables.
DROP TABLE IF EXISTS sample_batches;
DROP TABLE IF EXISTS config_seeds;
DROP TABLE IF EXISTS resource_quotas;
DROP TABLE IF EXISTS capacity_planning_forecasts;
DROP TABLE IF EXISTS load_balancer_config;
DROP TABLE IF EXISTS scaling_events;
DROP TABLE IF EXISTS scaling_policies;
DROP TABLE IF EXISTS service_capacity_metrics;
