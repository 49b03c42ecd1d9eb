//! Scaling events and capacity forecasts: appended, listed newest first.

use chrono::NaiveDate;
use sqlx::types::Json;
use sqlx::Row as _;

use super::codec::{self, Ts};
use super::{EventType, Forecast, ForecastType, ScalingEvent, Store, StoreError, TriggerMetric};
use crate::ids::ServiceName;

const EVENT_COLUMNS: &str = "service_name, event_type, trigger_metric, \
    CAST(trigger_value AS DOUBLE PRECISION) AS trigger_value, \
    CAST(threshold_value AS DOUBLE PRECISION) AS threshold_value, \
    instances_before, instances_after, COALESCE(success, false) AS success, error_message, \
    CAST(COALESCE(execution_time_seconds, 0.0) AS DOUBLE PRECISION) AS execution_time_seconds, \
    occurred_at";

const INSERT_EVENT: &str = "INSERT INTO scaling_events (service_name, event_type, \
    trigger_metric, trigger_value, threshold_value, instances_before, instances_after, success, \
    error_message, execution_time_seconds, occurred_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";

const FORECAST_COLUMNS: &str = "service_name, forecast_type, time_horizon_days, \
    CAST(predicted_peak_rps AS DOUBLE PRECISION) AS predicted_peak_rps, \
    CAST(predicted_avg_cpu AS DOUBLE PRECISION) AS predicted_avg_cpu, \
    CAST(predicted_avg_memory AS DOUBLE PRECISION) AS predicted_avg_memory, \
    recommended_instances, \
    CAST(COALESCE(confidence_score, 0.0) AS DOUBLE PRECISION) AS confidence_score, \
    forecast_data, created_at";

const INSERT_FORECAST: &str = "INSERT INTO capacity_planning_forecasts (service_name, \
    forecast_type, time_horizon_days, predicted_peak_rps, predicted_avg_cpu, \
    predicted_avg_memory, recommended_instances, confidence_score, forecast_data, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id";

/// One day of PostgreSQL's `generate_capacity_forecast(service, days)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastPoint {
    /// The day forecast.
    pub forecast_date: NaiveDate,
    /// Requests per second predicted for the service.
    pub predicted_rps: f64,
    /// Mean CPU per instance predicted, percent.
    pub predicted_cpu: f64,
    /// Mean memory per instance predicted, percent.
    pub predicted_memory: f64,
    /// Instances that keep CPU at the policy's target.
    pub recommended_instances: u32,
}

fn vocabulary<T>(
    column: &'static str,
    text: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, sqlx::Error> {
    parse(text).ok_or_else(|| codec::bad_value(column, format!("unknown value {text:?}")))
}

impl Store {
    /// Appends a scaling event; returns its id.
    pub async fn append_event(&self, event: &ScalingEvent) -> Result<i64, StoreError> {
        on_pool!(self, pool => sqlx::query(INSERT_EVENT)
            .bind(event.service.as_str())
            .bind(event.event_type.as_str())
            .bind(event.trigger_metric.as_str())
            .bind(event.trigger_value)
            .bind(event.threshold_value)
            .bind(codec::int(event.instances_before))
            .bind(codec::int(event.instances_after))
            .bind(event.success)
            .bind(event.error_message.as_deref())
            .bind(event.execution_time_seconds)
            .bind(Ts(event.occurred_at))
            .fetch_one(pool)
            .await
            .and_then(|row| row.try_get("id")))
        .map_err(StoreError::query("append scaling event"))
    }

    /// A service's latest events, newest first.
    pub async fn events(
        &self,
        service: &ServiceName,
        limit: u32,
    ) -> Result<Vec<ScalingEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM scaling_events WHERE service_name = $1 \
             ORDER BY occurred_at DESC, id DESC LIMIT $2"
        );
        self.select_events(&sql, Some(service), limit).await
    }

    /// A service's latest event, the one cooldowns count from.
    pub async fn last_event(
        &self,
        service: &ServiceName,
    ) -> Result<Option<ScalingEvent>, StoreError> {
        Ok(self.events(service, 1).await?.pop())
    }

    /// The latest event of every service that has one, by service name.
    pub async fn last_events(&self) -> Result<Vec<ScalingEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM scaling_events e WHERE e.id = (SELECT l.id \
             FROM scaling_events l WHERE l.service_name = e.service_name \
             ORDER BY l.occurred_at DESC, l.id DESC LIMIT 1) \
             AND ($1 IS NULL OR e.service_name = $1) ORDER BY e.service_name LIMIT $2"
        );
        self.select_events(&sql, None, u32::MAX).await
    }

    async fn select_events(
        &self,
        sql: &str,
        service: Option<&ServiceName>,
        limit: u32,
    ) -> Result<Vec<ScalingEvent>, StoreError> {
        let rows = on_pool!(self, pool => {
            let rows = sqlx::query(sql)
                .bind(service.map(ServiceName::as_str))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await;
            rows.and_then(|rows| rows.iter().map(|row| {
                let event_type: String = row.try_get("event_type")?;
                let trigger: String = row.try_get("trigger_metric")?;
                Ok(ScalingEvent {
                    service: ServiceName::new(row.try_get::<String, _>("service_name")?),
                    event_type: vocabulary("event_type", &event_type, EventType::parse)?,
                    trigger_metric: vocabulary("trigger_metric", &trigger, TriggerMetric::parse)?,
                    trigger_value: row.try_get("trigger_value")?,
                    threshold_value: row.try_get("threshold_value")?,
                    instances_before: codec::count("instances_before", row.try_get("instances_before")?)?,
                    instances_after: codec::count("instances_after", row.try_get("instances_after")?)?,
                    success: row.try_get("success")?,
                    error_message: row.try_get("error_message")?,
                    execution_time_seconds: row.try_get("execution_time_seconds")?,
                    occurred_at: row.try_get::<Ts, _>("occurred_at")?.0,
                })
            }).collect::<Result<Vec<_>, sqlx::Error>>())
        });
        rows.map_err(StoreError::query("read scaling events"))
    }

    /// Stores a forecast; returns its id.
    pub async fn insert_forecast(&self, forecast: &Forecast) -> Result<i64, StoreError> {
        on_pool!(self, pool => sqlx::query(INSERT_FORECAST)
            .bind(forecast.service.as_str())
            .bind(forecast.forecast_type.as_str())
            .bind(codec::int(forecast.time_horizon_days))
            .bind(forecast.predicted_peak_rps)
            .bind(forecast.predicted_avg_cpu)
            .bind(forecast.predicted_avg_memory)
            .bind(codec::int(forecast.recommended_instances))
            .bind(forecast.confidence_score)
            .bind(Json(&forecast.forecast_data))
            .bind(Ts(forecast.created_at))
            .fetch_one(pool)
            .await
            .and_then(|row| row.try_get("id")))
        .map_err(StoreError::query("insert forecast"))
    }

    /// A service's latest forecasts, newest first.
    pub async fn forecasts(
        &self,
        service: &ServiceName,
        limit: u32,
    ) -> Result<Vec<Forecast>, StoreError> {
        let sql = format!(
            "SELECT {FORECAST_COLUMNS} FROM capacity_planning_forecasts WHERE service_name = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows = on_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(service.as_str())
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await;
            rows.and_then(|rows| rows.iter().map(|row| {
                let kind: String = row.try_get("forecast_type")?;
                Ok(Forecast {
                    service: ServiceName::new(row.try_get::<String, _>("service_name")?),
                    forecast_type: vocabulary("forecast_type", &kind, ForecastType::parse)?,
                    time_horizon_days: codec::count("time_horizon_days", row.try_get("time_horizon_days")?)?,
                    predicted_peak_rps: row.try_get("predicted_peak_rps")?,
                    predicted_avg_cpu: row.try_get("predicted_avg_cpu")?,
                    predicted_avg_memory: row.try_get("predicted_avg_memory")?,
                    recommended_instances: codec::count(
                        "recommended_instances",
                        row.try_get("recommended_instances")?,
                    )?,
                    confidence_score: row.try_get("confidence_score")?,
                    forecast_data: row.try_get::<Json<serde_json::Value>, _>("forecast_data")?.0,
                    created_at: row.try_get::<Ts, _>("created_at")?.0,
                })
            }).collect::<Result<Vec<_>, sqlx::Error>>())
        });
        rows.map_err(StoreError::query("read forecasts"))
    }

    /// Runs PostgreSQL's `generate_capacity_forecast(service, days)`; `None` on
    /// SQLite, which has no stored functions.
    pub async fn sql_capacity_forecast(
        &self,
        service: &ServiceName,
        days: u32,
    ) -> Result<Option<Vec<ForecastPoint>>, StoreError> {
        let super::Pool::Postgres(pool) = self.pool() else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT forecast_date, CAST(predicted_rps AS DOUBLE PRECISION) AS predicted_rps, \
             CAST(predicted_cpu AS DOUBLE PRECISION) AS predicted_cpu, \
             CAST(predicted_memory AS DOUBLE PRECISION) AS predicted_memory, \
             recommended_instances FROM generate_capacity_forecast($1, $2)",
        )
        .bind(service.as_str())
        .bind(codec::int(days))
        .fetch_all(pool)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|row| {
                    Ok(ForecastPoint {
                        forecast_date: row.try_get("forecast_date")?,
                        predicted_rps: row.try_get("predicted_rps")?,
                        predicted_cpu: row.try_get("predicted_cpu")?,
                        predicted_memory: row.try_get("predicted_memory")?,
                        recommended_instances: codec::count(
                            "recommended_instances",
                            row.try_get("recommended_instances")?,
                        )?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })
        .map_err(StoreError::query("generate capacity forecast"))?;
        Ok(Some(rows))
    }
}
