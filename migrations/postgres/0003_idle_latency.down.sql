-- Back to 0002's p95 aggregate: the mean over the samples that have one.
SELECT tidegate_rewrite_p95_aggregate(
    'CASE WHEN count(m.response_time_p95_ms) = 0 THEN NULL ELSE avg(coalesce(m.response_time_p95_ms, 0)) END',
    'avg(m.response_time_p95_ms)');
DROP FUNCTION IF EXISTS tidegate_rewrite_p95_aggregate(TEXT, TEXT);
