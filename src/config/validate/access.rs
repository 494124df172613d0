//! Who may do what: the `roles` section (grants on connectors, methods and
//! paths) and the `clients` section (their roles and the API keys declared
//! for them by hash). Every name a grant or client refers to must exist in
//! the file. The built-in `keygate-admin` role and client are added by
//! `mod.rs` after every check has passed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Method;

use super::Errors;
use super::fields::{is_http_token, valid_name};
use crate::config::locate::Seg;
use crate::config::model::{Client, DeclaredKey, Grant, Role};
use crate::config::pattern::PathPattern;
use crate::config::raw::RawConfig;
use crate::config::units::format_duration;

/// Every role by name, each grant's connector, methods and paths checked.
pub(super) fn roles(e: &mut Errors<'_>, raw: &RawConfig) -> BTreeMap<String, Arc<Role>> {
    use Seg::Key;
    let mut roles = BTreeMap::new();
    for (name, r) in &raw.roles {
        let mut grants = Vec::new();
        for (i, g) in r.allow.iter().enumerate() {
            let gp = [
                Key("roles"),
                Key(name.as_str()),
                Key("allow"),
                Seg::Index(i),
            ];
            let mut p = gp.to_vec();
            p.push(Key("connector"));
            if !raw.connectors.contains_key(&g.connector) {
                e.at(
                    &p,
                    format!("role `{name}` names unknown connector `{}`", g.connector),
                );
            }
            let methods = g.methods.as_ref().map(|ms| {
                let mut p = gp.to_vec();
                p.push(Key("methods"));
                ms.iter()
                    .filter_map(|m| {
                        let up = m.to_ascii_uppercase();
                        if !is_http_token(&up) {
                            e.at(&p, format!("`{m}` is not an HTTP method"));
                            return None;
                        }
                        Method::from_bytes(up.as_bytes()).ok()
                    })
                    .collect()
            });
            let paths = g.paths.as_ref().map(|ps| {
                let mut p = gp.to_vec();
                p.push(Key("paths"));
                ps.iter()
                    .filter_map(|s| PathPattern::parse(s).map_err(|m| e.at(&p, m)).ok())
                    .collect()
            });
            grants.push(Grant {
                connector: g.connector.clone(),
                methods,
                paths,
            });
        }
        roles.insert(
            name.clone(),
            Arc::new(Role {
                name: name.clone(),
                description: r.description.clone(),
                admin: r.admin,
                grants,
            }),
        );
    }
    roles
}

/// Every client by name, with its declared keys. With `keys.max_ttl` set
/// (`max_ttl`), a key declared here must say when it ends, no further than
/// max_ttl from now: the bound is on lifetime, and a key without `expires`
/// (or with one years out) would outlive it. Checked against the clock at
/// every check and reload, so a key that passed stays valid as its expiry
/// only comes closer.
pub(super) fn clients(
    e: &mut Errors<'_>,
    raw: &RawConfig,
    max_ttl: Option<Duration>,
) -> BTreeMap<String, Arc<Client>> {
    use Seg::Key;
    let now = SystemTime::now();
    let latest_expiry = max_ttl.and_then(|max| Some((max, now.checked_add(max)?)));
    let mut clients = BTreeMap::new();
    let mut hashes: HashSet<[u8; 32]> = HashSet::new();
    for (name, c) in &raw.clients {
        if !valid_name(name) {
            e.at(
                &[Key("clients"), Key(name.as_str())],
                format!("client name `{name}` may only use letters, digits, `.`, `_` and `-`"),
            );
        }
        for (i, r) in c.roles.iter().enumerate() {
            if !raw.roles.contains_key(r) {
                e.at(
                    &[
                        Key("clients"),
                        Key(name.as_str()),
                        Key("roles"),
                        Seg::Index(i),
                    ],
                    format!("client `{name}` names unknown role `{r}`"),
                );
            }
        }
        let mut key_names = HashSet::new();
        let mut keys = Vec::new();
        for (i, k) in c.keys.iter().enumerate() {
            let kp = [
                Key("clients"),
                Key(name.as_str()),
                Key("keys"),
                Seg::Index(i),
            ];
            if !key_names.insert(k.name.clone()) {
                e.at(
                    &kp,
                    format!("client `{name}` declares key `{}` twice", k.name),
                );
            }
            let mut hp = kp.to_vec();
            hp.push(Key("sha256"));
            let digest = hex::decode(k.sha256.trim())
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok());
            let Some(digest) = digest else {
                e.at(
                    &hp,
                    "sha256 must be 64 hex digits (the second line of `keygate keygen`)",
                );
                continue;
            };
            if !hashes.insert(digest) {
                e.at(&hp, "this key hash is declared twice");
            }
            let mut xp = kp.to_vec();
            xp.push(Key("expires"));
            let expires = k
                .expires
                .as_ref()
                .and_then(|x| parse_timestamp(x).map_err(|m| e.at(&xp, m)).ok());
            if let Some((max, latest)) = latest_expiry {
                let ttl = format_duration(max);
                match (&k.expires, expires) {
                    (None, _) => e.at(
                        &kp,
                        format!(
                            "client `{name}`: key `{}` needs `expires` (at most keys.max_ttl = {ttl} from now, so no later than {})",
                            k.name,
                            humantime::format_rfc3339_seconds(latest)
                        ),
                    ),
                    (Some(x), Some(at)) if at > latest => e.at(
                        &xp,
                        format!(
                            "client `{name}`: key `{}` expires {x}, beyond keys.max_ttl = {ttl} from now (no later than {})",
                            k.name,
                            humantime::format_rfc3339_seconds(latest)
                        ),
                    ),
                    _ => {}
                }
            }
            keys.push(DeclaredKey {
                name: k.name.clone(),
                sha256: digest,
                expires,
            });
        }
        clients.insert(
            name.clone(),
            Arc::new(Client {
                name: name.clone(),
                description: c.description.clone(),
                roles: c.roles.clone(),
                keys,
            }),
        );
    }
    clients
}

fn parse_timestamp(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .map_err(|_| format!("`{text}` is not a UTC timestamp like 2027-06-30T00:00:00Z"))
}
