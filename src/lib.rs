//! keygate: an outbound-request auth gateway. Callers authenticate with a
//! keygate API key; keygate injects the connector's upstream credentials
//! and forwards. See SPEC.md for the contract and README.md for operating it.
//!
//! Modules follow the request path and import downward only:
//! `app → {admin, proxy, server} → state → {config, tokens, auth, upstream,
//! error, body, secret, lock, clock}`.

// Lint policy (`unsafe_code` forbidden, no `unwrap`/`expect` outside
// tests, checked casts) is the `[lints]` table in Cargo.toml, which covers
// this library, the binary, tests and benches alike; the bans, each with
// its reason, are in clippy.toml.

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod clock;
pub mod config;
pub mod error;
pub mod listen;
pub mod lock;
pub mod metrics;
pub mod proxy;
pub mod secret;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod tokens;
pub mod upstream;

/// The entry points the fuzz targets in `fuzz/` drive, gathered here so a
/// module move breaks this one list instead of every target. Not an API:
/// hidden from the docs and free to change with the code it re-exports.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::auth::grants::allows;
    pub use crate::auth::key::{
        CHECKSUM_LEN, FormatError, RANDOM_LEN, check_format, display_prefix,
    };
    pub use crate::config::pattern::PathPattern;
    pub use crate::config::{Expiry, Grant, Role, Upstream, from_text as config_from_text};
    pub use crate::proxy::rewrite::{check_target, split_connector, upstream_uri};
    pub use crate::tokens::fetch::{Fetched, read_answer};
    pub use crate::tokens::refresh::refresh_due;
}
