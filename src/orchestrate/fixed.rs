//! The static orchestrator: the instances listed in the config, which tidegate
//! neither starts nor stops. The scaler still decides for such a service, and
//! records what it would do as a recommendation.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{OrchestrateError, Orchestrator};
use crate::balance::Instance;
use crate::registry::Service;

/// Fixed instances.
#[derive(Debug)]
pub struct StaticOrchestrator {
    service: Arc<Service>,
}

impl StaticOrchestrator {
    /// The static orchestrator of a service.
    pub fn new(service: Arc<Service>) -> Self {
        Self { service }
    }
}

impl Orchestrator for StaticOrchestrator {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn can_scale(&self) -> bool {
        false
    }

    fn start(&self) -> BoxFuture<'_, Result<Arc<Instance>, OrchestrateError>> {
        Box::pin(async { Err(OrchestrateError::Unsupported { kind: "static" }) })
    }

    fn stop(&self, _instance: Arc<Instance>) -> BoxFuture<'_, Result<(), OrchestrateError>> {
        Box::pin(async { Err(OrchestrateError::Unsupported { kind: "static" }) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, OrchestrateError>> {
        let addrs = self
            .service
            .table
            .load()
            .instances()
            .iter()
            .map(|i| i.addr())
            .collect();
        Box::pin(async move { Ok(addrs) })
    }
}
