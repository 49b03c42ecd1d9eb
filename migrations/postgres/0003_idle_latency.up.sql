-- evaluate_scaling_decision (0002) averaged response_time_p95_ms over the
-- samples that have one, i.e. over the intervals in which requests were
-- served. After a load stops, the window then still holds only the load's
-- latency for a whole window, and the function kept asking for more instances
-- of a service serving nothing. From here an interval without requests counts
-- as 0 ms (nobody waited), and the level is NULL only when no sample of the
-- set has a p95, as in src/scale/window.rs.
--
-- 0002 is applied already where it matters and migrations are immutable, so
-- this rewrites the two aggregates in the installed definition rather than
-- repeating the whole function; the down migration rewrites them back.

-- Replaces `p_from` by `p_to` in evaluate_scaling_decision's definition; it
-- must occur exactly twice (the window's and the peak's aggregate).
CREATE OR REPLACE FUNCTION tidegate_rewrite_p95_aggregate(p_from TEXT, p_to TEXT)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    v_def TEXT := pg_get_functiondef(
        'evaluate_scaling_decision(VARCHAR, NUMERIC, NUMERIC, NUMERIC, NUMERIC, INTEGER, TEXT, TIMESTAMPTZ)'::regprocedure);
BEGIN
    IF (length(v_def) - length(replace(v_def, p_from, ''))) / length(p_from) <> 2 THEN
        RAISE EXCEPTION 'evaluate_scaling_decision does not aggregate p95 as %', p_from;
    END IF;
    EXECUTE replace(v_def, p_from, p_to);
END
$$;

SELECT tidegate_rewrite_p95_aggregate(
    'avg(m.response_time_p95_ms)',
    'CASE WHEN count(m.response_time_p95_ms) = 0 THEN NULL ELSE avg(coalesce(m.response_time_p95_ms, 0)) END');
