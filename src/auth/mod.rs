//! Caller authentication and authorization: the key format and checksum
//! (`key`), the hashed in-memory index (`index`), and role grants
//! (`grants`). Knows nothing about HTTP beyond `Method`.

pub mod caller;
pub mod declared;
pub mod grants;
pub mod index;
pub mod key;
pub mod keys;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Client;
pub use index::{KeyIndex, KeyRecord, KeyRejection, KeySource};

/// The roles a key holds right now: its client's current roles, narrowed to
/// the subset named at creation. A key never exceeds its client, even after
/// the client loses a role in a reload. `None` when the client is gone.
/// Borrowed, not collected: the proxy calls this on every request.
pub fn effective_roles<'a>(
    clients: &'a BTreeMap<String, Arc<Client>>,
    record: &'a KeyRecord,
) -> Option<impl Iterator<Item = &'a String>> {
    let client = clients.get(&record.client)?;
    Some(client.roles.iter().filter(move |r| {
        record
            .roles
            .as_ref()
            .is_none_or(|subset| subset.contains(r))
    }))
}
