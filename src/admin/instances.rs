//! Admin writes on instances: `POST /admin/instances/{id}/drain` and `/undrain`.
//!
//! Drain answers at once (202) and waits for the instance's in-flight requests
//! in the background, up to the service's `resilience.drain_timeout`; the
//! outcome is logged and counted by [`crate::health::drain`].

use std::sync::Arc;

use http::StatusCode;
use serde::Serialize;

use crate::health;
use crate::ids::InstanceId;
use crate::registry::Registry;

/// An instance write the admin API understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Drain,
    Undrain,
}

/// Parses `/admin/instances/{id}/{action}`.
pub(super) fn parse(path: &str) -> Option<(&str, Action)> {
    let rest = path.strip_prefix("/admin/instances/")?;
    let (id, action) = rest.rsplit_once('/')?;
    let action = match action {
        "drain" => Action::Drain,
        "undrain" => Action::Undrain,
        _ => return None,
    };
    (!id.is_empty()).then_some((id, action))
}

#[derive(Debug, Serialize)]
pub(super) struct InstanceState {
    service: String,
    instance: String,
    draining: bool,
    in_flight: u32,
}

/// Applies `action` to the instance `id`; the status and the document to answer with.
pub(super) fn apply(
    registry: &Registry,
    id: &str,
    action: Action,
) -> Result<(StatusCode, InstanceState), StatusCode> {
    let (service, instance) = registry
        .find_instance(&InstanceId::new(id))
        .ok_or(StatusCode::NOT_FOUND)?;
    let status = match action {
        Action::Drain => {
            let timeout = service.config.resilience.drain_timeout;
            health::drain::begin(&instance);
            let draining = Arc::clone(&instance);
            tokio::spawn(async move { health::drain(&draining, timeout).await });
            StatusCode::ACCEPTED
        }
        Action::Undrain => {
            health::undrain(&instance);
            StatusCode::OK
        }
    };
    Ok((
        status,
        InstanceState {
            service: service.name.to_string(),
            instance: instance.id().to_string(),
            draining: action == Action::Drain,
            in_flight: instance.in_flight(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_drain_and_undrain_paths() {
        assert_eq!(
            parse("/admin/instances/127.0.0.1:9001/drain"),
            Some(("127.0.0.1:9001", Action::Drain))
        );
        assert_eq!(
            parse("/admin/instances/a/undrain"),
            Some(("a", Action::Undrain))
        );
        assert_eq!(parse("/admin/instances//drain"), None);
        assert_eq!(parse("/admin/instances/a/stop"), None);
    }
}
