-- Nothing to revert: see 0003_idle_latency.up.sql.
SELECT 1;
