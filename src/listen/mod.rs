//! The listeners: accepting connections under the `server:` limits
//! (`serve`: HTTP/1.1 and h2, header and idle timeouts, connection caps,
//! the shutdown drain) and the TLS certificate served on them (`tls`:
//! the resolver a renewal is swapped into). Knows nothing of what a
//! request means: the proxy and the admin API plug in as [`Handler`]s.

pub mod serve;
pub mod tls;

pub use serve::{Drain, DrainControl, Handler, serve};
