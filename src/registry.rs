//! The running services: what the data plane routes to and the control plane steers.
//!
//! Built once from the config. Each [`Service`] holds its published instance
//! table and its balancer; the health probers, the scaler and the admin API
//! change a service only by publishing a new table or flipping an instance's
//! atomic flags, so the request path never waits on them.

use std::sync::Arc;

use crate::balance::{Balancer, Instance, InstanceTable, TableHandle};
use crate::config::{Config, ServiceConfig};
use crate::health::ServiceHealth;
use crate::ids::{InstanceId, ServiceName};

/// One service at run time.
#[derive(Debug)]
pub struct Service {
    /// The service's name.
    pub name: ServiceName,
    /// Its settings as loaded.
    pub config: ServiceConfig,
    /// Its instances, swapped whole when they change.
    pub table: TableHandle,
    /// Its balancing algorithm and state.
    pub balancer: Balancer,
    /// Its in-flight count and retry budget.
    pub health: ServiceHealth,
}

impl Service {
    /// A service with the static instances of its config.
    pub fn new(config: ServiceConfig) -> Self {
        let instances = config
            .instances
            .iter()
            .map(|i| Instance::from_addr(config.name.clone(), i.address, i.weight))
            .collect();
        Self {
            name: config.name.clone(),
            balancer: Balancer::new(&config.balancer),
            table: TableHandle::new(InstanceTable::new(instances)),
            health: ServiceHealth::default(),
            config,
        }
    }

    /// The instance with this id in the current table.
    pub fn instance(&self, id: &InstanceId) -> Option<Arc<Instance>> {
        self.table.load().get(id).cloned()
    }
}

/// Every service, in config order.
#[derive(Debug, Default)]
pub struct Registry {
    services: Vec<Arc<Service>>,
}

impl Registry {
    /// The services of a config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            services: config
                .services
                .iter()
                .cloned()
                .map(|s| Arc::new(Service::new(s)))
                .collect(),
        }
    }

    /// Every service.
    pub fn services(&self) -> &[Arc<Service>] {
        &self.services
    }

    /// The service with this name.
    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }

    /// Finds an instance by id in any service.
    pub fn find_instance(&self, id: &InstanceId) -> Option<(Arc<Service>, Arc<Instance>)> {
        self.services
            .iter()
            .find_map(|s| s.instance(id).map(|i| (Arc::clone(s), i)))
    }
}
