//! The data plane: listeners, routing, forwarding and streaming bodies.
//!
//! A request flows `server` (accept; HTTP/1.1 by `h1`, the rest by hyper) → `router` (host and
//! longest prefix) → the service's balancer → `forward` (header rewrite, pooled
//! `upstream` client or a direct `exchange`, timeouts) → `body` (streamed back with its in-flight
//! guard). Failures become short plain-text responses via `error`; `tls`
//! terminates HTTPS on the listeners when configured; `workers` runs one
//! current-thread runtime per worker when there are several; `deadline` keeps a
//! connection's often-moved deadline in one rarely re-armed timer; `fields`
//! keeps a direct answer's header lines as the instance wrote them, for the
//! HTTP/1.1 client side to copy.

pub mod body;
pub mod deadline;
pub mod error;
pub mod exchange;
pub mod fields;
pub mod forward;
pub mod h1;
pub mod headers;
pub mod retry;
pub mod router;
pub mod server;
pub mod tls;
pub mod upstream;
pub mod workers;

pub use error::ProxyError;
pub use forward::Proxy;
pub use router::Router;
pub use server::ProxyServer;
