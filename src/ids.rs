//! Names of the things tidegate balances over: services and their instances.
//!
//! Both are cheap to clone (an `Arc<str>` inside) because they are copied into
//! metric labels, log fields and store rows far more often than they are built.

use std::fmt;
use std::sync::Arc;

/// The name of a service: a pool of interchangeable instances behind one route set.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(Arc<str>);

/// The identity of one instance of a service; by default its `host:port` address.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(Arc<str>);

macro_rules! impl_name {
    ($ty:ident) => {
        impl $ty {
            /// Wraps a name.
            pub fn new(name: impl AsRef<str>) -> Self {
                Self(Arc::from(name.as_ref()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl From<&str> for $ty {
            fn from(name: &str) -> Self {
                Self::new(name)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

impl_name!(ServiceName);
impl_name!(InstanceId);
