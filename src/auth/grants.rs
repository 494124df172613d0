//! Authorization: may these roles call this connector, method and path?
//! Denied by default: no roles, no grant, no access.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;

use crate::config::Role;

pub fn allows<'a>(
    roles: &BTreeMap<String, Arc<Role>>,
    held: impl IntoIterator<Item = &'a String>,
    connector: &str,
    method: &Method,
    path: &str,
) -> bool {
    held.into_iter()
        .filter_map(|r| roles.get(r))
        .flat_map(|r| r.grants.iter())
        .filter(|g| g.connector == connector)
        .any(|g| {
            g.methods.as_ref().is_none_or(|ms| ms.contains(method))
                && g.paths
                    .as_ref()
                    .is_none_or(|ps| ps.iter().any(|p| p.matches(path)))
        })
}

pub fn is_admin<'a>(
    roles: &BTreeMap<String, Arc<Role>>,
    held: impl IntoIterator<Item = &'a String>,
) -> bool {
    held.into_iter()
        .filter_map(|r| roles.get(r))
        .any(|r| r.admin)
}
