//! keygate: an outbound-request auth gateway. Callers authenticate with a
//! keygate API key; keygate injects the connector's upstream credentials
//! and forwards. See SPEC.md for the contract and README.md for operating it.
//!
//! Modules follow the request path and import downward only. Layers, top
//! to bottom; a module may use only modules of the layers below its own
//! (`tests/layering.rs` reads every `crate::` path in `src/` and holds the
//! code to this list):
//!
//! 1. `app`: wiring, the one reload loop, the watcher, ports, upkeep
//! 2. `admin`, `proxy`: the two services
//! 3. `state`: the handles the services share
//! 4. `snapshot`: everything a request reads, published in one swap
//! 5. `error`, `listen`: the one error → response mapping; accept loops
//! 6. `auth`, `objects`: who is calling, keys and their lifecycle; the
//!    run-time catalog (API-made objects and what a change does)
//! 7. `tokens`: token values, refresh, per-user tokens
//! 8. `audit`: the audit log (records changes to the store and stderr)
//! 9. `store`: persistence (SQLite, or PostgreSQL for replicas)
//! 10. `metrics`, `upstream`: counters, the client (and its CA loading,
//!     which the PostgreSQL store's TLS shares)
//! 11. `config`: YAML → validated model
//! 12. `body`, `secret`, `lock`, `clock`: leaves
//!
//! The binary (`main.rs`, `cli.rs`) sits above them all.

// Lint policy (`unsafe_code` forbidden, no `unwrap`/`expect` outside
// tests, checked casts) is the `[lints]` table in Cargo.toml, which covers
// this library, the binary, tests and benches alike; the bans, each with
// its reason, are in clippy.toml.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod body;
pub mod clock;
pub mod config;
pub mod error;
pub mod listen;
pub mod lock;
pub mod metrics;
pub mod objects;
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
