-- Nothing to revert: see 0002_scaling_decision.up.sql.
SELECT 1;
