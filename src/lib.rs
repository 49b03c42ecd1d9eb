//! tidegate: a Layer-7 reverse-proxy load balancer with built-in autoscaling.
//!
//! The crate is laid out along the two planes:
//!
//! - **data plane**: [`proxy`] (listeners, routing, forwarding) and [`balance`]
//!   (instance tables and the algorithms that pick from them);
//! - **control plane**: tasks that steer the data plane only through atomics and
//!   table swaps;
//! - **operator surface**: [`config`], [`admin`], [`cli`] and [`telemetry`].
//!
//! [`registry`] holds the running services both planes share, and [`app`]
//! wires everything together.

pub mod admin;
pub mod app;
pub mod balance;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod health;
pub mod ids;
pub mod orchestrate;
pub mod proxy;
pub mod registry;
pub mod scale;
pub mod store;
pub mod telemetry;
