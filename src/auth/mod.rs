//! Caller authentication and authorization: the key format and checksum
//! (`key`), the hashed in-memory index (`index`), and role grants
//! (`grants`). Knows nothing about HTTP beyond `Method`.

pub mod grants;
pub mod index;
pub mod key;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Client;
pub use index::{KeyIndex, KeyRecord, KeyRejection, KeySource};

/// The roles a key holds right now: its client's current roles, narrowed to
/// the subset named at creation. A key never exceeds its client, even after
/// the client loses a role in a reload.
pub fn effective_roles(
    clients: &BTreeMap<String, Arc<Client>>,
    record: &KeyRecord,
) -> Option<Vec<String>> {
    let client = clients.get(&record.client)?;
    Some(match &record.roles {
        None => client.roles.clone(),
        Some(subset) => client
            .roles
            .iter()
            .filter(|r| subset.contains(r))
            .cloned()
            .collect(),
    })
}
