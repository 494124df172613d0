//! The proxy listener's request path: `service` runs the phases, `rewrite`
//! keeps the target inside the connector, `hop` removes per-connection
//! headers, `local` keeps browsers off `auth: none` sidecar ports.

pub mod hop;
pub mod local;
pub mod rewrite;
pub mod service;

pub use service::{Listener, Proxy};
