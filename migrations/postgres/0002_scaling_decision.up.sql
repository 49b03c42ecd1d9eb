-- evaluate_scaling_decision(service): the scaling decision tidegate takes,
-- callable from psql. It implements the rules of src/scale/decision/mod.rs
-- (a parity test runs the same scenarios through both):
--   * a disabled or missing policy, a singleton, a window without samples or
--     without any measured metric: no decision, and the reason says so;
--   * for cpu, memory and p95 latency, ceil(current * observed / target), the
--     largest wins; within the tolerance band of its target a metric asks for
--     the current count;
--   * scale up when cpu or memory passes scale_up_threshold, or p95 passes its
--     target by more than the tolerance, by one at least;
--   * scale down only when every measured metric is under scale_down_threshold
--     (latency as a percent of its target), to what the busiest interval of the
--     scale-down cooldown needed;
--   * cooldowns per direction from the last scaling event of any type, read once;
--   * clamped to the policy, the quota's max_instances and what
--     cost_budget_monthly buys at p_instance_hourly_cost * 730 h;
--   * a stateful service that needs consensus keeps an odd count.
-- The first seven result columns are the plan's; reason and capped_by are added.
-- Arguments after the service name mirror tidegate's [scaler] settings and the
-- service's kind ('stateless', 'stateful', 'stateful_consensus', 'singleton');
-- p_current_instances defaults to the instances that reported in the window.

CREATE OR REPLACE FUNCTION tidegate_proportional(
    p_current INTEGER, p_value NUMERIC, p_target NUMERIC, p_tolerance NUMERIC
) RETURNS INTEGER LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_value IS NULL OR p_target IS NULL OR p_target <= 0 THEN NULL
        WHEN abs(p_value / p_target - 1) <= p_tolerance / 100 + 1e-9 THEN p_current
        ELSE greatest(ceil(p_current * (p_value / p_target) - 1e-9), 0)::INTEGER
    END
$$;

CREATE OR REPLACE FUNCTION evaluate_scaling_decision(
    p_service_name VARCHAR(100),
    p_tolerance_percent NUMERIC DEFAULT 10,
    p_instance_hourly_cost NUMERIC DEFAULT 0,
    p_window_seconds NUMERIC DEFAULT 60,
    p_metrics_interval_seconds NUMERIC DEFAULT 5,
    p_current_instances INTEGER DEFAULT NULL,
    p_service_kind TEXT DEFAULT 'stateless',
    p_now TIMESTAMPTZ DEFAULT NOW()
)
RETURNS TABLE(
    should_scale BOOLEAN,
    scale_direction VARCHAR(10),
    recommended_instances INTEGER,
    trigger_metric VARCHAR(50),
    current_value DECIMAL(10,2),
    threshold_value DECIMAL(10,2),
    confidence_score DECIMAL(5,2),
    reason TEXT,
    capped_by TEXT
) LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    pol RECORD;
    win RECORD;
    peak RECORD;
    v_current INTEGER;
    v_last TIMESTAMPTZ;
    v_expected NUMERIC;
    v_confidence NUMERIC;
    v_tol NUMERIC := p_tolerance_percent;
    v_interval NUMERIC := greatest(floor(p_metrics_interval_seconds), 1);
    v_lookback NUMERIC;
    -- readings, in the order cpu, memory, response_time
    m_name TEXT[] := ARRAY['cpu', 'memory', 'response_time'];
    m_value NUMERIC[];
    m_peak NUMERIC[];
    m_target NUMERIC[];
    m_up NUMERIC[];
    m_down NUMERIC[];
    i INTEGER;
    v_want INTEGER;
    v_all INTEGER;
    v_best INTEGER;
    v_pick INTEGER;
    v_direction TEXT;
    v_threshold NUMERIC;
    v_any BOOLEAN := false;
    v_all_under BOOLEAN := true;
    v_max INTEGER;
    v_max_cap TEXT;
    v_budget_max NUMERIC;
    v_target INTEGER;
    v_cap TEXT;
    v_moves BOOLEAN;
    v_cooldown INTEGER;
    v_reason TEXT;
BEGIN
    SELECT * INTO pol FROM scaling_policies sp WHERE sp.service_name = p_service_name;
    IF NOT FOUND OR NOT coalesce(pol.enabled, false) THEN
        RETURN QUERY SELECT false, 'none'::VARCHAR(10), coalesce(p_current_instances, 0), ''::VARCHAR(50),
            0.0::DECIMAL(10,2), 0.0::DECIMAL(10,2), 0.0::DECIMAL(5,2),
            CASE WHEN pol IS NULL THEN 'no scaling policy' ELSE 'policy disabled' END, NULL::TEXT;
        RETURN;
    END IF;

    SELECT avg(m.cpu_usage_percent) AS cpu, avg(m.memory_usage_percent) AS mem,
           avg(m.response_time_p95_ms) AS p95, count(DISTINCT m.instance_id) AS reporting, count(*) AS samples
      INTO win
      FROM service_capacity_metrics m
     WHERE m.service_name = p_service_name
       AND m.recorded_at > p_now - make_interval(secs => p_window_seconds::DOUBLE PRECISION)
       AND m.recorded_at <= p_now;
    v_current := coalesce(p_current_instances, nullif(win.reporting, 0)::INTEGER, pol.min_instances);

    v_expected := greatest(floor(p_window_seconds / p_metrics_interval_seconds), 1) * v_current;
    v_confidence := round(
        least(win.reporting::NUMERIC / greatest(v_current, 1), 1)
        * CASE WHEN v_expected = 0 THEN 0 ELSE least(win.samples::NUMERIC / v_expected, 1) END
        * 100, 2);

    IF p_service_kind = 'singleton' THEN
        v_reason := 'singleton services are never scaled';
    ELSIF win.samples = 0 THEN
        v_reason := 'no samples in the window: no data, no decision';
    ELSIF win.cpu IS NULL AND win.mem IS NULL AND win.p95 IS NULL THEN
        v_reason := 'no metric measured in the window';
    END IF;
    IF v_reason IS NOT NULL THEN
        RETURN QUERY SELECT false, 'none'::VARCHAR(10), v_current, ''::VARCHAR(50),
            0.0::DECIMAL(10,2), 0.0::DECIMAL(10,2), v_confidence::DECIMAL(5,2), v_reason, NULL::TEXT;
        RETURN;
    END IF;

    -- The busiest interval of the scale-down cooldown (at least the window).
    v_lookback := greatest(p_window_seconds, pol.scale_down_cooldown_minutes * 60);
    SELECT max(b.cpu) AS cpu, max(b.mem) AS mem, max(b.p95) AS p95 INTO peak
      FROM (SELECT avg(m.cpu_usage_percent) AS cpu, avg(m.memory_usage_percent) AS mem,
                   avg(m.response_time_p95_ms) AS p95
              FROM service_capacity_metrics m
             WHERE m.service_name = p_service_name
               AND m.recorded_at > p_now - make_interval(secs => v_lookback::DOUBLE PRECISION)
               AND m.recorded_at <= p_now
             GROUP BY floor(extract(epoch FROM m.recorded_at) / v_interval)) b;

    m_value := ARRAY[win.cpu, win.mem, win.p95];
    m_peak := ARRAY[greatest(win.cpu, peak.cpu), greatest(win.mem, peak.mem), greatest(win.p95, peak.p95)];
    m_target := ARRAY[pol.target_cpu_percent, pol.target_memory_percent, pol.target_response_time_ms];
    m_up := ARRAY[pol.scale_up_threshold, pol.scale_up_threshold, pol.target_response_time_ms * (1 + v_tol / 100)];
    m_down := ARRAY[pol.scale_down_threshold, pol.scale_down_threshold,
                    pol.target_response_time_ms * pol.scale_down_threshold / 100];

    SELECT max(e.occurred_at) INTO v_last FROM scaling_events e WHERE e.service_name = p_service_name;

    -- Scale up: the largest proportional count over every reading, the trigger
    -- the largest over the readings past their up threshold.
    v_all := NULL; v_best := NULL; v_pick := NULL;
    FOR i IN 1..3 LOOP
        v_want := tidegate_proportional(v_current, m_value[i], m_target[i], v_tol);
        CONTINUE WHEN v_want IS NULL;
        IF v_all IS NULL OR v_want > v_all THEN v_all := v_want; END IF;
        IF m_value[i] >= m_down[i] THEN v_all_under := false; END IF;
        IF m_value[i] > m_up[i] AND (v_best IS NULL OR v_want > v_best) THEN
            v_best := v_want; v_pick := i;
        END IF;
    END LOOP;

    IF v_pick IS NOT NULL THEN
        v_direction := 'up';
        v_target := greatest(v_all, v_current + 1);
        v_threshold := m_up[v_pick];
        v_cooldown := pol.scale_up_cooldown_minutes;
    ELSIF v_all_under THEN
        v_best := NULL;
        FOR i IN 1..3 LOOP
            v_want := tidegate_proportional(v_current, m_peak[i], m_target[i], v_tol);
            IF v_want IS NOT NULL AND (v_best IS NULL OR v_want > v_best) THEN
                v_best := v_want; v_pick := i;
            END IF;
        END LOOP;
        IF v_best >= v_current THEN
            RETURN QUERY SELECT false, 'none'::VARCHAR(10), v_current, ''::VARCHAR(50),
                0.0::DECIMAL(10,2), 0.0::DECIMAL(10,2), v_confidence::DECIMAL(5,2),
                format('every metric under scale_down_threshold, but the cooldown peak of %s needs %s of %s',
                       m_name[v_pick], v_best, v_current), NULL::TEXT;
            RETURN;
        END IF;
        v_direction := 'down';
        v_target := v_best;
        v_threshold := m_down[v_pick];
        v_cooldown := pol.scale_down_cooldown_minutes;
    ELSE
        RETURN QUERY SELECT false, 'none'::VARCHAR(10), v_current, ''::VARCHAR(50),
            0.0::DECIMAL(10,2), 0.0::DECIMAL(10,2), v_confidence::DECIMAL(5,2),
            'every metric between its thresholds'::TEXT, NULL::TEXT;
        RETURN;
    END IF;

    -- Bounds: policy, quota, budget; then odd counts for consensus.
    v_max := pol.max_instances; v_max_cap := 'policy max_instances';
    PERFORM 1 FROM resource_quotas q WHERE q.service_name = p_service_name;
    IF FOUND THEN
        SELECT q.max_instances INTO v_want FROM resource_quotas q WHERE q.service_name = p_service_name;
        IF v_want < v_max THEN v_max := v_want; v_max_cap := 'quota max_instances'; END IF;
        SELECT q.cost_budget_monthly INTO v_budget_max FROM resource_quotas q WHERE q.service_name = p_service_name;
        IF v_budget_max IS NOT NULL AND p_instance_hourly_cost > 0 THEN
            v_budget_max := floor(v_budget_max / (p_instance_hourly_cost * 730) + 1e-9);
            IF v_budget_max < v_max THEN v_max := greatest(v_budget_max, 0)::INTEGER; v_max_cap := 'quota cost_budget_monthly'; END IF;
        END IF;
    END IF;
    v_want := v_target;
    IF v_target > v_max THEN v_target := v_max; v_cap := v_max_cap; END IF;
    IF v_target < pol.min_instances AND pol.min_instances <= v_max THEN
        v_target := pol.min_instances; v_cap := 'policy min_instances';
    END IF;
    IF p_service_kind = 'stateful_consensus' AND v_target % 2 = 0 THEN
        IF v_direction = 'up' AND v_target < v_max THEN v_target := v_target + 1;
        ELSIF v_direction = 'up' THEN v_target := v_target - 1;
        ELSE v_target := v_target + 1;
        END IF;
        v_cap := coalesce(v_cap, 'odd member count');
    END IF;

    v_moves := (v_direction = 'up' AND v_target > v_current) OR (v_direction = 'down' AND v_target < v_current);
    IF NOT v_moves THEN
        v_reason := format('%s %s asks for %s, but %s holds the service at %s',
                           m_name[v_pick], round(m_value[v_pick], 2), v_want, coalesce(v_cap, 'its bounds'), v_current);
    ELSIF v_cap IS NULL THEN
        v_reason := format('%s %s against target %s asks for %s',
                           m_name[v_pick], round(m_value[v_pick], 2), round(m_target[v_pick], 2), v_target);
    ELSE
        v_reason := format('%s %s asks for %s, capped at %s by %s',
                           m_name[v_pick], round(m_value[v_pick], 2), v_want, v_target, v_cap);
    END IF;
    IF v_moves AND v_last IS NOT NULL AND p_now - v_last < make_interval(mins => v_cooldown) THEN
        v_moves := false;
        v_reason := format('%s cooldown of %s min since the last scaling event holds %s',
                           CASE v_direction WHEN 'up' THEN 'scale-up' ELSE 'scale-down' END, v_cooldown, v_reason);
    END IF;

    RETURN QUERY SELECT v_moves,
        (CASE WHEN v_moves THEN v_direction ELSE 'none' END)::VARCHAR(10),
        CASE WHEN v_moves THEN v_target ELSE v_current END,
        m_name[v_pick]::VARCHAR(50),
        m_value[v_pick]::DECIMAL(10,2),
        v_threshold::DECIMAL(10,2),
        v_confidence::DECIMAL(5,2),
        v_reason,
        v_cap;
END;
$$;
