//! The instance table of one service, published through `ArcSwap`.
//!
//! A table is immutable: a change to the set of instances (one added by the
//! scaler, one removed after draining) builds a new table off the request path
//! and swaps it in. Readers load the current table without blocking and keep
//! using the one they loaded until their pick is done.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::instance::Instance;
use crate::ids::InstanceId;

/// An immutable list of a service's instances.
#[derive(Debug, Default)]
pub struct InstanceTable {
    instances: Vec<Arc<Instance>>,
}

impl InstanceTable {
    /// A table of these instances, in this order.
    pub fn new(instances: Vec<Arc<Instance>>) -> Self {
        Self { instances }
    }

    /// Every instance, eligible or not.
    pub fn instances(&self) -> &[Arc<Instance>] {
        &self.instances
    }

    /// Number of instances, eligible or not.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether the table lists no instance at all.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The instance with this id.
    pub fn get(&self, id: &InstanceId) -> Option<&Arc<Instance>> {
        self.instances.iter().find(|i| i.id() == id)
    }
}

/// The published table of one service.
#[derive(Debug)]
pub struct TableHandle {
    current: ArcSwap<InstanceTable>,
}

impl TableHandle {
    /// Publishes an initial table.
    pub fn new(table: InstanceTable) -> Self {
        Self {
            current: ArcSwap::from_pointee(table),
        }
    }

    /// The current table; cheap, never blocks.
    pub fn load(&self) -> arc_swap::Guard<Arc<InstanceTable>> {
        self.current.load()
    }

    /// The current table as an owned `Arc`, for callers that hold it a while.
    pub fn load_full(&self) -> Arc<InstanceTable> {
        self.current.load_full()
    }

    /// Publishes a table built from the current one by `update`.
    ///
    /// Writers are rare (scaling, config reload) and may race; `rcu` retries the
    /// update on the newest table so no writer's change is lost.
    pub fn update(&self, update: impl Fn(&InstanceTable) -> InstanceTable) {
        self.current.rcu(|t| Arc::new(update(t)));
    }

    /// Adds an instance unless one with the same id is listed.
    pub fn add(&self, instance: Arc<Instance>) {
        self.update(|t| {
            let mut list = t.instances.clone();
            if !list.iter().any(|i| i.id() == instance.id()) {
                list.push(Arc::clone(&instance));
            }
            InstanceTable::new(list)
        });
    }

    /// Removes the instance with this id, returning whether it was listed.
    pub fn remove(&self, id: &InstanceId) -> bool {
        let before = self.load().len();
        self.update(|t| {
            InstanceTable::new(
                t.instances
                    .iter()
                    .filter(|i| i.id() != id)
                    .cloned()
                    .collect(),
            )
        });
        self.load().len() < before
    }
}
